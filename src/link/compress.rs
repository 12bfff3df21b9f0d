//! zstd compression of log payloads, with output bounded by the frame's declared raw length.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

use super::frame::Frame;
use super::FrameError;

/// Payload compression on a link (a link option). The default is the config's
/// (`link.compression`, see [`crate::config::LinkSettings`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Payloads travel as they are.
    None,
    /// Each log frame's payload is one zstd frame.
    Zstd,
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Zstd => "zstd",
        })
    }
}

impl FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "off" => Ok(Compression::None),
            "zstd" => Ok(Compression::Zstd),
            other => Err(format!("unknown compression {other:?} (none, zstd)")),
        }
    }
}

/// Compresses `data` into one zstd frame at `level` (1..=22; 0 means zstd's default, 3).
pub fn compress(data: &[u8], level: i32) -> Result<Bytes, FrameError> {
    zstd::bulk::compress(data, level)
        .map(Bytes::from)
        .map_err(|e| FrameError::Compress(e.to_string()))
}

/// Inflates `data`, which must decode to exactly `raw_len` bytes; `raw_len` above `max` is
/// refused before any work. Output never exceeds `raw_len` bytes, so a zstd bomb or a lying
/// header is an error, not an allocation.
pub fn decompress(data: &[u8], raw_len: usize, max: usize) -> Result<Bytes, FrameError> {
    if raw_len > max {
        return Err(FrameError::RawTooLarge { raw_len, max });
    }
    let out =
        zstd::bulk::decompress(data, raw_len).map_err(|e| FrameError::Decompress(e.to_string()))?;
    if out.len() != raw_len {
        return Err(FrameError::RawMismatch {
            expected: raw_len,
            got: out.len(),
        });
    }
    Ok(Bytes::from(out))
}

/// Builds a [`Frame::Log`] for stream bytes starting at `offset`. With [`Compression::Zstd`] the
/// payload is compressed, unless that does not make it smaller.
pub fn log_frame(
    offset: u64,
    timestamp_us: u64,
    data: Bytes,
    compression: Compression,
    level: i32,
) -> Result<Frame, FrameError> {
    let raw_len = u32::try_from(data.len()).map_err(|_| FrameError::RawTooLarge {
        raw_len: data.len(),
        max: u32::MAX as usize,
    })?;
    if compression == Compression::Zstd {
        let z = compress(&data, level)?;
        if z.len() < data.len() {
            return Ok(Frame::Log {
                offset,
                timestamp_us,
                compressed: true,
                raw_len,
                data: z,
            });
        }
    }
    Ok(Frame::log(offset, timestamp_us, data))
}

/// The stream bytes a [`Frame::Log`] carries: `data` itself, or `data` inflated to exactly
/// `raw_len` bytes (at most `max`).
pub fn log_payload(
    compressed: bool,
    raw_len: u32,
    data: &Bytes,
    max: usize,
) -> Result<Bytes, FrameError> {
    if compressed {
        decompress(data, raw_len as usize, max)
    } else {
        Ok(data.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<u8> {
        b"*3\r\n$3\r\nSET\r\n$5\r\nkey:1\r\n$5\r\nvalue\r\n"
            .iter()
            .copied()
            .cycle()
            .take(n)
            .collect()
    }

    #[test]
    fn round_trip_and_smaller() {
        let data = sample(100_000);
        let z = compress(&data, 3).unwrap();
        assert!(z.len() < data.len() / 10, "compressed to {}", z.len());
        let back = decompress(&z, data.len(), 1 << 20).unwrap();
        assert_eq!(&back[..], &data[..]);
    }

    #[test]
    fn empty_round_trip() {
        let z = compress(b"", 1).unwrap();
        assert_eq!(decompress(&z, 0, 10).unwrap().len(), 0);
    }

    #[test]
    fn bomb_is_bounded() {
        // 64 MiB of zeros compresses to a few KiB; claiming a small raw_len must fail, not inflate.
        let zeros = vec![0u8; 64 << 20];
        let z = compress(&zeros, 1).unwrap();
        assert!(z.len() < 64 << 10);
        assert!(decompress(&z, 1024, 8 << 20).is_err());
    }

    #[test]
    fn raw_len_above_max_refused() {
        let z = compress(b"abc", 1).unwrap();
        assert!(matches!(
            decompress(&z, 100, 10),
            Err(FrameError::RawTooLarge {
                raw_len: 100,
                max: 10
            })
        ));
    }

    #[test]
    fn short_output_is_mismatch() {
        let z = compress(b"abcdef", 1).unwrap();
        assert!(matches!(
            decompress(&z, 10, 100),
            Err(FrameError::RawMismatch {
                expected: 10,
                got: 6
            })
        ));
    }

    #[test]
    fn garbage_is_error() {
        assert!(matches!(
            decompress(b"definitely not zstd", 10, 100),
            Err(FrameError::Decompress(_))
        ));
        let z = compress(&sample(1000), 1).unwrap();
        assert!(decompress(&z[..z.len() / 2], 1000, 2000).is_err());
    }

    #[test]
    fn log_frames_compress_only_when_smaller() {
        let data = Bytes::from(sample(10_000));
        let f = log_frame(5, 6, data.clone(), Compression::Zstd, 3).unwrap();
        let Frame::Log {
            compressed: true,
            raw_len,
            data: z,
            ..
        } = &f
        else {
            panic!("expected a compressed log frame, got {f:?}")
        };
        assert_eq!(log_payload(true, *raw_len, z, 1 << 20).unwrap(), data);
        let tiny = Bytes::from_static(b"x");
        let f = log_frame(5, 6, tiny.clone(), Compression::Zstd, 3).unwrap();
        assert_eq!(f, Frame::log(5, 6, tiny.clone()));
        let f = log_frame(5, 6, data.clone(), Compression::None, 3).unwrap();
        assert_eq!(f, Frame::log(5, 6, data));
        assert_eq!(log_payload(false, 1, &tiny, 0).unwrap(), tiny);
    }

    #[test]
    fn parse_names() {
        assert_eq!("zstd".parse::<Compression>(), Ok(Compression::Zstd));
        assert_eq!("None".parse::<Compression>(), Ok(Compression::None));
        assert!("lz4".parse::<Compression>().is_err());
        assert_eq!(Compression::Zstd.to_string(), "zstd");
    }
}
