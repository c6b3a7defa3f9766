//! MSB-first bit streams and the XOR value coding that every chunk encoding shares
//! (Prometheus' `bstream.go` and `xorWrite`/`xorRead`).

use super::ChunkError;

/// Marker for "no leading/trailing window yet" (Prometheus uses the same sentinel).
pub(crate) const NO_WINDOW: u8 = 0xff;

/// Appends bits, most significant first, to a byte buffer whose last byte is zero-padded.
#[derive(Debug, Clone)]
pub(crate) struct BitWriter {
    pub(crate) buf: Vec<u8>,
    /// Unused low bits of the last byte (0 = byte aligned).
    pub(crate) free: u32,
}

impl BitWriter {
    /// A writer over `header` bytes (already aligned).
    pub(crate) fn with_header(header: &[u8]) -> Self {
        Self {
            buf: header.to_vec(),
            free: 0,
        }
    }

    /// Writes the low `n ≤ 64` bits of `value`, most significant first.
    #[inline]
    pub(crate) fn write_bits(&mut self, value: u64, mut n: u32) {
        while n > 0 {
            if self.free == 0 {
                if self.buf.len() == self.buf.capacity() {
                    self.grow();
                }
                self.buf.push(0);
                self.free = 8;
            }
            let take = n.min(self.free);
            let part = ((value >> (n - take)) & ((1u64 << take) - 1)) as u8;
            if let Some(last) = self.buf.last_mut() {
                *last |= part << (self.free - take);
            }
            self.free -= take;
            n -= take;
        }
    }

    /// Grows to the next size class of the receiver's allocator (jemalloc) rather than doubling:
    /// a head keeps one open chunk per series, most of them a few hundred bytes, and doubling (or
    /// even skipping one class) leaves tens of those bytes unused per series; a realloc every
    /// class costs a few nanoseconds per sample.
    #[cold]
    fn grow(&mut self) {
        let len = self.buf.len();
        self.buf.reserve_exact(size_class(len + 1) - len);
    }

    /// Go's `binary.PutUvarint`, bit-aligned wherever the stream stands.
    pub(crate) fn write_uvarint(&mut self, mut x: u64) {
        while x >= 0x80 {
            self.write_bits((x as u8 | 0x80).into(), 8);
            x >>= 7;
        }
        self.write_bits(x, 8);
    }

    /// Bits written so far.
    #[cfg(test)]
    pub(crate) fn bit_len(&self) -> usize {
        self.buf.len() * 8 - self.free as usize
    }
}

/// The smallest jemalloc size class holding `n` bytes: multiples of 16 up to 128, then four
/// classes per doubling (160, 192, 224, 256, 320, ...).
fn size_class(n: usize) -> usize {
    if n <= 128 {
        return n.next_multiple_of(16);
    }
    let step = 1 << ((n - 1).ilog2() - 2);
    n.next_multiple_of(step)
}

/// XOR-codes `value` against `prev` with the reusable leading/trailing-zeros window.
#[inline]
pub(crate) fn xor_write(
    w: &mut BitWriter,
    value: u64,
    prev: u64,
    leading: &mut u8,
    trailing: &mut u8,
) {
    let x = value ^ prev;
    if x == 0 {
        w.write_bits(0, 1);
        return;
    }
    w.write_bits(1, 1);
    // Clamped so it fits the 5-bit field.
    let lead = (x.leading_zeros() as u8).min(31);
    let trail = x.trailing_zeros() as u8;
    if *leading != NO_WINDOW && lead >= *leading && trail >= *trailing {
        w.write_bits(0, 1);
        let sig = 64 - u32::from(*leading) - u32::from(*trailing);
        w.write_bits(x >> *trailing, sig);
        return;
    }
    *leading = lead;
    *trailing = trail;
    w.write_bits(1, 1);
    w.write_bits(u64::from(lead), 5);
    let sig = 64 - u32::from(lead) - u32::from(trail);
    // 64 significant bits do not fit 6 bits; readers map 0 back to 64.
    w.write_bits(u64::from(sig), 6);
    w.write_bits(x >> trail, sig);
}

/// MSB-first bit cursor over a byte slice.
#[derive(Debug, Clone)]
pub(crate) struct BitReader<'a> {
    pub(crate) data: &'a [u8],
    /// Absolute bit position.
    pub(crate) pos: usize,
}

impl BitReader<'_> {
    /// Reads `n ≤ 64` bits, or `None` if the data ends first.
    #[inline]
    pub(crate) fn read_bits(&mut self, mut n: u32) -> Option<u64> {
        if self.pos + n as usize > self.data.len() * 8 {
            return None;
        }
        let mut out = 0u64;
        while n > 0 {
            let byte = *self.data.get(self.pos / 8)?;
            let avail = 8 - (self.pos % 8) as u32;
            let take = n.min(avail);
            let part = (byte >> (avail - take)) & (((1u16 << take) - 1) as u8);
            out = (out << take) | u64::from(part);
            self.pos += take as usize;
            n -= take;
        }
        Some(out)
    }

    /// Go's `binary.Uvarint`; `None` if the data ends first, `Some(Err)` if it overflows.
    pub(crate) fn read_uvarint(&mut self) -> Option<Result<u64, &'static str>> {
        let mut x = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.read_bits(8)?;
            if shift == 63 && b > 1 {
                break;
            }
            x |= (b & 0x7f) << shift;
            if b < 0x80 {
                return Some(Ok(x));
            }
        }
        Some(Err("varint overflows 64 bits"))
    }
}

/// Reads an XOR-coded value into `value` (the previous one on entry).
#[inline]
pub(crate) fn xor_read(
    br: &mut BitReader<'_>,
    value: &mut u64,
    leading: &mut u8,
    trailing: &mut u8,
    truncated: impl Fn() -> ChunkError,
    sample: u16,
) -> Result<(), ChunkError> {
    if br.read_bits(1).ok_or_else(&truncated)? == 0 {
        return Ok(());
    }
    if br.read_bits(1).ok_or_else(&truncated)? == 1 {
        let lead = br.read_bits(5).ok_or_else(&truncated)? as u8;
        let mut sig = br.read_bits(6).ok_or_else(&truncated)? as u8;
        if sig == 0 {
            sig = 64;
        }
        if u32::from(lead) + u32::from(sig) > 64 {
            return Err(ChunkError::Corrupt {
                sample,
                reason: "leading + significant bits exceed 64",
            });
        }
        *leading = lead;
        *trailing = 64 - lead - sig;
    }
    let sig = 64 - u32::from(*leading) - u32::from(*trailing);
    let bits = br.read_bits(sig).ok_or_else(&truncated)?;
    *value ^= bits << *trailing;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_are_jemallocs() {
        let classes: Vec<usize> = [1, 16, 17, 128, 129, 160, 161, 256, 257, 1000, 1025]
            .into_iter()
            .map(size_class)
            .collect();
        assert_eq!(
            classes,
            [16, 16, 32, 128, 160, 160, 192, 256, 320, 1024, 1280]
        );
    }

    #[test]
    fn a_growing_writer_keeps_its_bits() {
        let mut w = BitWriter::with_header(&[0, 0]);
        for i in 0..2000u64 {
            w.write_bits(i, 11);
        }
        assert_eq!(w.bit_len(), 16 + 2000 * 11);
        assert!(w.buf.capacity() < w.buf.len() + w.buf.len() / 4);
        let mut r = BitReader {
            data: &w.buf,
            pos: 16,
        };
        for i in 0..2000u64 {
            assert_eq!(r.read_bits(11), Some(i));
        }
    }
}
