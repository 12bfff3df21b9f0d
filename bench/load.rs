//! Load generators: redis-benchmark SETs, the realistic write mix, the full-sync dataset.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use georelay::resp;
use rand::{Rng, RngCore, SeedableRng};

use crate::client::Client;

pub fn redis_benchmark(port: u16, value: usize, n: u64) -> Result<Duration> {
    redis_benchmark_with(port, &["-t", "set"], value, n, &[])
}

/// redis-benchmark with extra `flags` (e.g. `--cluster`) and an optional command of its own
/// (`cmd`, e.g. `SET {tag}k:__rand_int__ v`), `-P 16 -c 50 -r 100000`.
pub fn redis_benchmark_with(
    port: u16,
    flags: &[&str],
    value: usize,
    n: u64,
    cmd: &[&str],
) -> Result<Duration> {
    let t0 = Instant::now();
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(flags)
        .args(["-d", &value.to_string(), "-P", "16", "-c", "50"])
        .args(["-n", &n.to_string(), "-r", "100000", "-q"])
        .args(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("redis-benchmark")?;
    if !out.status.success() {
        bail!(
            "redis-benchmark failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(t0.elapsed())
}

/// Stream bytes per SET of `value` bytes with redis-benchmark's keys (≈ value + 44).
pub fn sets_for_mb(mb: u64, value: usize) -> u64 {
    mb * 1_000_000 / (value as u64 + 44)
}

/// A realistic write mix: JSON-like documents, counters, small hashes, a leaderboard.
pub fn write_mix(port: u16, n: u64, seed: u64) -> Result<()> {
    const WORDS: &[&str] = &[
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
        "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra",
        "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "order", "cart",
        "checkout", "shipped", "pending", "refund", "premium", "basic", "mobile", "desktop",
        "berlin", "paris", "tokyo", "lagos", "lima", "sydney", "red", "green", "blue", "small",
        "large",
    ];
    const FIRST: &[&str] = &[
        "anna", "ben", "chloe", "dmitri", "emma", "felix", "grace", "hiro", "ines", "jamal",
        "kofi", "lea",
    ];
    const LAST: &[&str] = &[
        "smith", "mueller", "rossi", "tanaka", "garcia", "okafor", "dubois", "kim", "nowak",
        "silva",
    ];
    const CC: &[&str] = &["DE", "FR", "JP", "NG", "PE", "AU", "US", "BR", "IN", "GB"];
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut c = Client::connect(port)?;
    let batch = 1000;
    let mut i = 0;
    let mut out = Vec::with_capacity(1 << 20);
    while i < n {
        out.clear();
        let end = (i + batch).min(n);
        for _ in i..end {
            let kind = rng.random_range(0..100);
            let args: Vec<String> = if kind < 45 {
                let id = rng.random_range(0..200_000u32);
                let f = FIRST[rng.random_range(0..FIRST.len())];
                let l = LAST[rng.random_range(0..LAST.len())];
                let nt = rng.random_range(1..5);
                let tags: Vec<String> = (0..nt)
                    .map(|_| format!("\"{}\"", WORDS[rng.random_range(0..WORDS.len())]))
                    .collect();
                let nb = rng.random_range(4..20);
                let bio: Vec<&str> = (0..nb)
                    .map(|_| WORDS[rng.random_range(0..WORDS.len())])
                    .collect();
                let doc = format!(
                    "{{\"id\":{id},\"name\":\"{f} {l}\",\"email\":\"{f}.{l}{}@example.com\",\"age\":{},\"country\":\"{}\",\"tags\":[{}],\"score\":{:.2},\"active\":{},\"created\":\"2026-{:02}-{:02}T{:02}:{:02}:{:02}Z\",\"bio\":\"{}\",\"orders\":{}}}",
                    rng.random_range(0..1000),
                    rng.random_range(18..90),
                    CC[rng.random_range(0..CC.len())],
                    tags.join(","),
                    rng.random_range(0.0..1000.0f64),
                    rng.random_bool(0.7),
                    rng.random_range(1..13),
                    rng.random_range(1..29),
                    rng.random_range(0..24),
                    rng.random_range(0..60),
                    rng.random_range(0..60),
                    bio.join(" "),
                    rng.random_range(0..500),
                );
                vec!["SET".into(), format!("user:{id}"), doc]
            } else if kind < 75 {
                let page = rng.random_range(0..5000);
                if rng.random_bool(0.5) {
                    vec![
                        "INCR".into(),
                        format!("views:page:{page}:2026-{:02}", rng.random_range(1..13)),
                    ]
                } else {
                    vec![
                        "INCRBY".into(),
                        format!("stock:sku:{page}"),
                        rng.random_range(-5..20i32).to_string(),
                    ]
                }
            } else if kind < 95 {
                let s = rng.random_range(0..50_000);
                vec![
                    "HSET".into(),
                    format!("session:{s:08x}"),
                    "user".into(),
                    rng.random_range(0..200_000).to_string(),
                    "ip".into(),
                    format!(
                        "10.{}.{}.{}",
                        rng.random_range(0..256),
                        rng.random_range(0..256),
                        rng.random_range(0..256)
                    ),
                    "ua".into(),
                    [
                        "Mozilla/5.0 (X11; Linux x86_64)",
                        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)",
                        "curl/8.5.0",
                    ][rng.random_range(0..3)]
                    .into(),
                    "last_seen".into(),
                    (1_790_000_000u64 + rng.random_range(0..10_000_000)).to_string(),
                ]
            } else {
                vec![
                    "ZADD".into(),
                    "leaderboard".into(),
                    rng.random_range(0..1_000_000).to_string(),
                    format!("player:{}", rng.random_range(0..100_000)),
                ]
            };
            let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
            out.extend_from_slice(&resp::command(&a));
        }
        c.pipeline(&out, (end - i) as usize)?;
        i = end;
    }
    Ok(())
}

/// `keys` SETs with 100 random bytes each (the full-sync dataset), pipelined.
pub fn write_random_keys(port: u16, keys: u64) -> Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut c = Client::connect(port)?;
    let mut out = Vec::with_capacity(1 << 20);
    let mut val = [0u8; 100];
    let mut i = 0;
    while i < keys {
        out.clear();
        let end = (i + 2000).min(keys);
        for k in i..end {
            rng.fill_bytes(&mut val);
            let key = format!("key:{k:010}");
            out.extend_from_slice(&resp::command(&[b"SET", key.as_bytes(), &val]));
        }
        c.pipeline(&out, (end - i) as usize)?;
        i = end;
    }
    Ok(())
}
