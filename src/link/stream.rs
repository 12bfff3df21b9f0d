//! Frames over a byte stream: a buffered reader for any `AsyncRead`, a zero-copy writer for QUIC send streams.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::frame::{decode, encode_head, Frame};
use super::LinkError;

/// Smallest read attempted at once; frames are batched on the wire, so read in large chunks.
const READ_CHUNK: usize = 64 << 10;

/// Reads frames from a byte stream (a `quinn::RecvStream`, or anything `AsyncRead`).
/// Memory is bounded by `max_body` plus one read chunk.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    max_body: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader refusing frame bodies longer than `max_body` (see [`super::MAX_FRAME`]).
    pub fn new(inner: R, max_body: usize) -> Self {
        FrameReader {
            inner,
            buf: BytesMut::with_capacity(READ_CHUNK),
            max_body,
        }
    }

    /// The next frame; `Ok(None)` when the peer finished the stream cleanly between frames.
    /// Cancel-safe: a partly read frame stays buffered.
    pub async fn next(&mut self) -> Result<Option<Frame>, LinkError> {
        loop {
            if let Some(frame) = decode(&mut self.buf, self.max_body)? {
                return Ok(Some(frame));
            }
            // `decode` reserved room for the rest of a started frame: read exactly into that,
            // so a large frame is never moved to a bigger buffer while it arrives.
            if self.buf.capacity() == self.buf.len() {
                self.buf.reserve(READ_CHUNK);
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(LinkError::UnexpectedEof(self.buf.len()))
                };
            }
        }
    }

    /// The underlying stream (buffered bytes are dropped).
    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Writes frames to a QUIC send stream; payloads go out as the `Bytes` they are, uncopied,
/// and the heads of consecutive small frames are coalesced.
#[derive(Debug)]
pub struct FrameWriter {
    send: quinn::SendStream,
    head: BytesMut,
    chunks: Vec<Bytes>,
}

impl FrameWriter {
    pub fn new(send: quinn::SendStream) -> Self {
        FrameWriter {
            send,
            head: BytesMut::with_capacity(4096),
            chunks: Vec::new(),
        }
    }

    /// Sends one frame (returns once quinn has taken it under flow control).
    pub async fn send(&mut self, frame: &Frame) -> Result<(), LinkError> {
        self.send_all(std::slice::from_ref(frame)).await
    }

    /// Sends a batch of frames in one write.
    pub async fn send_all(&mut self, frames: &[Frame]) -> Result<(), LinkError> {
        self.chunks.clear();
        for frame in frames {
            if let Some(payload) = encode_head(frame, &mut self.head) {
                self.chunks.push(self.head.split().freeze());
                if !payload.is_empty() {
                    self.chunks.push(payload);
                }
            }
        }
        if !self.head.is_empty() {
            self.chunks.push(self.head.split().freeze());
        }
        let result = self.send.write_all_chunks(&mut self.chunks).await;
        self.chunks.clear();
        Ok(result?)
    }

    /// Ends the stream cleanly after what was sent (the reader then sees `Ok(None)`).
    pub fn finish(&mut self) -> Result<(), LinkError> {
        Ok(self.send.finish()?)
    }

    /// The underlying QUIC stream (e.g. for `stopped()` or `set_priority`).
    pub fn get_mut(&mut self) -> &mut quinn::SendStream {
        &mut self.send
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::frame::encode;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn reader_reassembles_split_frames_and_sees_clean_end() {
        let frames = vec![
            Frame::ack(7),
            Frame::log(8, 9, Bytes::from(vec![b'x'; 200_000])),
            Frame::SnapshotEnd,
        ];
        let mut wire = BytesMut::new();
        for f in &frames {
            encode(f, &mut wire);
        }
        let (mut a, b) = tokio::io::duplex(1000);
        let writer = tokio::spawn(async move {
            for piece in wire.chunks(777) {
                a.write_all(piece).await?;
            }
            a.shutdown().await
        });
        let mut reader = FrameReader::new(b, 1 << 20);
        let mut got = Vec::new();
        while let Some(f) = reader.next().await.unwrap() {
            got.push(f);
        }
        assert_eq!(got, frames);
        writer.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn eof_inside_a_frame_is_an_error() {
        let mut wire = BytesMut::new();
        encode(&Frame::ack(1), &mut wire);
        let (mut a, b) = tokio::io::duplex(100);
        a.write_all(&wire[..5]).await.unwrap();
        drop(a);
        let mut reader = FrameReader::new(b, 100);
        assert!(matches!(
            reader.next().await,
            Err(LinkError::UnexpectedEof(5))
        ));
    }

    #[test]
    fn read_errors_keep_their_cause() {
        let inner = std::io::Error::other("timed out");
        let outer = std::io::Error::new(std::io::ErrorKind::ConnectionReset, Wrapper(inner));
        let text = LinkError::Read(outer).to_string();
        assert_eq!(text, "stream read: connection lost: timed out");
    }

    #[derive(Debug)]
    struct Wrapper(std::io::Error);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connection lost")
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[tokio::test]
    async fn oversize_header_is_refused() {
        let (mut a, b) = tokio::io::duplex(100);
        a.write_all(&1_000_000u32.to_le_bytes()).await.unwrap();
        let mut reader = FrameReader::new(b, 1000);
        let err = reader.next().await.unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{err}");
    }
}
