//! One applied batch as one target transaction (pure): `MULTI`, the batch's commands, `SET`
//! of the checkpoint, `EXEC`, encoded for a pipelined write; and the verdict on the replies.
//! The checkpoint moves if and only if the commands were applied.

use bytes::{Bytes, BytesMut};

use crate::resp::{encode, Frame};

/// Why the target refused a batch; nothing of it was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The target cannot take writes now (read-only, OOM, loading, auth, busy…): pause and
    /// retry the same batch. `reason` is the metric label.
    Pause {
        reason: &'static str,
        message: String,
    },
    /// The target does not know (or accept the syntax of) command `index` of the batch.
    Unknown { index: usize, message: String },
    /// Cluster redirections (`MOVED`/`ASK` on command `index`).
    Redirect { index: usize, message: String },
}

/// The replies' verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Applied, checkpoint included; `errors` are runtime errors of single commands
    /// (index, message) that the target reported inside EXEC.
    Applied {
        errors: Vec<(usize, String)>,
    },
    Refused(Refusal),
}

/// The bytes of `MULTI` … `EXEC` around `commands` (sent after `MULTI` was answered OK).
pub fn encode_body(commands: &[Vec<Bytes>], out: &mut BytesMut) {
    for c in commands {
        encode(
            &Frame::Array(c.iter().cloned().map(Frame::Bulk).collect()),
            out,
        );
    }
    encode(
        &Frame::Array(vec![Frame::Bulk(Bytes::from_static(b"EXEC"))]),
        out,
    );
}

/// Sorts an error reply: pause-and-retry, redirect, or a command the target refuses.
pub fn classify(index: usize, message: &str) -> Refusal {
    let code = message.split(' ').next().unwrap_or("");
    let pause = |reason| Refusal::Pause {
        reason,
        message: message.to_string(),
    };
    match code {
        "READONLY" => pause("readonly"),
        "OOM" => pause("oom"),
        "LOADING" => pause("loading"),
        "NOAUTH" | "WRONGPASS" | "NOPERM" => pause("auth"),
        "BUSY" | "MASTERDOWN" | "CLUSTERDOWN" | "TRYAGAIN" | "MISCONF" | "NOREPLICAS" => {
            pause("busy")
        }
        "MOVED" | "ASK" => Refusal::Redirect {
            index,
            message: message.to_string(),
        },
        _ => Refusal::Unknown {
            index,
            message: message.to_string(),
        },
    }
}

/// Judges the replies to the body: one per command (`+QUEUED` or an error), then EXEC's.
pub fn judge(replies: &[Frame], commands: usize) -> Verdict {
    for (i, r) in replies.iter().take(commands).enumerate() {
        if let Frame::Error(e) = r {
            return Verdict::Refused(classify(i, e));
        }
    }
    match replies.get(commands) {
        Some(Frame::Array(results)) if results.len() == commands => Verdict::Applied {
            errors: results
                .iter()
                .enumerate()
                .filter_map(|(i, r)| match r {
                    Frame::Error(e) => Some((i, e.clone())),
                    _ => None,
                })
                .collect(),
        },
        Some(Frame::Error(e)) => Verdict::Refused(classify(commands, e)),
        other => Verdict::Refused(Refusal::Pause {
            reason: "protocol",
            message: format!("unexpected EXEC reply {other:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(n: usize) -> Vec<Frame> {
        vec![Frame::Simple("QUEUED".into()); n]
    }

    #[test]
    fn applied_with_runtime_errors_named() {
        let mut r = queued(3);
        r.push(Frame::Array(vec![
            Frame::Integer(1),
            Frame::Error(
                "WRONGTYPE Operation against a key holding the wrong kind of value".into(),
            ),
            Frame::Simple("OK".into()),
        ]));
        let Verdict::Applied { errors } = judge(&r, 3) else {
            panic!()
        };
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, 1);
    }

    #[test]
    fn a_refused_command_aborts_the_whole_batch() {
        let mut r = queued(3);
        r[1] = Frame::Error("ERR unknown command 'FOO', with args beginning with: ".into());
        r.push(Frame::Error(
            "EXECABORT Transaction discarded because of previous errors.".into(),
        ));
        assert!(matches!(
            judge(&r, 3),
            Verdict::Refused(Refusal::Unknown { index: 1, .. })
        ));
        let mut r = queued(2);
        r[0] = Frame::Error("READONLY You can't write against a read only replica.".into());
        r.push(Frame::Error("EXECABORT".into()));
        assert!(matches!(
            judge(&r, 2),
            Verdict::Refused(Refusal::Pause {
                reason: "readonly",
                ..
            })
        ));
        let mut r = queued(2);
        r[1] = Frame::Error("OOM command not allowed when used memory > 'maxmemory'.".into());
        assert!(matches!(
            judge(&r, 2),
            Verdict::Refused(Refusal::Pause { reason: "oom", .. })
        ));
        let mut r = queued(1);
        r[0] = Frame::Error("MOVED 3999 127.0.0.1:7001".into());
        assert!(matches!(
            judge(&r, 1),
            Verdict::Refused(Refusal::Redirect { index: 0, .. })
        ));
    }

    #[test]
    fn a_short_or_odd_exec_reply_never_counts_as_applied() {
        assert!(matches!(
            judge(&queued(2), 2),
            Verdict::Refused(Refusal::Pause {
                reason: "protocol",
                ..
            })
        ));
        let mut r = queued(2);
        r.push(Frame::NullArray);
        assert!(matches!(judge(&r, 2), Verdict::Refused(_)));
        let mut r = queued(2);
        r.push(Frame::Array(vec![Frame::Integer(1)]));
        assert!(matches!(judge(&r, 2), Verdict::Refused(_)));
    }

    #[test]
    fn the_body_ends_with_exec() {
        let mut out = BytesMut::new();
        encode_body(
            &[vec![Bytes::from_static(b"INCR"), Bytes::from_static(b"a")]],
            &mut out,
        );
        assert_eq!(
            &out[..],
            b"*2\r\n$4\r\nINCR\r\n$1\r\na\r\n*1\r\n$4\r\nEXEC\r\n"
        );
    }
}
