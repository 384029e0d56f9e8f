//! `fairtrail-bench criterion-table`: the criterion benchmarks of several `cargo bench` runs
//! (each saved with `--save-baseline NAME`) as one table: per benchmark, the median over the
//! runs of criterion's median time, the spread from the fastest to the slowest run, the
//! throughput, and for our Merkle tree the speed-up over `ct-merkle` on the same benchmark.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::report::median;

/// One benchmark of one run: nanoseconds per iteration and elements per iteration.
struct Sample {
    ns: f64,
    elements: Option<f64>,
}

/// Every `benchmark.json` under `dir` that sits in a directory named `baseline`.
fn find(dir: &Path, baseline: &str, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            if path.file_name().and_then(|n| n.to_str()) == Some(baseline) {
                if path.join("estimates.json").exists() {
                    out.push(path);
                }
            } else {
                find(&path, baseline, out)?;
            }
        }
    }
    Ok(())
}

fn read(dir: &Path) -> anyhow::Result<(String, Sample)> {
    let bench: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("benchmark.json"))?)?;
    let estimates: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("estimates.json"))?)?;
    let id = bench["full_id"]
        .as_str()
        .context("benchmark.json without full_id")?
        .to_owned();
    let ns = estimates["median"]["point_estimate"]
        .as_f64()
        .context("estimates.json without a median")?;
    let elements = bench["throughput"]["Elements"].as_f64();
    Ok((id, Sample { ns, elements }))
}

fn time(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.3} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.3} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

fn rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2} M/s", per_s / 1e6)
    } else if per_s >= 1e3 {
        format!("{:.1} k/s", per_s / 1e3)
    } else {
        format!("{per_s:.0} /s")
    }
}

/// Prints the table of the runs saved as `baselines` under `dir` (target/criterion).
pub fn table(dir: &Path, baselines: &[String]) -> anyhow::Result<()> {
    let mut runs: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for b in baselines {
        let mut dirs = Vec::new();
        find(dir, b, &mut dirs)?;
        if dirs.is_empty() {
            bail!(
                "no criterion results saved as {b:?} under {}",
                dir.display()
            );
        }
        for d in dirs {
            let (id, sample) = read(&d)?;
            runs.entry(id).or_default().push(sample);
        }
    }
    println!(
        "criterion: {} run(s) ({}); median of the runs' medians, spread from the fastest to the slowest run\n",
        baselines.len(),
        baselines.join(", ")
    );
    println!("| benchmark | median time | spread | throughput | vs ct-merkle |");
    println!("|---|---|---|---|---|");
    let med = |v: &[Sample]| median(&v.iter().map(|s| s.ns).collect::<Vec<_>>());
    for (id, samples) in &runs {
        let ns: Vec<f64> = samples.iter().map(|s| s.ns).collect();
        let m = median(&ns);
        let lo = ns.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ns.iter().copied().fold(0.0, f64::max);
        let throughput = samples[0]
            .elements
            .map(|e| rate(e / (m / 1e9)))
            .unwrap_or_default();
        let speedup = if id.contains("fairtrail") {
            runs.get(&id.replace("fairtrail", "ct-merkle"))
                .map(|theirs| format!("{:.1}x faster", med(theirs) / m))
                .unwrap_or_default()
        } else {
            String::new()
        };
        println!(
            "| {id} | {} | {}-{} | {throughput} | {speedup} |",
            time(m),
            time(lo),
            time(hi)
        );
    }
    Ok(())
}
