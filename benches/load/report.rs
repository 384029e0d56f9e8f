//! Results: latency histograms of one run, figures gathered over several runs (quoted as the
//! median with the spread from the lowest to the highest run), and the table they print as.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use hdrhistogram::Histogram;

/// A latency histogram in microseconds, from 1 µs to 60 s at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, 60_000_000);
    // In bounds by the clamp, so this cannot fail.
    let _ = h.record(us);
}

/// What one load phase measured.
pub struct Phase {
    pub operations: u64,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
}

impl Phase {
    pub fn rate(&self) -> f64 {
        self.operations as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Latency at `q` (0..1) in milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
}

/// How a figure is judged against its target.
#[derive(Clone, Copy)]
pub enum Goal {
    /// Informational: no target.
    None,
    /// The ratio must be at least this.
    RatioAtLeast(f64),
    /// The value must be at least this.
    AtLeast(f64),
    /// The value must be below this.
    Below(f64),
    /// The ratio must be at most this.
    RatioAtMost(f64),
}

/// One row of the table: a figure from every run, and optionally the baseline row it is a
/// ratio to (the ratio is taken per run, then its median quoted).
struct Row {
    unit: &'static str,
    values: Vec<f64>,
    ratios: Vec<f64>,
    baseline: Option<String>,
    goal: Goal,
}

/// Every figure of every run, by name, in the order first recorded.
#[derive(Default)]
pub struct Results {
    order: Vec<String>,
    rows: BTreeMap<String, Row>,
}

impl Results {
    /// Records a figure of this run.
    pub fn add(&mut self, name: &str, unit: &'static str, value: f64, goal: Goal) {
        let row = self.rows.entry(name.to_owned()).or_insert_with(|| {
            self.order.push(name.to_owned());
            Row {
                unit,
                values: Vec::new(),
                ratios: Vec::new(),
                baseline: None,
                goal,
            }
        });
        row.values.push(value);
    }

    /// Records a figure and its ratio to `baseline_value` (from the row `baseline`, this run).
    pub fn add_ratio(
        &mut self,
        name: &str,
        unit: &'static str,
        value: f64,
        baseline: &str,
        baseline_value: f64,
        goal: Goal,
    ) {
        self.add(name, unit, value, goal);
        if let Some(row) = self.rows.get_mut(name) {
            row.baseline = Some(baseline.to_owned());
            row.ratios.push(value / baseline_value.max(1e-9));
        }
    }

    /// The last value recorded for `name` (this run's), if any.
    pub fn last(&self, name: &str) -> Option<f64> {
        self.rows.get(name).and_then(|r| r.values.last().copied())
    }

    /// The table, one row per figure.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let header = [
            "figure",
            "median",
            "spread (min-max)",
            "unit",
            "ratio",
            "to",
            "target",
            "met",
        ];
        let mut lines: Vec<[String; 8]> = vec![header.map(str::to_owned)];
        for name in &self.order {
            let Some(r) = self.rows.get(name) else {
                continue;
            };
            let med = median(&r.values);
            let (lo, hi) = spread(&r.values);
            let ratio = (!r.ratios.is_empty()).then(|| median(&r.ratios));
            let (target, met) = judge(r.goal, med, ratio);
            lines.push([
                name.clone(),
                fmt(med),
                format!("{}-{}", fmt(lo), fmt(hi)),
                r.unit.to_owned(),
                ratio.map(|x| format!("{x:.2}")).unwrap_or_default(),
                r.baseline.clone().unwrap_or_default(),
                target,
                met.to_owned(),
            ]);
        }
        let widths: Vec<usize> = (0..8)
            .map(|c| {
                lines
                    .iter()
                    .map(|l| l[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for (i, line) in lines.iter().enumerate() {
            out.push('|');
            for (c, cell) in line.iter().enumerate() {
                let pad = widths[c] - cell.chars().count();
                let _ = write!(out, " {cell}{} |", " ".repeat(pad));
            }
            out.push('\n');
            if i == 0 {
                out.push('|');
                for w in &widths {
                    let _ = write!(out, "{}|", "-".repeat(w + 2));
                }
                out.push('\n');
            }
        }
        out
    }
}

fn judge(goal: Goal, value: f64, ratio: Option<f64>) -> (String, &'static str) {
    let yes = |b: bool| if b { "yes" } else { "NO" };
    match goal {
        Goal::None => (String::new(), ""),
        Goal::RatioAtLeast(t) => (format!("ratio >= {t}"), ratio.map_or("?", |r| yes(r >= t))),
        Goal::RatioAtMost(t) => (format!("ratio <= {t}"), ratio.map_or("?", |r| yes(r <= t))),
        Goal::AtLeast(t) => (format!(">= {}", fmt(t)), yes(value >= t)),
        Goal::Below(t) => (format!("< {}", fmt(t)), yes(value < t)),
    }
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn spread(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

/// Three significant figures, without exponent notation.
fn fmt(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    let a = x.abs();
    if a >= 100.0 {
        format!("{:.0}", x)
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let mut r = Results::default();
        r.add("base", "ops/s", 100.0, Goal::None);
        r.add_ratio(
            "ours",
            "ops/s",
            60.0,
            "base",
            100.0,
            Goal::RatioAtLeast(0.5),
        );
        let t = r.table();
        assert!(t.contains("| ours "), "{t}");
        assert!(t.contains("0.60"), "{t}");
        assert!(t.contains("yes"), "{t}");
    }
}
