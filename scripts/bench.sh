#!/usr/bin/env bash
# Benchmarks georelay against direct and native chained Redis replication on loopback and
# writes docs/BENCHMARKS.md + docs/benchmarks.json. One command:
#
#   ./scripts/bench.sh                      # every scenario, 3 runs each (~15 min on 2 cores)
#   ./scripts/bench.sh --only steady        # one scenario (steady,ceiling,catchup,fullsync,lossy,wanbytes,wansim,wait,apply,switchover,cluster)
#   ./scripts/bench.sh --runs 5 --backlogs-mb 1000,10000   # bigger; see --help
#
# Needs only what scripts/install-deps.sh installs (redis-server, redis-tools with
# redis-benchmark, a Rust toolchain). Uses ~2x the largest backlog of disk under --work
# (default /tmp/georelay-bench), removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh >/dev/null
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
cargo build --release --quiet --bin georelay --bin georelay-bench
exec ./target/release/georelay-bench "$@"
