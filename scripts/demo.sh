#!/usr/bin/env bash
# The demo: an origin master, a georelay agent on built-in defaults, and a Redis replica of
# the agent, all on loopback. Writes to the origin and shows the data arriving at the replica.
# Bounded: it runs for about 20 seconds, then stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --quiet
BIN="$PWD/target/release/georelay"

WORK=$(mktemp -d /tmp/georelay-demo.XXXXXX)
MASTER_PORT=${MASTER_PORT:-7379}
REPLICA_PORT=${REPLICA_PORT:-7380}
AGENT_PORT=6380   # the default listen.redis
ADMIN_PORT=9187   # the default listen.admin
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_for() { # wait_for <seconds> <description> <command...>
  local limit=$1 what=$2; shift 2
  for _ in $(seq 1 $((limit * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "demo: gave up waiting for: $what" >&2; exit 1
}

echo "== origin master on 127.0.0.1:$MASTER_PORT"
redis-server --port "$MASTER_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" \
  --logfile "$WORK/master.log" --enable-debug-command local --repl-diskless-sync-delay 0 &
pids+=($!)
wait_for 10 "the master" redis-cli -p "$MASTER_PORT" ping

cat > "$WORK/agent.toml" <<CONF
# Everything else is a built-in default (replica port 127.0.0.1:6380, admin 127.0.0.1:9187).
data_dir = "$WORK/agent-data"
[upstream]
redis = "127.0.0.1:$MASTER_PORT"
CONF
echo "== georelay agent: replica port 127.0.0.1:$AGENT_PORT, metrics http://127.0.0.1:$ADMIN_PORT/metrics"
RUST_LOG=${RUST_LOG:-info} "$BIN" run --config "$WORK/agent.toml" 2> "$WORK/agent.log" &
pids+=($!)
wait_for 20 "the agent's /readyz" curl -sf "http://127.0.0.1:$ADMIN_PORT/readyz"

echo "== replica of the agent on 127.0.0.1:$REPLICA_PORT (REPLICAOF 127.0.0.1 $AGENT_PORT)"
redis-server --port "$REPLICA_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" \
  --logfile "$WORK/replica.log" --enable-debug-command local --replicaof 127.0.0.1 "$AGENT_PORT" &
pids+=($!)
wait_for 20 "the replica's link" sh -c "redis-cli -p $REPLICA_PORT info replication | grep -q master_link_status:up"

echo "== writing 10000 keys to the origin"
for i in $(seq 1 10000); do echo "SET demo:$i value-$i"; done | redis-cli -p "$MASTER_PORT" --pipe >/dev/null
wait_for 30 "the replica to hold 10000 keys" sh -c "[ \"\$(redis-cli -p $REPLICA_PORT dbsize)\" = 10000 ]"
echo "   origin  DBSIZE $(redis-cli -p "$MASTER_PORT" dbsize)  DEBUG DIGEST $(redis-cli -p "$MASTER_PORT" debug digest)"
echo "   replica DBSIZE $(redis-cli -p "$REPLICA_PORT" dbsize)  DEBUG DIGEST $(redis-cli -p "$REPLICA_PORT" debug digest)"

echo "== a steady trickle of writes for 10 seconds; offsets as they move"
for s in $(seq 1 10); do
  for i in $(seq 1 200); do echo "INCR demo:counter"; done | redis-cli -p "$MASTER_PORT" --pipe >/dev/null
  origin=$(redis-cli -p "$MASTER_PORT" info replication | grep master_repl_offset | tr -d '\r' | cut -d: -f2)
  head=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^georelay_log_head_offset/ {print $2}')
  replica=$(redis-cli -p "$REPLICA_PORT" info replication | grep slave_repl_offset | tr -d '\r' | cut -d: -f2)
  echo "   t=${s}s origin offset $origin | agent log head $head | replica offset $replica | counter=$(redis-cli -p "$REPLICA_PORT" get demo:counter)"
  sleep 1
done

echo "== agent metrics (excerpt)"
curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | grep -E '^georelay_(log_head_offset|log_first_offset|log_disk_bytes|upstream_connected|upstream_full_syncs_total|served_full_syncs_total|served_partial_syncs_total|replica_ack_offset)' || true
if [ "$(redis-cli -p "$MASTER_PORT" debug digest)" = "$(redis-cli -p "$REPLICA_PORT" debug digest)" ]; then
  echo "== OK: the replica behind georelay holds exactly the origin's data"
else
  echo "== digests differ (still catching up?)"; exit 1
fi
