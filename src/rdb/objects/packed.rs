//! The packed blobs inside RDB objects: listpack (`listpack.c`), ziplist (`ziplist.c`) and
//! intset (`intset.c`). Elements come out as bytes; integers as their decimal text.

/// Decodes a listpack: `<total u32 LE><count u16 LE> entries… 0xFF`.
pub(crate) fn listpack(blob: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let header = blob.get(..6).ok_or("listpack shorter than its header")?;
    let total = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if total != blob.len() {
        return Err(format!(
            "listpack header says {total} bytes, blob has {}",
            blob.len()
        ));
    }
    let mut out = Vec::new();
    let mut p = 6;
    loop {
        let b = *blob.get(p).ok_or("listpack without end byte")?;
        if b == 0xff {
            if p + 1 != blob.len() {
                return Err("bytes after the listpack end byte".into());
            }
            return Ok(out);
        }
        let (elem, size) = lp_entry(&blob[p..])?;
        out.push(elem);
        let backlen = match size {
            0..=127 => 1,
            128..=16382 => 2,
            16383..=2097150 => 3,
            2097151..=268435454 => 4,
            _ => 5,
        };
        p = p
            .checked_add(size + backlen)
            .filter(|&e| e <= blob.len())
            .ok_or("listpack entry runs past the end")?;
    }
}

/// One listpack entry: its element and the size of encoding + data (without the backlen).
fn lp_entry(e: &[u8]) -> Result<(Vec<u8>, usize), String> {
    let get = |range: std::ops::Range<usize>| {
        e.get(range)
            .ok_or_else(|| "listpack entry runs past the end".to_string())
    };
    let b = e[0];
    let int = |v: i64, size| Ok((v.to_string().into_bytes(), size));
    if b & 0x80 == 0 {
        return int(i64::from(b & 0x7f), 1);
    }
    if b & 0xc0 == 0x80 {
        let n = usize::from(b & 0x3f);
        return Ok((get(1..1 + n)?.to_vec(), 1 + n));
    }
    if b & 0xe0 == 0xc0 {
        let v = (i64::from(b & 0x1f) << 8) | i64::from(get(1..2)?[0]);
        return int(if v >= 1 << 12 { v - (1 << 13) } else { v }, 2);
    }
    if b & 0xf0 == 0xe0 {
        let n = (usize::from(b & 0x0f) << 8) | usize::from(get(1..2)?[0]);
        return Ok((get(2..2 + n)?.to_vec(), 2 + n));
    }
    let le = |n: usize| Ok::<_, String>(le_signed(get(1..1 + n)?));
    match b {
        0xf0 => {
            let n = le(4)? as u32 as usize;
            Ok((get(5..5usize.saturating_add(n))?.to_vec(), 5 + n))
        }
        0xf1 => int(le(2)?, 3),
        0xf2 => int(le(3)?, 4),
        0xf3 => int(le(4)?, 5),
        0xf4 => int(le(8)?, 9),
        _ => Err(format!("invalid listpack encoding byte 0x{b:02x}")),
    }
}

/// A little-endian two's-complement integer of 1 to 8 bytes.
fn le_signed(bytes: &[u8]) -> i64 {
    let mut v: u64 = 0;
    for (i, &x) in bytes.iter().enumerate() {
        v |= u64::from(x) << (8 * i);
    }
    let shift = 64 - 8 * bytes.len().clamp(1, 8) as u32;
    ((v << shift) as i64) >> shift
}

/// Decodes a ziplist: `<zlbytes u32><zltail u32><zllen u16> entries… 0xFF`.
pub(crate) fn ziplist(blob: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let header = blob.get(..10).ok_or("ziplist shorter than its header")?;
    let total = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if total != blob.len() {
        return Err(format!(
            "ziplist header says {total} bytes, blob has {}",
            blob.len()
        ));
    }
    let past = || "ziplist entry runs past the end".to_string();
    let mut out = Vec::new();
    let mut p = 10;
    loop {
        let first = *blob.get(p).ok_or("ziplist without end byte")?;
        if first == 0xff {
            if p + 1 != blob.len() {
                return Err("bytes after the ziplist end byte".into());
            }
            return Ok(out);
        }
        // prevlen: one byte below 254, else 0xFE and a 4-byte length.
        p += if first == 0xfe { 5 } else { 1 };
        let b = *blob.get(p).ok_or_else(past)?;
        let get = |from: usize, n: usize| {
            from.checked_add(n)
                .and_then(|end| blob.get(from..end))
                .ok_or_else(past)
        };
        let le_int = |from: usize, n: usize| Ok::<_, String>(le_signed(get(from, n)?));
        let (elem, next) = match b >> 6 {
            0 => {
                let n = usize::from(b & 0x3f);
                (get(p + 1, n)?.to_vec(), p + 1 + n)
            }
            1 => {
                let n = (usize::from(b & 0x3f) << 8) | usize::from(get(p + 1, 1)?[0]);
                (get(p + 2, n)?.to_vec(), p + 2 + n)
            }
            2 => {
                if b != 0x80 {
                    return Err(format!("invalid ziplist encoding byte 0x{b:02x}"));
                }
                let l = get(p + 1, 4)?;
                let n = u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize;
                (get(p + 5, n)?.to_vec(), p + 5 + n)
            }
            _ => {
                let (v, size) = match b {
                    0xc0 => (le_int(p + 1, 2)?, 2),
                    0xd0 => (le_int(p + 1, 4)?, 4),
                    0xe0 => (le_int(p + 1, 8)?, 8),
                    0xf0 => (le_int(p + 1, 3)?, 3),
                    0xfe => (le_int(p + 1, 1)?, 1),
                    0xf1..=0xfd => (i64::from(b & 0x0f) - 1, 0),
                    _ => return Err(format!("invalid ziplist encoding byte 0x{b:02x}")),
                };
                (v.to_string().into_bytes(), p + 1 + size)
            }
        };
        out.push(elem);
        p = next;
    }
}

/// Decodes an intset: `<encoding u32: 2|4|8><length u32><integers LE>`.
pub(crate) fn intset(blob: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let header = blob.get(..8).ok_or("intset shorter than its header")?;
    let width = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if !matches!(width, 2 | 4 | 8) {
        return Err(format!("invalid intset encoding {width}"));
    }
    if len.checked_mul(width).and_then(|n| n.checked_add(8)) != Some(blob.len()) {
        return Err(format!(
            "intset of {len} × {width} bytes does not fit its {} bytes",
            blob.len()
        ));
    }
    Ok(blob[8..]
        .chunks_exact(width)
        .map(|c| {
            let v = match width {
                2 => i64::from(i16::from_le_bytes([c[0], c[1]])),
                4 => i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                _ => i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
            };
            v.to_string().into_bytes()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lp(entries: &[&[u8]]) -> Vec<u8> {
        let mut body = Vec::new();
        for e in entries {
            body.extend_from_slice(e);
        }
        let total = 6 + body.len() + 1;
        let mut v = (total as u32).to_le_bytes().to_vec();
        v.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        v.extend_from_slice(&body);
        v.push(0xff);
        v
    }

    #[test]
    fn listpack_every_encoding() {
        let blob = lp(&[
            b"\x05\x01",             // uint7 5
            b"\x83abc\x04",          // str6 "abc"
            b"\xdf\xff\x02",         // int13 -1
            b"\xc0\x10\x02",         // int13 16
            b"\xe0\x02hi\x04",       // str12 "hi"
            b"\xf1\x00\x80\x03",     // int16 -32768
            b"\xf2\xff\xff\x7f\x04", // int24 8388607
            b"\xf3\xff\xff\xff\xff\x05",
            b"\xf4\x00\x00\x00\x00\x00\x00\x00\x80\x09",
            b"\xf0\x01\x00\x00\x00z\x06",
        ]);
        let got = listpack(&blob).unwrap();
        let want: Vec<&[u8]> = vec![
            b"5",
            b"abc",
            b"-1",
            b"16",
            b"hi",
            b"-32768",
            b"8388607",
            b"-1",
            b"-9223372036854775808",
            b"z",
        ];
        assert_eq!(got, want);
        assert!(listpack(&blob[..blob.len() - 1]).is_err());
        let mut bad = blob.clone();
        bad[6] = 0xf5;
        assert!(listpack(&bad).unwrap_err().contains("0xf5"));
    }

    #[test]
    fn ziplist_every_encoding() {
        let entries: &[&[u8]] = &[
            b"\x00\x03abc",
            b"\x05\x40\x02hi",
            b"\x04\xc0\x39\x30",
            b"\x04\xd0\xff\xff\xff\xff",
            b"\x06\xf0\x00\x00\x80",
            b"\x05\xfe\x80",
            b"\x03\xf1",
            b"\x02\xfd",
            b"\x02\xe0\x01\0\0\0\0\0\0\0",
        ];
        let body: Vec<u8> = entries.concat();
        let total = 10 + body.len() + 1;
        let mut v = (total as u32).to_le_bytes().to_vec();
        v.extend_from_slice(&[0, 0, 0, 0]);
        v.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        v.extend_from_slice(&body);
        v.push(0xff);
        let want: Vec<&[u8]> = vec![
            b"abc",
            b"hi",
            b"12345",
            b"-1",
            b"-8388608",
            b"-128",
            b"0",
            b"12",
            b"1",
        ];
        assert_eq!(ziplist(&v).unwrap(), want);
        assert!(ziplist(&v[..v.len() - 3]).is_err());
    }

    #[test]
    fn intset_widths() {
        let mut v = 4u32.to_le_bytes().to_vec();
        v.extend_from_slice(&2u32.to_le_bytes());
        v.extend_from_slice(&(-5i32).to_le_bytes());
        v.extend_from_slice(&70000i32.to_le_bytes());
        assert_eq!(intset(&v).unwrap(), vec![b"-5".to_vec(), b"70000".to_vec()]);
        assert!(intset(&v[..v.len() - 1]).is_err());
        v[0] = 3;
        assert!(intset(&v).is_err());
    }
}
