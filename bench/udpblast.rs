//! The simulator's own ceiling: plain UDP datagrams (no QUIC, no congestion control) blasted
//! through `georelay wan-sim` with GSO, received with GRO, so what arrives per second is what
//! the simulator can carry, not what one quinn connection can.

use std::io::IoSliceMut;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use quinn::udp::{RecvMeta, Transmit, UdpSocketState};

use crate::harness::{cpu_secs, Env};
use crate::servers::WanSim;
use crate::MB;

/// Datagram size: a typical QUIC packet on loopback with the agents' settings.
const DATAGRAM: usize = 1200;
/// Datagrams per GSO send.
const PER_SEND: usize = 40;
/// Socket buffers asked for (clamped to `net.core.{r,w}mem_max`).
const BUFFER: usize = 8 << 20;

/// One blast: what was sent and what arrived.
pub struct Blast {
    /// Payload MB/s that arrived at the receiver, from its first to its last datagram.
    pub delivered_mbps: f64,
    /// Payload MB/s the sender offered.
    pub offered_mbps: f64,
    /// Share of the sent datagrams that arrived.
    pub delivered_share: f64,
    /// CPU seconds of the wan-sim process over its life.
    pub wansim_cpu: f64,
    /// Bytes that arrived.
    pub bytes: u64,
}

fn socket() -> Result<(UdpSocket, UdpSocketState)> {
    let s = UdpSocket::bind("127.0.0.1:0").context("bind UDP")?;
    let st = UdpSocketState::new((&s).into()).context("UDP socket state")?;
    let _ = st.set_recv_buffer_size((&s).into(), BUFFER);
    let _ = st.set_send_buffer_size((&s).into(), BUFFER);
    Ok((s, st))
}

/// Sends `bytes` of datagrams as fast as the sender can through a wan-sim with `flags` and
/// counts what arrives.
pub fn blast(env: &Env, bytes: u64, flags: &[String]) -> Result<Blast> {
    let (rx, rx_state) = socket()?;
    rx.set_read_timeout(Some(Duration::from_millis(500)))?;
    let wan = WanSim::start(env, rx.local_addr()?.port(), flags)?;
    let dest: SocketAddr = format!("127.0.0.1:{}", wan.port).parse()?;
    let done = Arc::new(AtomicBool::new(false));
    let receiver = {
        let done = done.clone();
        std::thread::spawn(move || -> (u64, Option<Instant>, Option<Instant>) {
            let mut bufs: Vec<Vec<u8>> = (0..8).map(|_| vec![0u8; 65_536]).collect();
            let mut meta = vec![RecvMeta::default(); 8];
            let (mut got, mut first, mut last) = (0u64, None, None);
            loop {
                let mut slices: Vec<IoSliceMut<'_>> =
                    bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
                match rx_state.recv((&rx).into(), &mut slices, &mut meta) {
                    Ok(n) => {
                        let now = Instant::now();
                        first.get_or_insert(now);
                        last = Some(now);
                        got += meta[..n].iter().map(|m| m.len as u64).sum::<u64>();
                    }
                    // A read timeout: stop once the sender is done and the pipe drained.
                    Err(_) if done.load(Ordering::Relaxed) => return (got, first, last),
                    Err(_) => {}
                }
            }
        })
    };
    let (tx, tx_state) = socket()?;
    let payload = vec![0xa5u8; DATAGRAM * PER_SEND];
    let per = tx_state.max_gso_segments().clamp(1, PER_SEND);
    let chunk = &payload[..DATAGRAM * per];
    let t0 = Instant::now();
    let mut sent = 0u64;
    while sent < bytes {
        let t = Transmit {
            destination: dest,
            ecn: None,
            contents: chunk,
            segment_size: (per > 1).then_some(DATAGRAM),
            src_ip: None,
        };
        match tx_state.send((&tx).into(), &t) {
            Ok(()) => sent += chunk.len() as u64,
            // A full send buffer: try again (the kernel drops nothing on the sending side).
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => bail!("UDP send through wan-sim: {e}"),
        }
    }
    let offered = sent as f64 / t0.elapsed().as_secs_f64() / MB;
    done.store(true, Ordering::Relaxed);
    let (got, first, last) = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("receiver thread panicked"))?;
    let wansim_cpu = cpu_secs(wan.pid());
    drop(wan);
    let (Some(first), Some(last)) = (first, last) else {
        bail!("no datagram came through wan-sim");
    };
    let secs = last.duration_since(first).as_secs_f64().max(1e-6);
    Ok(Blast {
        delivered_mbps: got as f64 / secs / MB,
        offered_mbps: offered,
        delivered_share: got as f64 / sent as f64,
        wansim_cpu,
        bytes: got,
    })
}
