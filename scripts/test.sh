#!/usr/bin/env bash
# The whole test suite: installs what it needs, then runs unit and integration tests
# against real redis-server processes on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo test --release --all-targets -- --test-threads=2 "$@"
