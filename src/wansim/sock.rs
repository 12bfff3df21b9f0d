//! A relay socket with batched, segmented I/O through quinn's `quinn-udp` (re-exported as
//! `quinn::udp`): `recvmmsg` with UDP GRO in (one receive call returns up to [`RECV_BATCH`]
//! buffers, each holding many datagrams of one sender), `sendmsg` with UDP GSO out (one call
//! sends up to 64 equal-sized datagrams to one destination). The unsafe syscall code lives in
//! that crate; nothing here is `unsafe`.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use quinn::udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Buffers per receive call.
pub(crate) const RECV_BATCH: usize = 8;
/// Bytes per receive buffer: the largest UDP payload a GRO receive can coalesce.
const RECV_BUF: usize = 65_536;
/// Most payload bytes in one GSO send (the IPv6 UDP payload limit, rounded down).
pub(crate) const MAX_GSO_BYTES: usize = 65_000;
/// Socket buffers asked for (the kernel clamps to `net.core.{r,w}mem_max`).
const SOCKET_BUFFER: usize = 8 << 20;

/// A UDP socket registered with tokio plus quinn-udp's per-socket state.
#[derive(Debug)]
pub(crate) struct Sock {
    io: UdpSocket,
    state: UdpSocketState,
}

/// The buffers and metadata of one batched receive.
pub(crate) struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    meta: Vec<RecvMeta>,
}

impl RecvBatch {
    pub(crate) fn new() -> Self {
        RecvBatch {
            bufs: (0..RECV_BATCH).map(|_| vec![0u8; RECV_BUF]).collect(),
            meta: vec![RecvMeta::default(); RECV_BATCH],
        }
    }

    /// The `i`th received buffer: its sender, its bytes and the size of each datagram in it
    /// (the last one may be shorter).
    pub(crate) fn get(&self, i: usize) -> (SocketAddr, &[u8], usize) {
        let m = &self.meta[i];
        let len = m.len.min(RECV_BUF);
        let stride = if m.stride == 0 { len.max(1) } else { m.stride };
        (m.addr, &self.bufs[i][..len], stride)
    }
}

impl Sock {
    /// Binds `addr`, enables GRO and asks for large socket buffers.
    pub(crate) fn bind(addr: SocketAddr) -> io::Result<Sock> {
        let std = std::net::UdpSocket::bind(addr)?;
        std.set_nonblocking(true)?;
        let state = UdpSocketState::new((&std).into())?;
        // Best effort: a smaller buffer only means earlier kernel drops under bursts.
        let _ = state.set_recv_buffer_size((&std).into(), SOCKET_BUFFER);
        let _ = state.set_send_buffer_size((&std).into(), SOCKET_BUFFER);
        Ok(Sock {
            io: UdpSocket::from_std(std)?,
            state,
        })
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// Most datagrams one [`Sock::send`] may carry (1 once the kernel refused GSO).
    pub(crate) fn max_segments(&self) -> usize {
        self.state.max_gso_segments().max(1)
    }

    /// Waits for datagrams and receives a batch; returns how many buffers of `batch` are filled.
    pub(crate) async fn recv(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        loop {
            self.io.readable().await?;
            let mut slices: Vec<IoSliceMut<'_>> =
                batch.bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
            let r = self.io.try_io(Interest::READABLE, || {
                self.state
                    .recv((&self.io).into(), &mut slices, &mut batch.meta)
            });
            match r {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return r,
            }
        }
    }

    /// Sends `contents` to `dest` as datagrams of `segment` bytes (the last may be shorter).
    pub(crate) async fn send(
        &self,
        dest: SocketAddr,
        contents: &[u8],
        segment: usize,
    ) -> io::Result<()> {
        let t = Transmit {
            destination: dest,
            ecn: None,
            contents,
            segment_size: (contents.len() > segment).then_some(segment),
            src_ip: None,
        };
        loop {
            self.io.writable().await?;
            let r = self.io.try_io(Interest::WRITABLE, || {
                self.state.try_send((&self.io).into(), &t)
            });
            match r {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return r,
            }
        }
    }
}
