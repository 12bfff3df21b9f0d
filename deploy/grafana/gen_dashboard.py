#!/usr/bin/env python3
"""Writes georelay.json (the Grafana dashboard). Edit here, run, commit both.

tests/deploy.rs checks that every georelay_* metric the dashboard queries exists in a real
agent chain's /metrics, and runs the lag panel's query on a real Prometheus."""
import json, os

SEL = 'instance=~"$instance", node=~"$node"'
RI = "$__rate_interval"
DS = {"type": "prometheus", "uid": "${datasource}"}

panels = []
_id = [0]
y = [0]


def nid():
    _id[0] += 1
    return _id[0]


def row(title):
    panels.append({"type": "row", "title": title, "id": nid(), "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": y[0]}, "panels": []})
    y[0] += 1


def ts(title, targets, unit, x, w=12, h=8, desc="", stack=False, kind="timeseries", extra=None):
    p = {
        "type": kind, "title": title, "id": nid(), "datasource": DS, "description": desc,
        "gridPos": {"h": h, "w": w, "x": x, "y": y[0]},
        "targets": [{"datasource": DS, "expr": e, "legendFormat": l, "refId": chr(65 + i)}
                    for i, (e, l) in enumerate(targets)],
        "fieldConfig": {"defaults": {"unit": unit, "min": 0}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom",
                               "calcs": ["lastNotNull", "max"]},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }
    if kind == "timeseries":
        p["fieldConfig"]["defaults"]["custom"] = {
            "drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
            "stacking": {"mode": "normal" if stack else "none"}}
    if extra:
        p.update(extra)
    panels.append(p)
    return p


def nl():
    y[0] += 8


row("Lag")
ts("Lag behind origin (seconds) per node",
   [(f"max by (node) (georelay_lag_seconds{{{SEL}}})", "{{node}}")], "s", 0,
   desc="Now minus the origin timestamp of the oldest stream byte a node does not yet hold "
        "durably; counts every hop. 0 when caught up. A silent link shows 0 here: read it "
        "with the heartbeat age beside it.")
ts("Upstream heartbeat age per node",
   [(f"max by (node) (georelay_upstream_heartbeat_age_seconds{{{SEL}}})", "{{node}}")], "s", 12,
   desc="Seconds since anything arrived from upstream. Grows when a link stalls.")
nl()
ts("Lag (bytes) per node",
   [(f"max by (node) (georelay_lag_bytes{{{SEL}}})", "{{node}}")], "bytes", 0,
   desc="Upstream head offset (latest known) minus the node's durable offset.")
ts("Offsets per node",
   [(f"max by (node) (georelay_upstream_head_offset{{{SEL}}})", "{{node}} upstream head"),
    (f"max by (node) (georelay_log_head_offset{{{SEL}}})", "{{node}} head"),
    (f"max by (node) (georelay_log_durable_offset{{{SEL}}})", "{{node}} durable")],
   "decbytes", 12, desc="Replication offsets: the same byte has the same offset on every node.")
nl()
ts("Replica lag (seconds)",
   [(f"max by (node, replica) (georelay_replica_lag_seconds{{{SEL}}})", "{{node}} → {{replica}}")],
   "s", 0, desc="Per Redis replica served by an agent (replica = ip:port).")
ts("Replica lag (bytes)",
   [(f"max by (node, replica) (georelay_replica_lag_bytes{{{SEL}}})", "{{node}} → {{replica}}")],
   "bytes", 12)
nl()
ts("Downstream agent lag (seconds)",
   [(f"max by (node, peer) (georelay_downstream_agent_lag_seconds{{{SEL}, peer=~\"$peer\"}})",
     "{{node}} → {{peer}}")], "s", 0, desc="Per region agent fed by a node over QUIC.")
ts("Downstream agent lag (bytes)",
   [(f"max by (node, peer) (georelay_downstream_agent_lag_bytes{{{SEL}, peer=~\"$peer\"}})",
     "{{node}} → {{peer}}")], "bytes", 12)
nl()

row("Links")
stat_opts = {"options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                         "colorMode": "background", "graphMode": "none", "textMode": "value_and_name"}}
p = ts("Upstream link", [(f"max by (node) (georelay_upstream_connected{{{SEL}}})", "{{node}}")],
       "none", 0, w=8, h=6, kind="stat", extra=stat_opts,
       desc="1 while the node streams from its upstream.")
p["fieldConfig"]["defaults"]["mappings"] = [
    {"type": "value", "options": {"0": {"text": "down", "color": "red"},
                                  "1": {"text": "up", "color": "green"}}}]
p["fieldConfig"]["defaults"]["thresholds"] = {
    "mode": "absolute", "steps": [{"color": "red", "value": None}, {"color": "green", "value": 1}]}
ts("Connected replicas and agents",
   [(f"sum by (node) (georelay_connected_replicas{{{SEL}}})", "{{node}} replicas"),
    (f"sum by (node) (georelay_connected_agents{{{SEL}}})", "{{node}} agents")],
   "none", 8, w=8, h=6, kind="stat", extra=stat_opts)
ts("Upstream reconnects",
   [(f"sum by (node) (increase(georelay_upstream_reconnects_total{{{SEL}}}[{RI}]))", "{{node}}")],
   "none", 16, w=8, h=6)
y[0] += 6

row("Throughput and WAN")
ts("Stream throughput received per node",
   [(f"sum by (node) (rate(georelay_upstream_stream_bytes_total{{{SEL}}}[{RI}]))", "{{node}}")],
   "Bps", 0, desc="Replication stream bytes per second arriving at each node.")
ts("WAN bytes per peer (on the wire, after compression)",
   [(f"sum by (node, peer, direction) (rate(georelay_link_bytes_total{{{SEL}, peer=~\"$peer\"}}[{RI}]))",
     "{{node}} {{direction}} {{peer}}")],
   "Bps", 12, desc="UDP bytes on the QUIC links, including QUIC overhead. peer=\"upstream\" on a region agent.")
nl()
ts("Compression ratio (wire / stream)",
   [(f"sum by (node, peer, direction) (rate(georelay_link_bytes_total{{{SEL}, peer=~\"$peer\"}}[{RI}]))"
     f" / sum by (node, peer, direction) (rate(georelay_link_stream_bytes_total{{{SEL}, peer=~\"$peer\"}}[{RI}]))",
     "{{node}} {{direction}} {{peer}}")],
   "percentunit", 0, desc="WAN bytes over stream bytes: lower is better (0.25 = 4x smaller).")
ts("Stream bytes per peer (before compression)",
   [(f"sum by (node, peer, direction) (rate(georelay_link_stream_bytes_total{{{SEL}, peer=~\"$peer\"}}[{RI}]))",
     "{{node}} {{direction}} {{peer}}")], "Bps", 12)
nl()

row("Log and snapshots")
ts("Log disk use and budget",
   [(f"max by (node) (georelay_log_disk_bytes{{{SEL}}})", "{{node}} on disk"),
    (f"max by (node) (georelay_log_max_bytes{{{SEL}}})", "{{node}} budget (log.max_bytes)")],
   "bytes", 0, desc="Segments and snapshots on disk against the retention budget.")
ts("Partial-resume window (time)",
   [(f"min by (node) (georelay_log_window_seconds{{{SEL}}})", "{{node}}")], "s", 12,
   desc="Age of the oldest byte still served: an outage shorter than this resumes with PSYNC.")
nl()
ts("Partial-resume window (bytes)",
   [(f"min by (node) (georelay_log_window_bytes{{{SEL}}})", "{{node}}"),
    (f"max by (node) (georelay_log_head_offset{{{SEL}}}) - max by (node) (georelay_log_first_offset{{{SEL}}}) + 1",
     "{{node}} head − first + 1")], "bytes", 0)
ts("fsync latency (p50, p99)",
   [(f"histogram_quantile(0.5, sum by (node, le) (rate(georelay_log_fsync_seconds_bucket{{{SEL}}}[{RI}])))", "{{node}} p50"),
    (f"histogram_quantile(0.99, sum by (node, le) (rate(georelay_log_fsync_seconds_bucket{{{SEL}}}[{RI}])))", "{{node}} p99"),
    (f"sum by (node) (rate(georelay_log_fsync_seconds_sum{{{SEL}}}[{RI}])) / sum by (node) (rate(georelay_log_fsync_seconds_count{{{SEL}}}[{RI}]))", "{{node}} mean")],
   "s", 12)
nl()
ts("Snapshot age",
   [(f"max by (node) (georelay_snapshot_age_seconds{{{SEL}}})", "{{node}}")], "s", 0, w=8,
   desc="Age of the newest usable snapshot; a full sync sends it plus every byte since.")
ts("Snapshot refreshes",
   [(f"sum by (node, result) (increase(georelay_snapshot_refreshes_total{{{SEL}}}[{RI}]))", "{{node}} {{result}}")],
   "none", 8, w=8, kind="timeseries")
ts("Log segments and corruptions",
   [(f"max by (node) (georelay_log_segments{{{SEL}}})", "{{node}} segments"),
    (f"max by (node) (georelay_log_corruptions_total{{{SEL}}})", "{{node}} corrupt records"),
    (f"max by (node) (georelay_snapshot_offset{{{SEL}}}) > bool 0", "{{node}} has snapshot")],
   "none", 16, w=8)
nl()

row("Syncs")
bars = {"fieldConfig": {"defaults": {"unit": "none", "min": 0, "custom": {
    "drawStyle": "bars", "fillOpacity": 80, "lineWidth": 1, "showPoints": "never",
    "stacking": {"mode": "normal"}}}, "overrides": []}}
ts("Full syncs served, by reason",
   [(f"sum by (node, kind, reason) (increase(georelay_served_full_syncs_total{{{SEL}}}[{RI}]))",
     "{{node}} {{kind}} {{reason}}")], "none", 0, extra=bars,
   desc="first_sync is expected; no_history, offset_out_of_range, corruption and new_epoch mean a downstream fell out of the log.")
ts("Partial syncs served",
   [(f"sum by (node, kind) (increase(georelay_served_partial_syncs_total{{{SEL}}}[{RI}]))", "{{node}} {{kind}}")],
   "none", 12, extra=bars)
nl()
ts("Syncs received from upstream",
   [(f"sum by (node, reason) (increase(georelay_upstream_full_syncs_total{{{SEL}}}[{RI}]))", "{{node}} full {{reason}}"),
    (f"sum by (node) (increase(georelay_upstream_partial_syncs_total{{{SEL}}}[{RI}]))", "{{node}} partial"),
    (f"sum by (node) (increase(georelay_upstream_replid_switches_total{{{SEL}}}[{RI}]))", "{{node}} replid switch")],
   "none", 0, extra=bars)
ts("Refusals and dropped replicas",
   [(f"sum by (node, kind, reason) (increase(georelay_served_refusals_total{{{SEL}}}[{RI}]))", "{{node}} refused {{kind}} {{reason}}"),
    (f"sum by (node, reason) (increase(georelay_replicas_dropped_total{{{SEL}}}[{RI}]))", "{{node}} dropped {{reason}}")],
   "none", 12, extra=bars)
nl()

row("Cluster lanes")
LANE = f'{SEL}, shard=~"$shard", shard!=""'
ts("Lane lag behind origin (seconds) per shard",
   [(f"max by (node, shard) (georelay_lag_seconds{{{LANE}}})", "{{node}} {{shard}}")], "s", 0, w=8,
   desc="Cluster mode: each lane's lag (one lane per shard, the shard label names it). A lane "
        "with a backlog must not hold back the others.")
ts("Lane lag (bytes) per shard",
   [(f"max by (node, shard) (georelay_lag_bytes{{{LANE}}})", "{{node}} {{shard}}")], "bytes", 8, w=8,
   desc="Upstream head minus the lane's durable offset.")
ts("Lanes streaming",
   [(f"min by (node, shard) (georelay_upstream_connected{{{LANE}}})", "{{node}} {{shard}}")],
   "none", 16, w=8,
   desc="1 while the lane streams from its shard (site) or its site lane (region); 0: the lane "
        "waits (see /status cluster and shards[].state).")
nl()

row("Apply")
ts("Apply lag behind the log (seconds) per lane",
   [(f"max by (node, shard) (georelay_apply_lag_seconds{{{SEL}}})", "{{node}} {{shard}}")], "s", 0, w=8,
   desc="Apply mode ([target]): now minus the origin timestamp of the oldest log byte not yet "
        "applied to the target. 0 when caught up.")
ts("Apply lag (bytes) and applied rate",
   [(f"max by (node, shard) (georelay_apply_lag_bytes{{{SEL}}})", "{{node}} {{shard}} behind"),
    (f"sum by (node, shard) (rate(georelay_apply_offset{{{SEL}}}[{RI}]))", "{{node}} {{shard}} applied B/s")],
   "bytes", 8, w=8,
   desc="Log head minus the offset the target holds (written in the same MULTI/EXEC as the commands), and how fast that offset moves.")
ts("Apply errors, by reason",
   [(f"sum by (node, reason) (increase(georelay_apply_errors_total{{{SEL}}}[{RI}]))", "{{node}} {{reason}}")],
   "none", 16, w=8, extra=bars,
   desc="readonly, oom, loading, auth, busy, target_down: the lane pauses and retries (nothing skipped). "
        "unknown_command: stopped (or skipped with target.on_unknown = \"skip\"). flush_refused: a full sync needs target.allow_flush.")
nl()

row("Build")
ts("Versions", [(f"georelay_build_info{{{SEL}}}", "{{node}} {{version}}")], "none", 0, w=24, h=5,
   kind="table", extra={"targets": [{"datasource": DS, "expr": f"georelay_build_info{{{SEL}}}",
                                     "format": "table", "instant": True, "refId": "A"}],
                        "options": {}})


def var(name, label, query, include_all=True):
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": query, "refId": name}, "definition": query,
            "refresh": 2, "multi": True, "includeAll": include_all, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "sort": 1, "options": [], "hide": 0}


dash = {
    "title": "georelay",
    "uid": "georelay",
    "description": "Cross-datacenter Redis replication through georelay agents: lag per hop, replica and peer; WAN and compression; log and resume window; syncs.",
    "tags": ["georelay", "redis", "replication"],
    "editable": True,
    "graphTooltip": 1,
    "refresh": "30s",
    "schemaVersion": 39,
    "time": {"from": "now-3h", "to": "now"},
    "timezone": "",
    "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource",
                  "pluginId": "prometheus", "pluginName": "Prometheus"}],
    "templating": {"list": [
        {"name": "datasource", "label": "Data source", "type": "datasource",
         "query": "prometheus", "current": {}, "hide": 0, "refresh": 1, "options": []},
        var("instance", "Instance", "label_values(georelay_build_info, instance)"),
        var("node", "Node", 'label_values(georelay_build_info{instance=~"$instance"}, node)'),
        var("peer", "Peer", 'label_values(georelay_link_bytes_total{node=~"$node"}, peer)'),
        var("shard", "Shard (lane)", 'label_values(georelay_log_head_offset{node=~"$node", shard!=""}, shard)'),
    ]},
    "annotations": {"list": [{
        "name": "Upstream full syncs", "datasource": DS, "enable": True, "iconColor": "orange",
        "expr": 'changes(georelay_upstream_full_syncs_total{node=~"$node"}[2m]) > 0',
        "titleFormat": "full sync at {{node}} ({{reason}})"}]},
    "panels": panels,
}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "georelay.json")
with open(out, "w") as f:
    json.dump(dash, f, indent=2)
    f.write("\n")
print("wrote", out)
