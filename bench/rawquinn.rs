//! The raw quinn baselines: one stream between two endpoints in the bench process with the
//! agents' transport settings, directly or through a wan-sim.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use georelay::link::quic::{self, TransportSettings};
use georelay::link::tls::TlsFiles;

use crate::harness::{cpu_secs, Env};
use crate::servers::WanSim;
use crate::{MB, MIB};

/// A connected pair: the client's connection to a server task that opens one uni stream and
/// writes `bytes` into it (`None`: until the stream is stopped), through a wan-sim with `flags`
/// if given (kept alive by the returned handle).
struct Pair {
    conn: quinn::Connection,
    server: tokio::task::JoinHandle<Result<()>>,
    wansim: Option<WanSim>,
}

async fn connect_pair(
    env: &Env,
    ts: &TransportSettings,
    wan: Option<&[String]>,
    bytes: Option<u64>,
) -> Result<Pair> {
    let server = quic::server_endpoint(
        "127.0.0.1:0".parse()?,
        &TlsFiles::in_dir(&env.pki, "site-a"),
        ts,
    )?;
    let saddr = server.local_addr()?;
    let wansim = match wan {
        Some(f) => Some(WanSim::start(env, saddr.port(), f)?),
        None => None,
    };
    let target: SocketAddr = match &wansim {
        Some(w) => format!("127.0.0.1:{}", w.port).parse()?,
        None => saddr,
    };
    let task = tokio::spawn(async move {
        let inc = server
            .accept()
            .await
            .ok_or_else(|| anyhow!("no incoming"))?;
        let conn = quic::accept(inc).await?;
        let mut s = conn.open_uni().await?;
        let chunk = Bytes::from(vec![0x5au8; MIB as usize]);
        let Some(mut left) = bytes else {
            while s.write_chunk(chunk.clone()).await.is_ok() {}
            return Ok(());
        };
        while left > 0 {
            let n = left.min(MIB);
            s.write_chunk(chunk.slice(..n as usize)).await?;
            left -= n;
        }
        s.finish()?;
        let _ = s.stopped().await;
        conn.closed().await;
        Ok(())
    });
    let client = quic::client_endpoint(&TlsFiles::in_dir(&env.pki, "region-b"), ts)?;
    let conn = quic::connect(&client, target, "site-a").await?;
    Ok(Pair {
        conn,
        server: task,
        wansim,
    })
}

/// What one raw quinn transfer took.
pub struct RawRun {
    /// Seconds from the stream's acceptance to its end.
    pub secs: f64,
    /// CPU seconds of this process (both quinn ends) over the transfer.
    pub cpu: f64,
    /// CPU seconds of the wan-sim process over its life, when one was in the path.
    pub wansim_cpu: Option<f64>,
}

/// A raw quinn single-stream transfer of `bytes` (server sends, like the site agent), with the
/// agents' default transport settings; optionally through a wan-sim with `flags`.
pub fn raw_quinn(
    env: &Env,
    rt: &tokio::runtime::Runtime,
    bytes: u64,
    wan: Option<&[String]>,
) -> Result<RawRun> {
    rt.block_on(async move {
        let pair = connect_pair(
            env,
            &georelay::config::LinkSettings::default().transport,
            wan,
            Some(bytes),
        )
        .await?;
        let cpu0 = cpu_secs(0);
        let t0 = Instant::now();
        let mut r = pair.conn.accept_uni().await?;
        let mut got = 0u64;
        while let Some(c) = r.read_chunk(usize::MAX, true).await? {
            got += c.bytes.len() as u64;
        }
        let el = t0.elapsed().as_secs_f64();
        let cpu = cpu_secs(0) - cpu0;
        pair.conn.close(0u32.into(), b"done");
        let _ = tokio::time::timeout(Duration::from_secs(5), pair.server).await;
        let wansim_cpu = pair.wansim.as_ref().map(|w| cpu_secs(w.pid()));
        drop(pair.wansim);
        if got != bytes {
            bail!("raw quinn: got {got} of {bytes}");
        }
        Ok(RawRun {
            secs: el,
            cpu,
            wansim_cpu,
        })
    })
}

/// Raw quinn through a wan-sim with `flags`, congestion controller `cc` and the windows
/// `link.window = link_window` gives an agent: MB/s received over `window` (after the first
/// byte).
pub fn raw_quinn_window(
    env: &Env,
    rt: &tokio::runtime::Runtime,
    window: Duration,
    flags: &[String],
    cc: &str,
    link_window: u64,
) -> Result<f64> {
    rt.block_on(async move {
        // As `link.window` sets them for an agent.
        let ts = TransportSettings {
            congestion: cc.parse().map_err(|e: String| anyhow!(e))?,
            stream_window: link_window,
            conn_window: link_window,
            send_window: link_window,
            ..georelay::config::LinkSettings::default().transport
        };
        let pair = connect_pair(env, &ts, Some(flags), None).await?;
        let mut r = pair.conn.accept_uni().await?;
        let mut got = 0u64;
        r.read_chunk(usize::MAX, true).await?;
        let t0 = Instant::now();
        while t0.elapsed() < window {
            match tokio::time::timeout(
                window.saturating_sub(t0.elapsed()),
                r.read_chunk(usize::MAX, true),
            )
            .await
            {
                Ok(Ok(Some(c))) => got += c.bytes.len() as u64,
                _ => break,
            }
        }
        let el = t0.elapsed().as_secs_f64();
        pair.conn.close(0u32.into(), b"done");
        pair.server.abort();
        drop(pair.wansim);
        Ok(got as f64 / el / MB)
    })
}
