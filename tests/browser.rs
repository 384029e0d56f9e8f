//! The consumer page in a real browser: Debian's headless Chromium loads the demo product's
//! page from a real node. The DOM it rendered must show the verdict, each journey step with
//! its actor, and the price charts; screenshots at 360x800 (a cheap phone) and 1280x800 land
//! under `target/`. Without Chromium the test is skipped with a notice, except in CI (`CI`
//! set), where a missing browser fails it.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::process::Command;
use tokio::time::timeout;

use crate::util::http::DemoNode;

const CHROMIUM: &str = "/usr/bin/chromium";
/// How long one Chromium run may take before it is killed and the test fails.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);
/// Less than this, and a screenshot cannot hold the page (a blank page is a few KB).
const MIN_SCREENSHOT_BYTES: u64 = 15_000;

/// The browser, or `None` (with a notice) when it is missing outside CI.
fn chromium() -> Option<&'static Path> {
    let path = Path::new(CHROMIUM);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{CHROMIUM} is missing, and CI is set: the browser test must run (.ci/run installs chromium)"
    );
    eprintln!(
        "NOTICE: skipping the browser test: {CHROMIUM} is missing (apt-get install chromium)"
    );
    None
}

/// Runs headless Chromium with `args` and a fresh profile, bounded by [`BROWSER_TIMEOUT`].
async fn run_chromium(browser: &Path, args: &[String]) -> Output {
    let profile = tempfile::tempdir().expect("a temporary profile directory");
    let mut command = Command::new(browser);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a browser that hangs is killed with all its helpers.
        .process_group(0)
        .kill_on_drop(true);
    let child = command.spawn().expect("cannot start chromium");
    let pid = child.id().expect("a running browser has a pid");
    match timeout(BROWSER_TIMEOUT, child.wait_with_output()).await {
        Ok(output) => output.expect("cannot wait for chromium"),
        Err(_) => {
            // SAFETY: kill(2) on the process group this test created for the browser (its
            // leader is our child, not yet reaped), never on any other process.
            unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
            panic!("chromium {args:?} did not finish within {BROWSER_TIMEOUT:?}");
        }
    }
}

/// The DOM of `url` as Chromium rendered it.
async fn dump_dom(browser: &Path, url: &str) -> String {
    let out = run_chromium(browser, &["--dump-dom".into(), url.into()]).await;
    assert!(
        out.status.success(),
        "chromium --dump-dom {url} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the DOM is UTF-8")
}

/// A screenshot of `url` at `width`x`height`, saved to `file`, checked to be a PNG of that
/// size with something on it.
async fn screenshot(browser: &Path, url: &str, width: u32, height: u32, file: &Path) {
    let _ = std::fs::remove_file(file);
    let args = [
        format!("--screenshot={}", file.display()),
        format!("--window-size={width},{height}"),
        "--hide-scrollbars".into(),
        url.into(),
    ];
    let out = run_chromium(browser, &args).await;
    assert!(
        out.status.success(),
        "chromium --screenshot failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let png =
        std::fs::read(file).unwrap_or_else(|e| panic!("no screenshot {}: {e}", file.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        file.display()
    );
    let size = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    assert_eq!((size(16), size(20)), (width, height), "{}", file.display());
    assert!(
        png.len() as u64 > MIN_SCREENSHOT_BYTES,
        "{} holds only {} bytes: the page did not render",
        file.display(),
        png.len()
    );
}

/// `<target>/` of the build this test was compiled into (`<target>/<profile>/deps/<test>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    exe.ancestors()
        .nth(3)
        .expect("the test executable lives in <target>/<profile>/deps")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_the_demo_products_page() {
    let Some(browser) = chromium() else {
        return;
    };
    let demo = DemoNode::start().await;
    let url = format!("{}{}", demo.node.http_url(), demo.path());

    // 1. The DOM Chromium built: the verdict, one step per journey step with its actor in
    //    order, and a chart with bars for each harvest.
    let dom = dump_dom(browser, &format!("{url}?lang=en")).await;
    assert!(
        dom.contains("<html lang=\"en\">"),
        "the page did not render: {dom}"
    );
    assert!(
        dom.contains("<h2 id=\"verdict\" class=\"badge ok\">")
            && dom.contains("<span>Verified</span>"),
        "no verdict in the DOM: {dom}"
    );
    let steps: Vec<&str> = dom.split("<li class=\"step\"").skip(1).collect();
    assert_eq!(
        steps.len(),
        demo.actors.len(),
        "one step per journey step: {dom}"
    );
    for (step, actor) in steps.iter().zip(&demo.actors) {
        let actor = format!("<span class=\"actor\">{actor}</span>");
        assert!(step.contains(&actor), "a step lacks {actor}: {step}");
    }
    let charts: Vec<&str> = dom.split("<svg role=\"img\"").skip(1).collect();
    assert_eq!(charts.len(), 2, "one price chart per harvest");
    for chart in charts {
        assert!(
            chart.contains("<title id=\"c") && chart.matches("<rect").count() == 4,
            "{chart}"
        );
    }

    // 2. The same page in Spanish.
    let dom = dump_dom(browser, &format!("{url}?lang=es")).await;
    assert!(dom.contains("<html lang=\"es\">") && dom.contains("<span>Verificado</span>"));

    // 3. Screenshots for people (and the README) at phone and desktop widths.
    let target = target_dir();
    for (width, height) in [(360, 800), (1280, 800)] {
        let file = target.join(format!("consumer-page-{width}x{height}.png"));
        screenshot(browser, &format!("{url}?lang=en"), width, height, &file).await;
        eprintln!("screenshot: {}", file.display());
    }
}
