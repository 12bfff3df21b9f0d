#!/usr/bin/env bash
# Re-makes the seed corpus (fuzz/corpus/<target>/seed-*) from real traffic on loopback:
# a throwaway redis-server, a `georelay run` agent replicating it (for log records), and
# `make_corpus capture`, which speaks the replica side over raw sockets, writes through a
# client, and slices what it read into per-target seed files.
#
# Usage: fuzz/make-corpus.sh            (needs redis-server; builds what it needs)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
tmp="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

cargo build --release --quiet --manifest-path "$repo/Cargo.toml" --bin georelay
cargo build --release --quiet --manifest-path "$here/Cargo.toml" --example make_corpus
tool="$here/target/release/examples/make_corpus"

redis_port="$("$tool" free-port)"
mkdir -p "$tmp/redis" "$tmp/agent"
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$tmp/redis" --save '' \
    --appendonly no --repl-diskless-sync yes --repl-diskless-sync-delay 0 \
    --repl-ping-replica-period 1 --daemonize no --logfile "$tmp/redis.log" &
pids+=($!)
for _ in $(seq 50); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.1
done

cat >"$tmp/agent.toml" <<EOF
name = "corpus"
data_dir = "$tmp/agent"
[upstream]
redis = "127.0.0.1:$redis_port"
[listen]
redis = "127.0.0.1:$("$tool" free-port)"
admin = "127.0.0.1:$("$tool" free-port)"
[log]
segment_bytes = "64KiB"
max_bytes = "16MiB"
fsync = "always"
EOF
RUST_LOG=warn "$repo/target/release/georelay" run --config "$tmp/agent.toml" 2>"$tmp/agent.log" &
pids+=($!)
sleep 1

# Old seeds go; files the fuzzer found (named by hash) stay.
find "$here/corpus" -name 'seed-*' -delete 2>/dev/null || true
"$tool" capture "$redis_port" "$tmp/agent/segments" "$repo" "$here/corpus"
# rdb_objects: real SAVEs of every encoding from Redis 6.2, 7.0 and Valkey 9.1 (the dataset of
# tests/apply_rdb.rs, which checks them against the servers while it writes them).
eval "$(bash "$repo/scripts/fetch-servers.sh")"
mkdir -p "$here/corpus/rdb_objects"
GEORELAY_RDB_CORPUS_OUT="$here/corpus/rdb_objects" cargo test --release --quiet \
    --manifest-path "$repo/Cargo.toml" --test apply_rdb >/dev/null
du -sh --apparent-size "$here/corpus"
