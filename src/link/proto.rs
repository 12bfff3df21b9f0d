//! The agent link's wire constants, in one place: ALPN, protocol version, frame bound, close
//! codes, the snapshot-only Hello suffix and lane names. `serve` and `upstream` both take them
//! from here, never from each other.

/// Version of the frame protocol, carried in [`super::Frame::Hello`].
pub const PROTOCOL_VERSION: u16 = 1;
/// TLS ALPN protocol name; it changes whenever the wire format changes incompatibly.
pub const ALPN: &[u8] = b"georelay/1";
/// The second protocol: the same frames, and a downstream may add the received offset to
/// its Acks. Both ends offer [`ALPNS`]; the server picks the first it shares with the client,
/// so a new pair speaks 2 and an agent of the first version still gets 1.
pub const ALPN_V2: &[u8] = b"georelay/2";
/// The third protocol: the second's frames, and the upstream may send
/// [`super::Frame::Commit`] (fsync now and Ack) when its master asks for an ACK.
pub const ALPN_V3: &[u8] = b"georelay/3";
/// Every ALPN this agent speaks, most preferred first.
pub const ALPNS: [&[u8]; 3] = [ALPN_V3, ALPN_V2, ALPN];

/// True when `alpn` (as negotiated) lets a downstream send the received offset in Acks.
pub fn acks_received(alpn: Option<&[u8]>) -> bool {
    alpn == Some(ALPN_V2) || alpn == Some(ALPN_V3)
}

/// True when `alpn` (as negotiated) lets the upstream send [`super::Frame::Commit`].
pub fn commit_requests(alpn: Option<&[u8]>) -> bool {
    alpn == Some(ALPN_V3)
}
/// Default bound on one frame's body length (8 MiB).
pub const MAX_FRAME: usize = 8 << 20;

/// The suffix of a Hello name that asks only for the upstream's newest snapshot (a snapshot
/// refresh): the upstream sends `Full`, the chunks and `SnapshotEnd`, then waits for the close.
pub const SNAPSHOT_ONLY: &str = "/snapshot";

/// Longest lane name accepted in Hello.
pub const MAX_LANE_NAME: usize = 64;

/// Application close codes: of a QUIC connection (`conn.close`) and the `code` of an
/// [`super::Frame::Error`] sent before a stream ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseCode {
    /// The work is done (e.g. a snapshot refresh received its snapshot).
    Done,
    /// Malformed or out-of-place frames, or an unsupported protocol version.
    Protocol,
    /// The agent is shutting down (or the peer finished the link cleanly).
    Shutdown,
    /// Refused by a limit (`serve.max_agents`).
    Refused,
    /// Hello named a lane this agent does not serve.
    UnknownLane,
}

impl CloseCode {
    pub const fn as_u32(self) -> u32 {
        match self {
            CloseCode::Done => 0,
            CloseCode::Protocol => 1,
            CloseCode::Shutdown => 2,
            CloseCode::Refused => 3,
            CloseCode::UnknownLane => 4,
        }
    }

    /// The code for a number read off the wire (`None`: not one of ours).
    pub fn from_u32(code: u32) -> Option<CloseCode> {
        [
            CloseCode::Done,
            CloseCode::Protocol,
            CloseCode::Shutdown,
            CloseCode::Refused,
            CloseCode::UnknownLane,
        ]
        .into_iter()
        .find(|c| c.as_u32() == code)
    }

    /// As a QUIC application error code.
    pub fn varint(self) -> quinn::VarInt {
        quinn::VarInt::from_u32(self.as_u32())
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CloseCode::Done => "done",
            CloseCode::Protocol => "protocol error",
            CloseCode::Shutdown => "shutting down",
            CloseCode::Refused => "refused",
            CloseCode::UnknownLane => "unknown lane",
        })
    }
}

/// True when a Hello `name` asks only for the newest snapshot.
pub fn is_snapshot_only(name: &str) -> bool {
    name.ends_with(SNAPSHOT_ONLY)
}

/// A lane name as Hello may carry it: 1 to [`MAX_LANE_NAME`] characters of `A-Z a-z 0-9 . _ - :`.
pub fn is_lane_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LANE_NAME
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_round_trip_and_keep_their_numbers() {
        for (code, n) in [
            (CloseCode::Done, 0),
            (CloseCode::Protocol, 1),
            (CloseCode::Shutdown, 2),
            (CloseCode::Refused, 3),
            (CloseCode::UnknownLane, 4),
        ] {
            assert_eq!(code.as_u32(), n);
            assert_eq!(CloseCode::from_u32(n), Some(code));
        }
        assert_eq!(CloseCode::from_u32(99), None);
    }

    #[test]
    fn lane_names() {
        assert!(is_lane_name("shard-0"));
        assert!(is_lane_name(&"a".repeat(40)));
        assert!(!is_lane_name(""));
        assert!(!is_lane_name("a/b"));
        assert!(!is_lane_name(&"a".repeat(65)));
        assert!(is_snapshot_only("b/snapshot"));
        assert!(!is_snapshot_only("b"));
    }
}
