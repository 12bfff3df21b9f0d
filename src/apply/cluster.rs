//! The cluster target's shell (blocking, on the applier's thread): discovers the target
//! cluster from its seeds (`CLUSTER SHARDS`, or `CLUSTER NODES` on 6.2, parsed by
//! [`crate::cluster::topology`]), keeps one connection per master, and commits per-slot
//! transactions pipelined per node, following `MOVED` (the map is refreshed), `ASK`
//! (`ASKING` + the same transaction on that node) and `TRYAGAIN` (a short wait). A lost
//! connection is an error: the session restarts and reads the checkpoints again, so an
//! answer that never came is settled by what the target holds, never guessed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::conn::{self, Conn, Dialer};
use super::slots::{parse_redirect, Redirect, TargetMap};
use super::txn::{encode_body, judge, Refusal, Verdict};
use super::ApplyError;
use crate::cluster::topology::{self, TopologyError};
use crate::resp::{command, encode, Frame};

/// Redirections and `TRYAGAIN`s one transaction may take before the session restarts.
const MAX_ROUNDS: usize = 600;
const TRYAGAIN_WAIT: Duration = Duration::from_millis(20);

/// One slot's transaction: its commands (each with the origin offset and what it is, for
/// errors) and the checkpoint write that ends it.
#[derive(Debug, Clone)]
pub struct SlotTxn {
    pub slot: u16,
    pub cmds: Vec<Vec<Bytes>>,
    /// Per command: origin offset and a label (the key of a snapshot item, or empty).
    pub from: Vec<(u64, String)>,
    pub ckpt: Option<(Bytes, Bytes)>,
}

/// A command of a transaction the target refused as unknown.
#[derive(Debug)]
pub struct Unknown {
    pub txn: usize,
    pub index: usize,
    pub message: String,
}

/// The outcome of [`ClusterTarget::commit`]: every transaction is applied except those in
/// `unknown` (a command the target refuses; nothing of that transaction is applied).
#[derive(Debug, Default)]
pub struct Committed {
    /// Runtime errors (txn, index, message) inside applied transactions.
    pub errors: Vec<(usize, usize, String)>,
    pub unknown: Vec<Unknown>,
}

pub struct ClusterTarget {
    dialer: Dialer,
    seeds: Vec<String>,
    known: Vec<String>,
    tls: bool,
    pub map: TargetMap,
    conns: HashMap<String, Conn>,
    /// Masters written since the last [`ClusterTarget::settle`].
    pub(super) dirty: BTreeSet<String>,
    /// Per master: how many replicas it reports (`INFO replication`), and when it was asked;
    /// 0 after a `WAIT` none acknowledged in time. Asked again after
    /// [`super::cluster_wait::RECHECK`].
    pub(super) replicas: BTreeMap<String, (usize, Instant)>,
}

impl ClusterTarget {
    /// Reads the topology from the first seed (then known node) that answers.
    pub fn connect(dialer: &Dialer, seeds: &[String]) -> Result<ClusterTarget, ApplyError> {
        let mut t = ClusterTarget {
            dialer: dialer.clone(),
            seeds: seeds.to_vec(),
            known: Vec::new(),
            tls: dialer.tls.is_some(),
            map: TargetMap { owner: Vec::new() },
            conns: HashMap::new(),
            dirty: BTreeSet::new(),
            replicas: BTreeMap::new(),
        };
        t.refresh()?;
        Ok(t)
    }

    pub fn addr(&self) -> String {
        self.seeds.join(",")
    }

    /// Reads the slot map again.
    pub fn refresh(&mut self) -> Result<(), ApplyError> {
        let mut errors = Vec::new();
        let candidates: Vec<String> = self.seeds.iter().chain(&self.known).cloned().collect();
        let mut tried = Vec::new();
        for addr in candidates {
            if tried.contains(&addr) {
                continue;
            }
            tried.push(addr.clone());
            match self.read_topology(&addr) {
                Ok(map) => {
                    self.known = map.masters();
                    self.map = map;
                    return Ok(());
                }
                Err(e @ ApplyError::Database { .. }) => return Err(e),
                Err(e) => errors.push(e.to_string()),
            }
        }
        Err(ApplyError::TargetDown {
            addr: self.addr(),
            message: format!(
                "cannot read the target cluster's slots from any seed of target.cluster: {}",
                errors.join("; ")
            ),
        })
    }

    fn read_topology(&mut self, addr: &str) -> Result<TargetMap, ApplyError> {
        let conn = self.conn(addr)?;
        let reply = conn.call(&[b"CLUSTER", b"SHARDS"])?;
        let topo = match topology::parse_shards(&reply) {
            Ok(t) => t,
            Err(TopologyError::ShardsUnsupported(_)) => {
                let nodes = conn.call_ok(&[b"CLUSTER", b"NODES"])?;
                let text = conn::text(&nodes).unwrap_or_default();
                topology::parse_nodes(&String::from_utf8_lossy(&text))
                    .map_err(|e| self.bad(addr, e))?
            }
            Err(TopologyError::NotCluster(_, msg)) => {
                return Err(ApplyError::Database {
                    db: 0,
                    why: format!("target.cluster names {addr}, which is not in cluster mode ({msg}); use target.redis for a standalone target"),
                    offset: 0,
                })
            }
            Err(e) => return Err(self.bad(addr, e)),
        };
        let map = TargetMap::from_topology(&topo, self.tls);
        if map.uncovered() > 0 {
            return Err(ApplyError::Refused {
                reason: "busy",
                message: format!(
                    "{} slots of the target cluster have no master ({addr})",
                    map.uncovered()
                ),
            });
        }
        Ok(map)
    }

    fn bad(&mut self, addr: &str, e: TopologyError) -> ApplyError {
        self.conns.remove(addr);
        ApplyError::TargetDown {
            addr: addr.to_string(),
            message: e.to_string(),
        }
    }

    fn conn(&mut self, addr: &str) -> Result<&mut Conn, ApplyError> {
        if !self.conns.contains_key(addr) {
            let c = self.dialer.connect(addr)?;
            self.conns.insert(addr.to_string(), c);
        }
        self.conns
            .get_mut(addr)
            .ok_or_else(|| ApplyError::TargetDown {
                addr: addr.to_string(),
                message: "no connection".into(),
            })
    }

    /// Runs `f` on the connection to `addr`, dropping the connection when it fails.
    pub(super) fn on<T>(
        &mut self,
        addr: &str,
        f: impl FnOnce(&mut Conn) -> Result<T, ApplyError>,
    ) -> Result<T, ApplyError> {
        let r = f(self.conn(addr)?);
        if matches!(r, Err(ApplyError::TargetDown { .. })) {
            self.conns.remove(addr);
        }
        r
    }

    /// Drops the connections to `addrs`, which still owe replies: read later, they would be
    /// taken for the replies to other commands.
    pub(super) fn drop_owing<'a>(&mut self, addrs: impl Iterator<Item = &'a String>) {
        for a in addrs {
            self.conns.remove(a);
        }
    }

    fn owner(&self, slot: u16) -> Result<String, ApplyError> {
        self.map
            .owner(slot)
            .map(str::to_string)
            .ok_or_else(|| ApplyError::Refused {
                reason: "busy",
                message: format!("slot {slot} of the target cluster has no master"),
            })
    }

    /// One command on every master (a keyless barrier): the replies, master by master.
    pub fn on_masters(&mut self, cmd: &[Bytes]) -> Result<Vec<(String, Frame)>, ApplyError> {
        let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_ref()).collect();
        let mut out = Vec::new();
        for m in self.map.masters() {
            self.dirty.insert(m.clone());
            let f = self.on(&m, |c| c.call(&args))?;
            out.push((m, f));
        }
        Ok(out)
    }

    /// One command on the master of `slot`, following redirections.
    pub fn call_slot(&mut self, slot: u16, args: &[&[u8]]) -> Result<Frame, ApplyError> {
        let mut ask: Option<String> = None;
        for _ in 0..MAX_ROUNDS {
            let addr = match &ask {
                Some(a) => a.clone(),
                None => self.owner(slot)?,
            };
            let asking = ask.is_some();
            self.dirty.insert(addr.clone());
            let f = self.on(&addr, |c| {
                if asking {
                    c.call(&[b"ASKING"])?;
                }
                c.call(args)
            })?;
            match &f {
                Frame::Error(e) => match parse_redirect(e) {
                    Some(Redirect::Moved { .. }) => {
                        ask = None;
                        self.refresh()?;
                    }
                    Some(Redirect::Ask { addr, .. }) => ask = Some(addr),
                    None if e.starts_with("TRYAGAIN") => std::thread::sleep(TRYAGAIN_WAIT),
                    None => return Ok(f),
                },
                _ => return Ok(f),
            }
        }
        Err(still_moving(slot))
    }

    /// `GET` of many keys, each in its slot, pipelined per master.
    pub fn get_many(&mut self, keys: &[(u16, Bytes)]) -> Result<Vec<Frame>, ApplyError> {
        let mut by_node: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, (slot, _)) in keys.iter().enumerate() {
            by_node.entry(self.owner(*slot)?).or_default().push(i);
        }
        let mut out = vec![Frame::Null; keys.len()];
        let mut again = Vec::new();
        for (addr, idx) in &by_node {
            let mut buf = BytesMut::new();
            for &i in idx {
                buf.extend_from_slice(&command(&[b"GET", &keys[i].1]));
            }
            let replies = self.on(addr, |c| {
                c.send(&buf)?;
                idx.iter().map(|_| c.read()).collect::<Result<Vec<_>, _>>()
            })?;
            for (&i, f) in idx.iter().zip(replies) {
                match &f {
                    Frame::Error(_) => again.push(i),
                    _ => out[i] = f,
                }
            }
        }
        for i in again {
            let (slot, key) = &keys[i];
            out[i] = match self.call_slot(*slot, &[b"GET", key])? {
                Frame::Error(e) => return Err(conn::refusal(&e, &[b"GET"])),
                f => f,
            };
        }
        Ok(out)
    }

    /// Keys in `slots` that are not georelay's checkpoints (`CLUSTER COUNTKEYSINSLOT` less
    /// the `georelay:checkpoint:` keys among the first 8 of `CLUSTER GETKEYSINSLOT`), on each
    /// slot's master, pipelined.
    pub fn data_keys_in(&mut self, slots: &[u16]) -> Result<u64, ApplyError> {
        let mut by_node: BTreeMap<String, Vec<u16>> = BTreeMap::new();
        for &s in slots {
            by_node.entry(self.owner(s)?).or_default().push(s);
        }
        let mut total = 0u64;
        for (addr, list) in &by_node {
            let mut buf = BytesMut::new();
            for s in list {
                let n = s.to_string();
                buf.extend_from_slice(&command(&[b"CLUSTER", b"COUNTKEYSINSLOT", n.as_bytes()]));
                buf.extend_from_slice(&command(&[
                    b"CLUSTER",
                    b"GETKEYSINSLOT",
                    n.as_bytes(),
                    b"8",
                ]));
            }
            let replies = self.on(addr, |c| {
                c.send(&buf)?;
                (0..list.len() * 2)
                    .map(|_| c.read())
                    .collect::<Result<Vec<_>, _>>()
            })?;
            for pair in replies.chunks(2) {
                let (Some(Frame::Integer(n)), Some(Frame::Array(keys))) =
                    (pair.first(), pair.get(1))
                else {
                    return Err(ApplyError::Refused {
                        reason: "protocol",
                        message: format!(
                            "{addr}: CLUSTER COUNTKEYSINSLOT/GETKEYSINSLOT answered {pair:?}"
                        ),
                    });
                };
                let ours = keys
                    .iter()
                    .filter(|k| {
                        conn::text(k).is_some_and(|k| k.starts_with(b"georelay:checkpoint:"))
                    })
                    .count() as u64;
                total += u64::try_from(*n).unwrap_or(0).saturating_sub(ours);
            }
        }
        Ok(total)
    }

    /// Commits every transaction (at most one per slot), pipelined per master; returns once
    /// each one is applied, or the first command the target refuses.
    pub fn commit(&mut self, txns: &[SlotTxn]) -> Result<Committed, ApplyError> {
        let mut pending: Vec<(usize, Option<String>)> =
            (0..txns.len()).map(|i| (i, None)).collect();
        let mut out = Committed::default();
        for _ in 0..MAX_ROUNDS {
            if pending.is_empty() {
                return Ok(out);
            }
            let mut by_node: BTreeMap<String, Vec<(usize, bool)>> = BTreeMap::new();
            for (i, ask) in &pending {
                let (addr, asking) = match ask {
                    Some(a) => (a.clone(), true),
                    None => (self.owner(txns[*i].slot)?, false),
                };
                by_node.entry(addr).or_default().push((*i, asking));
            }
            let mut retry = Vec::new();
            let mut wait = false;
            let mut moved = false;
            // Read every node's replies before giving up on a refusal, so each connection
            // stays in step.
            let mut refused = None;
            // Every master's transactions go out before any reply is read, so the masters
            // work on them at the same time.
            let mut sent = Vec::with_capacity(by_node.len());
            for (addr, list) in &by_node {
                self.dirty.insert(addr.clone());
                let (buf, bodies) = encode_txns(txns, list);
                if let Err(e) = self.on(addr, |c| c.send(&buf)) {
                    self.drop_owing(sent.iter().map(|s: &(&String, _, _)| s.0));
                    return Err(e);
                }
                sent.push((addr, list, bodies));
            }
            for (n, (addr, list, bodies)) in sent.iter().enumerate() {
                let verdicts = match self.on(addr, |c| read_txns(c, bodies)) {
                    Ok(v) => v,
                    Err(e) => {
                        self.drop_owing(sent[n + 1..].iter().map(|s| s.0));
                        return Err(e);
                    }
                };
                for ((i, _), v) in list.iter().zip(verdicts) {
                    match v {
                        Verdict::Applied { errors: e } => {
                            out.errors.extend(e.into_iter().map(|(j, m)| (*i, j, m)))
                        }
                        Verdict::Refused(Refusal::Redirect { message, .. }) => {
                            match parse_redirect(&message) {
                                Some(Redirect::Ask { addr, .. }) => retry.push((*i, Some(addr))),
                                _ => {
                                    moved = true;
                                    retry.push((*i, None));
                                }
                            }
                        }
                        Verdict::Refused(Refusal::Pause { message, .. })
                            if message.starts_with("TRYAGAIN") =>
                        {
                            wait = true;
                            retry.push((*i, None));
                        }
                        Verdict::Refused(Refusal::Pause { reason, message }) => {
                            refused.get_or_insert(ApplyError::Refused {
                                reason,
                                message: format!("{addr}: {message}"),
                            });
                        }
                        Verdict::Refused(Refusal::Unknown { index, message }) => {
                            out.unknown.push(Unknown {
                                txn: *i,
                                index,
                                message,
                            })
                        }
                    }
                }
            }
            if let Some(e) = refused {
                return Err(e);
            }
            if moved {
                self.refresh()?;
            }
            if wait {
                std::thread::sleep(TRYAGAIN_WAIT);
            }
            pending = retry;
        }
        Err(still_moving(pending.first().map_or(0, |p| txns[p.0].slot)))
    }
}

fn still_moving(slot: u16) -> ApplyError {
    ApplyError::Refused {
        reason: "busy",
        message: format!("slot {slot} of the target is still redirecting after {MAX_ROUNDS} tries"),
    }
}

/// `[ASKING] MULTI cmds… SET ckpt EXEC` for each listed transaction, as one write, and per
/// transaction whether it asked and how many commands it holds (for [`read_txns`]).
fn encode_txns(txns: &[SlotTxn], list: &[(usize, bool)]) -> (BytesMut, Vec<(bool, usize)>) {
    let mut buf = BytesMut::new();
    let mut bodies = Vec::with_capacity(list.len());
    for &(i, asking) in list {
        let t = &txns[i];
        if asking {
            buf.extend_from_slice(&command(&[b"ASKING"]));
        }
        encode(
            &Frame::Array(vec![Frame::Bulk(Bytes::from_static(b"MULTI"))]),
            &mut buf,
        );
        let mut all = t.cmds.clone();
        if let Some((k, v)) = &t.ckpt {
            all.push(vec![Bytes::from_static(b"SET"), k.clone(), v.clone()]);
        }
        encode_body(&all, &mut buf);
        bodies.push((asking, all.len()));
    }
    (buf, bodies)
}

/// Reads and judges the replies to what [`encode_txns`] encoded.
fn read_txns(c: &mut Conn, bodies: &[(bool, usize)]) -> Result<Vec<Verdict>, ApplyError> {
    let mut out = Vec::with_capacity(bodies.len());
    for &(asking, n) in bodies {
        if asking {
            c.read()?;
        }
        let multi = c.read()?;
        let mut replies = Vec::with_capacity(n + 1);
        for _ in 0..=n {
            replies.push(c.read()?);
        }
        out.push(match multi {
            Frame::Error(e) => Verdict::Refused(super::txn::classify(0, &e)),
            _ => judge(&replies, n),
        });
    }
    Ok(out)
}
