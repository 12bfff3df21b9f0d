//! Read blocks a reader reuses: a `pread` lands in memory that earlier reads already faulted
//! in, instead of fresh pages the kernel must zero first.

use bytes::{Bytes, BytesMut};

/// Blocks kept per reader: enough to cover the chunks quinn still holds unacknowledged
/// (a stream window's worth of 1 MiB chunks) so that one of them is free again by the time it
/// is needed. Memory: at most this many blocks stay allocated while the reader lives.
const KEPT: usize = 12;

/// A reader's blocks. Each kept `BytesMut` is empty and shares its allocation with the
/// `Bytes` handed out from it; once those are all dropped, the allocation is reused.
#[derive(Default)]
pub(crate) struct Blocks {
    kept: Vec<BytesMut>,
}

impl Blocks {
    /// Up to `len` bytes of `file` at `pos` (fewer if the file ends first), read into a reused
    /// block when one is free, else into a new one of at least `cap` bytes.
    pub(crate) fn read(
        &mut self,
        file: &std::fs::File,
        len: usize,
        cap: usize,
        pos: u64,
    ) -> std::io::Result<Bytes> {
        let i = self.kept.iter_mut().position(|b| b.try_reclaim(len));
        let mut block = match i {
            Some(i) => self.kept.swap_remove(i),
            None => BytesMut::with_capacity(len.max(cap)),
        };
        let read = super::segment::read_into_spare(file, &mut block, len, pos);
        let data = block.split().freeze();
        if self.kept.len() < KEPT {
            self.kept.push(block);
        }
        read.map(|()| data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_block_is_reused_once_its_bytes_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&(0..=255u8).cycle().take(10_000).collect::<Vec<_>>())
            .unwrap();
        let f = std::fs::File::open(&path).unwrap();
        let mut blocks = Blocks::default();
        let a = blocks.read(&f, 4096, 4096, 100).unwrap();
        assert_eq!(a.len(), 4096);
        assert_eq!(a[0], 100);
        let a_ptr = a.as_ptr();
        // Still held: the next read gets another block.
        let b = blocks.read(&f, 4096, 4096, 0).unwrap();
        assert_ne!(b.as_ptr(), a_ptr);
        assert_eq!(b[5], 5);
        drop(a);
        let c = blocks.read(&f, 4096, 4096, 9_000).unwrap();
        assert_eq!(c.as_ptr(), a_ptr, "the freed block is reused");
        // Short at the end of the file; the contents are the file's, not the old block's.
        assert_eq!(c.len(), 1000);
        assert_eq!(c[0], (9_000 % 256) as u8);
        assert_eq!(
            &b[..],
            &(0..=255u8).cycle().take(4096).collect::<Vec<_>>()[..]
        );
    }
}
