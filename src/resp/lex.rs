//! Low-level RESP lexing helpers: bounded line search and strict integer parsing.

use super::RespError;

/// Longest `$`/`*`/`:` number line we accept (sign + 19 digits fits in 20).
pub(crate) const MAX_NUMBER_LINE: usize = 20;

/// Finds the line that starts at `start` and ends in `\r\n`.
///
/// Returns `Ok(Some(end))` where `buf[start..end]` is the line content (without the CRLF), so the
/// next byte after the line is `end + 2`. Returns `Ok(None)` if no newline is present yet and at
/// most `max` content bytes are buffered. `too_long` is returned when more than `max` bytes arrive
/// without a valid `\r\n`, and `MissingCrlf` when an earlier newline is not preceded by `\r`.
/// The error does not depend on how the input was split into reads.
pub(crate) fn find_line(
    buf: &[u8],
    start: usize,
    max: usize,
    too_long: RespError,
) -> Result<Option<usize>, RespError> {
    let rest = buf.get(start..).unwrap_or(&[]);
    // Only the first max + 2 bytes can contain an acceptable "\r\n".
    let window = rest.get(..max.saturating_add(2)).unwrap_or(rest);
    match window.iter().position(|&b| b == b'\n') {
        Some(0) => Err(RespError::MissingCrlf),
        Some(i) => {
            if window.get(i - 1) != Some(&b'\r') {
                // A newline right after max + 1 content bytes: the prefix without it already
                // reported `too_long`, so report the same whatever the read boundaries.
                return Err(if i > max {
                    too_long
                } else {
                    RespError::MissingCrlf
                });
            }
            Ok(Some(start + i - 1))
        }
        None if rest.len() > max.saturating_add(1) => Err(too_long),
        // "max content bytes + \r" may be buffered and still be valid.
        None if rest.len() == max.saturating_add(1) && rest.last() != Some(&b'\r') => Err(too_long),
        None => Ok(None),
    }
}

/// Parses a strict decimal `i64`: optional `-`, then 1+ ASCII digits, nothing else.
pub(crate) fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        v = v.checked_mul(10)?;
        v = if neg {
            v.checked_sub(d)?
        } else {
            v.checked_add(d)?
        };
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TL: RespError = RespError::InlineTooLong { max: 4 };

    #[test]
    fn find_line_variants() {
        assert_eq!(find_line(b"ab\r\nx", 0, 4, TL.clone()), Ok(Some(2)));
        assert_eq!(find_line(b"xxab\r\n", 2, 4, TL.clone()), Ok(Some(4)));
        assert_eq!(find_line(b"abcd\r\n", 0, 4, TL.clone()), Ok(Some(4)));
        assert_eq!(find_line(b"abcd\r", 0, 4, TL.clone()), Ok(None));
        assert_eq!(find_line(b"abcde", 0, 4, TL.clone()), Err(TL.clone()));
        assert_eq!(find_line(b"abcde\r\n", 0, 4, TL.clone()), Err(TL.clone()));
        assert_eq!(
            find_line(b"ab\n", 0, 4, TL.clone()),
            Err(RespError::MissingCrlf)
        );
        assert_eq!(
            find_line(b"\n", 0, 4, TL.clone()),
            Err(RespError::MissingCrlf)
        );
        assert_eq!(find_line(b"", 0, 4, TL.clone()), Ok(None));
        assert_eq!(find_line(b"ab", 9, 4, TL.clone()), Ok(None));
    }

    #[test]
    fn error_does_not_depend_on_read_boundaries() {
        // Found by fuzzing (resp_command): a newline right after max + 1 content bytes gave
        // MissingCrlf, while the same bytes read without that newline had already given
        // `too_long`, so the error depended on where the reads split the input.
        assert_eq!(find_line(b"abcde", 0, 4, TL.clone()), Err(TL.clone()));
        assert_eq!(find_line(b"abcde\n", 0, 4, TL.clone()), Err(TL.clone()));
        assert_eq!(
            find_line(b"abcd\n", 0, 4, TL.clone()),
            Err(RespError::MissingCrlf)
        );
        // The fuzzer's input: a `*` count line of 21 bytes ending in a bare LF.
        let mut input = b"*30".to_vec();
        input.extend_from_slice(&[0; 19]);
        input.extend_from_slice(b"\nSYNC\r\n");
        let limits = crate::resp::Limits::default();
        for cut in 1..=input.len() {
            let got = crate::resp::check(&input[..cut], &limits);
            assert!(
                matches!(got, Ok(None) | Err(RespError::InvalidLength)),
                "{cut}: {got:?}"
            );
        }
        assert_eq!(
            crate::resp::check(&input, &limits),
            Err(RespError::InvalidLength)
        );
    }

    #[test]
    fn integers() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        for bad in [&b""[..], b"-", b"+1", b"1a", b" 1", b"--1"] {
            assert_eq!(parse_i64(bad), None, "{bad:?}");
        }
    }
}
