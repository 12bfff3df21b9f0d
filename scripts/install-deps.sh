#!/usr/bin/env bash
# Installs what georelay's demo and tests need on Debian/Ubuntu: redis-server + redis-tools,
# prometheus (promtool + a real server for the deploy tests), prometheus-redis-exporter,
# systemd-analyze, strace and perf, python3 with the PyPI packages kubernetes-validate
# (offline Kubernetes schema checks) and redis==8.1.0 (redis-py, used by the Python client
# scripts the integration tests run), and a Rust toolchain if none is present. Every one is
# required: a failed install fails the script, and a final check names anything missing.
# Idempotent; safe to run again.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
command -v redis-check-rdb >/dev/null 2>&1 || need_apt+=(redis-tools)
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v prometheus-redis-exporter >/dev/null 2>&1 || need_apt+=(prometheus-redis-exporter)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v strace >/dev/null 2>&1 || need_apt+=(strace)
command -v perf >/dev/null 2>&1 || need_apt+=(linux-perf)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  $SUDO apt-get update -qq
  # --no-install-recommends: prometheus alone, without node-exporter and friends.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${need_apt[@]}" >/dev/null
fi
# The Debian package starts a redis-server on 6379; georelay's scripts use their own ports.
# (The prometheus package may start one on 9090; the tests run their own on free ports.)

# kubernetes-validate ships the Kubernetes JSON schemas, so it validates offline.
pip_install() {
  echo "installing: $* (PyPI)"
  python3 -m pip install -q "$@" 2>/dev/null \
    || python3 -m pip install -q --break-system-packages "$@"
}
if ! python3 -m kubernetes_validate --version >/dev/null 2>&1; then
  pip_install kubernetes-validate
fi
# redis-py, pinned: the tests' Python clients (Redis, RedisCluster, WAIT) run against it.
REDIS_PY_VERSION=8.1.0
if [ "$(python3 -c 'import redis; print(redis.__version__)' 2>/dev/null)" != "$REDIS_PY_VERSION" ]; then
  pip_install "redis==$REDIS_PY_VERSION"
fi

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "installing the Rust toolchain with rustup"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy
  export PATH="$HOME/.cargo/bin:$PATH"
fi

# Nothing a test needs is optional: name whatever is still missing and fail.
missing=()
for tool in redis-server redis-cli redis-check-rdb promtool prometheus \
  prometheus-redis-exporter systemd-analyze strace perf python3 cargo; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
python3 -m kubernetes_validate --version >/dev/null 2>&1 || missing+=("kubernetes-validate (PyPI)")
# tests/deploy.rs parses the manifests with PyYAML (a dependency of kubernetes-validate).
python3 -c 'import yaml' >/dev/null 2>&1 || missing+=("PyYAML (PyPI, comes with kubernetes-validate)")
[ "$(python3 -c 'import redis; print(redis.__version__)' 2>/dev/null)" = "$REDIS_PY_VERSION" ] \
  || missing+=("redis==$REDIS_PY_VERSION (PyPI)")
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: still missing after install: ${missing[*]}" >&2
  exit 1
fi
