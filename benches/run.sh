#!/usr/bin/env bash
# The whole benchmark suite in one command: the criterion benchmarks RUNS times (each run
# saved as a criterion baseline and summarised as one table of medians with their spread),
# then the load generator's RUNS runs against a real node (one table of medians, spreads and
# ratios to the same-run baselines). Arguments go to the load generator, for example
#   benches/run.sh --log-size 1000000 --scale 10000000
# Take numbers on a quiet machine: check `uptime` first, and rerun if the load was high.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-3}"
BENCHES=(--bench merkle --bench signatures --bench storage --bench provenance)

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo build --release -p fairtrail-node -p fairtrail --bins
names=()
for i in $(seq 1 "$RUNS"); do
    cargo bench -p fairtrail "${BENCHES[@]}" -- --save-baseline "run$i"
    names+=("run$i")
done
target/release/fairtrail-bench criterion-table "${names[@]}"
target/release/fairtrail-bench --runs "$RUNS" "$@"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
