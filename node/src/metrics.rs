//! Counters the node exposes at `/metrics` in the Prometheus text format. Plain atomics:
//! cheap enough to bump on every request and every commit.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// HTTP routes counted separately.
pub const ROUTES: [&str; 7] = [
    "page",
    "json",
    "bundle",
    "checkpoint",
    "tile",
    "metrics",
    "other",
];
/// HTTP status classes counted separately.
const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

#[derive(Default)]
pub struct Metrics {
    pub submissions_accepted: AtomicU64,
    pub submissions_existing: AtomicU64,
    pub submissions_rejected: AtomicU64,
    pub commits: AtomicU64,
    pub committed_entries: AtomicU64,
    pub commit_micros_total: AtomicU64,
    /// Free bytes on the fullest file system of the data directory, at the last measurement
    /// (if `disk_free_measured` is 1).
    pub disk_free_bytes: AtomicU64,
    pub disk_free_measured: AtomicU64,
    /// 1 while the node is short of its disk reserve (`--disk-reserve-mb`, SPEC.md 9.3).
    pub submissions_paused: AtomicU64,
    http: [[AtomicU64; 4]; 7],
}

impl Metrics {
    pub fn http(&self, route: &str, status: u16) {
        let r = ROUTES
            .iter()
            .position(|x| *x == route)
            .unwrap_or(ROUTES.len() - 1);
        let c = match status {
            200..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            _ => 3,
        };
        if let Some(counter) = self.http.get(r).and_then(|row| row.get(c)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn set(gauge: &AtomicU64, value: u64) {
        gauge.store(value, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every counter, plus the tree size.
    pub fn render(&self, tree_size: u64) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: Vec<(String, u64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in lines {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        metric(
            "fairtrail_tree_size",
            "gauge",
            "Entries in the log at the latest checkpoint.",
            vec![(String::new(), tree_size)],
        );
        metric(
            "fairtrail_submissions_total",
            "counter",
            "Submissions by outcome.",
            vec![
                (
                    "{outcome=\"accepted\"}".into(),
                    get(&self.submissions_accepted),
                ),
                (
                    "{outcome=\"existing\"}".into(),
                    get(&self.submissions_existing),
                ),
                (
                    "{outcome=\"rejected\"}".into(),
                    get(&self.submissions_rejected),
                ),
            ],
        );
        metric(
            "fairtrail_commits_total",
            "counter",
            "Group commits made durable.",
            vec![(String::new(), get(&self.commits))],
        );
        metric(
            "fairtrail_committed_entries_total",
            "counter",
            "Entries appended by group commits.",
            vec![(String::new(), get(&self.committed_entries))],
        );
        metric(
            "fairtrail_commit_microseconds_total",
            "counter",
            "Time spent in group commits (append, fdatasync, checkpoint), in microseconds.",
            vec![(String::new(), get(&self.commit_micros_total))],
        );
        metric(
            "fairtrail_disk_free_bytes",
            "gauge",
            "Free bytes on the fullest file system holding the log or its indexes, measured at start, before each group commit and every second while idle.",
            if get(&self.disk_free_measured) == 1 {
                vec![(String::new(), get(&self.disk_free_bytes))]
            } else {
                Vec::new()
            },
        );
        metric(
            "fairtrail_submissions_paused",
            "gauge",
            "1 while the node is short of its disk reserve (not even an entry of the largest size fits above it) and refuses new statements.",
            vec![(String::new(), get(&self.submissions_paused))],
        );
        let mut lines = Vec::new();
        for (r, row) in ROUTES.iter().zip(&self.http) {
            for (c, counter) in CLASSES.iter().zip(row) {
                lines.push((format!("{{route=\"{r}\",code=\"{c}\"}}"), get(counter)));
            }
        }
        metric(
            "fairtrail_http_requests_total",
            "counter",
            "HTTP requests by route and status class.",
            lines,
        );
        out
    }
}
