#!/usr/bin/env bash
# The demo: two regions on loopback. An origin master, site agent A (built-in defaults plus a
# QUIC listener), the wan-sim impairment relay (20 ms each way, 1% loss), region agent B, and a
# Redis replica of B. Writes to the origin and shows the data and the lag arriving in region B.
# Bounded: it runs for about 30 seconds, then stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --quiet
BIN="$PWD/target/release/georelay"

WORK=$(mktemp -d /tmp/georelay-demo.XXXXXX)
MASTER_PORT=${MASTER_PORT:-7379}
REPLICA_PORT=${REPLICA_PORT:-7380}
AGENT_PORT=6380   # A: the default listen.redis
ADMIN_PORT=9187   # A: the default listen.admin
QUIC_PORT=7443    # A: listen.agent
WAN_PORT=7500     # wan-sim in front of A
B_PORT=6381       # B: replica port
B_ADMIN=9188      # B: admin port
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

"$BIN" certs init --dir "$WORK/certs" --nodes site-a,region-b >/dev/null

cat > "$WORK/site-a.toml" <<CONF
# Everything not set here is a built-in default (replica port 127.0.0.1:6380, admin 127.0.0.1:9187).
name = "site-a"
data_dir = "$WORK/site-a"
[upstream]
redis = "127.0.0.1:$MASTER_PORT"
[listen]
agent = "127.0.0.1:$QUIC_PORT"
[tls]
ca = "$WORK/certs/ca.pem"
cert = "$WORK/certs/site-a.pem"
key = "$WORK/certs/site-a.key"
CONF
cat > "$WORK/region-b.toml" <<CONF
name = "region-b"
data_dir = "$WORK/region-b"
[upstream]
agent = "127.0.0.1:$WAN_PORT"
[listen]
redis = "127.0.0.1:$B_PORT"
admin = "127.0.0.1:$B_ADMIN"
[tls]
ca = "$WORK/certs/ca.pem"
cert = "$WORK/certs/region-b.pem"
key = "$WORK/certs/region-b.key"
server_name = "site-a"
CONF
echo "== site agent A: replica port 127.0.0.1:$AGENT_PORT, QUIC 127.0.0.1:$QUIC_PORT, metrics http://127.0.0.1:$ADMIN_PORT/metrics"
RUST_LOG=${RUST_LOG:-info} "$BIN" run --config "$WORK/site-a.toml" 2> "$WORK/site-a.log" &
pids+=($!)
wait_for 20 "A's /readyz" curl -sf "http://127.0.0.1:$ADMIN_PORT/readyz"

echo "== wan-sim 127.0.0.1:$WAN_PORT -> A: 20 ms each way, 2 ms jitter, 1% loss"
"$BIN" wan-sim --listen "127.0.0.1:$WAN_PORT" --forward "127.0.0.1:$QUIC_PORT" --delay 20ms --jitter 2ms --loss 1% --duration 5m 2> "$WORK/wan-sim.log" &
pids+=($!)

echo "== region agent B (upstream: A through the WAN): replica port 127.0.0.1:$B_PORT, metrics http://127.0.0.1:$B_ADMIN/metrics"
RUST_LOG=${RUST_LOG:-info} "$BIN" run --config "$WORK/region-b.toml" 2> "$WORK/region-b.log" &
pids+=($!)
wait_for 30 "B's /readyz" curl -sf "http://127.0.0.1:$B_ADMIN/readyz"

echo "== replica in region B on 127.0.0.1:$REPLICA_PORT (REPLICAOF 127.0.0.1 $B_PORT)"
redis-server --port "$REPLICA_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" \
  --logfile "$WORK/replica.log" --enable-debug-command local --replicaof 127.0.0.1 "$B_PORT" &
pids+=($!)
wait_for 30 "the replica's link" sh -c "redis-cli -p $REPLICA_PORT info replication | grep -q master_link_status:up"

echo "== writing 10000 keys to the origin"
for i in $(seq 1 10000); do echo "SET demo:$i value-$i"; done | redis-cli -p "$MASTER_PORT" --pipe >/dev/null
wait_for 30 "the replica to hold 10000 keys" sh -c "[ \"\$(redis-cli -p $REPLICA_PORT dbsize)\" = 10000 ]"
echo "   origin  DBSIZE $(redis-cli -p "$MASTER_PORT" dbsize)  DEBUG DIGEST $(redis-cli -p "$MASTER_PORT" debug digest)"
echo "   replica DBSIZE $(redis-cli -p "$REPLICA_PORT" dbsize)  DEBUG DIGEST $(redis-cli -p "$REPLICA_PORT" debug digest)"

echo "== a steady trickle of writes for 10 seconds; offsets as they move"
for s in $(seq 1 10); do
  for i in $(seq 1 200); do echo "INCR demo:counter"; done | redis-cli -p "$MASTER_PORT" --pipe >/dev/null
  origin=$(redis-cli -p "$MASTER_PORT" info replication | grep master_repl_offset | tr -d '\r' | cut -d: -f2)
  a_head=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^georelay_log_head_offset/ {print $2}')
  b_metrics=$(curl -s "http://127.0.0.1:$B_ADMIN/metrics")
  b_head=$(echo "$b_metrics" | awk '/^georelay_log_head_offset/ {print $2}')
  b_lag=$(echo "$b_metrics" | awk '/^georelay_lag_seconds/ {print $2}')
  b_lag_bytes=$(echo "$b_metrics" | awk '/^georelay_lag_bytes/ {print $2}')
  replica=$(redis-cli -p "$REPLICA_PORT" info replication | grep slave_repl_offset | tr -d '\r' | cut -d: -f2)
  echo "   t=${s}s origin $origin | A head $a_head | B head $b_head (lag ${b_lag}s, ${b_lag_bytes} B) | B's replica $replica | counter=$(redis-cli -p "$REPLICA_PORT" get demo:counter)"
  sleep 1
done

echo "== region agent B's metrics (excerpt)"
curl -s "http://127.0.0.1:$B_ADMIN/metrics" | grep -E '^georelay_(log_head_offset|lag_bytes|lag_seconds|upstream_heartbeat_age_seconds|upstream_connected|upstream_full_syncs_total|served_full_syncs_total|replica_ack_offset|link_bytes_total|link_stream_bytes_total)' || true
if [ "$(redis-cli -p "$MASTER_PORT" debug digest)" = "$(redis-cli -p "$REPLICA_PORT" debug digest)" ]; then
  echo "== OK: the replica in region B holds exactly the origin's data"
else
  echo "== digests differ (still catching up?)"; exit 1
fi
