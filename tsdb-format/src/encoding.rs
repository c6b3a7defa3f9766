//! Go `encoding/binary` varints, big-endian integers and CRC-checked sections: the one home of
//! these encodings for the block formats, the receiver's WAL and labels, and its protobuf writers.

use crate::error::{Error, Result, corrupt};

/// Appends Go's `binary.PutUvarint` encoding.
pub fn put_uvarint(buf: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        buf.push(x as u8 | 0x80);
        x >>= 7;
    }
    buf.push(x as u8);
}

/// Bytes [`put_uvarint`] writes for `x`.
pub fn uvarint_len(x: u64) -> usize {
    (64 - (x | 1).leading_zeros() as usize).div_ceil(7)
}

/// Reads a Go uvarint from the start of `buf`: the value and the bytes it took, `None` when
/// truncated or longer than 64 bits.
#[inline]
pub fn uvarint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut x = 0u64;
    for (i, &b) in buf.iter().enumerate().take(10) {
        if i == 9 && b > 1 {
            return None;
        }
        x |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Some((x, i + 1));
        }
    }
    None
}

/// Reads a Go (zigzag) varint from the start of `buf`, as [`uvarint`].
#[inline]
pub fn varint(buf: &[u8]) -> Option<(i64, usize)> {
    let (u, n) = uvarint(buf)?;
    Some((unzigzag(u), n))
}

#[inline]
fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Appends Go's `binary.PutVarint` (zigzag) encoding.
pub fn put_varint(buf: &mut Vec<u8>, x: i64) {
    put_uvarint(buf, ((x << 1) ^ (x >> 63)) as u64);
}

/// Appends a uvarint length prefix and the string bytes.
pub fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_uvarint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

/// Fails with [`Error::Checksum`] unless `stored` is the CRC32C of `data`.
pub fn check_crc(what: &str, data: &[u8], stored: u32) -> Result<()> {
    let computed = crc32c::crc32c(data);
    if computed == stored {
        Ok(())
    } else {
        Err(Error::Checksum {
            what: what.to_string(),
            stored,
            computed,
        })
    }
}

/// Returns the body of a `len u32 | body | crc u32` section at `off`, CRC verified.
pub fn section<'a>(b: &'a [u8], off: u64, what: &str) -> Result<&'a [u8]> {
    let mut d = Decoder::new(b, what);
    d.skip(off)?;
    let len = d.be_u32()?;
    let body = d.bytes(u64::from(len))?;
    let crc = d.be_u32()?;
    check_crc(what, body, crc)?;
    Ok(body)
}

/// Bounds-checked cursor whose failures name the structure being read.
pub struct Decoder<'a, 'w> {
    b: &'a [u8],
    what: &'w str,
}

impl<'a, 'w> Decoder<'a, 'w> {
    /// Starts reading `b`; `what` labels errors.
    pub fn new(b: &'a [u8], what: &'w str) -> Self {
        Self { b, what }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.b.len()
    }

    fn eof(&self) -> Error {
        corrupt(self.what, "unexpected end of data")
    }

    /// Consumes `n` bytes.
    pub fn bytes(&mut self, n: u64) -> Result<&'a [u8]> {
        let n = usize::try_from(n).map_err(|_| self.eof())?;
        if n > self.b.len() {
            return Err(self.eof());
        }
        let (head, tail) = self.b.split_at(n);
        self.b = tail;
        Ok(head)
    }

    /// Discards `n` bytes.
    pub fn skip(&mut self, n: u64) -> Result<()> {
        self.bytes(n).map(|_| ())
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    /// Reads a big-endian u32.
    pub fn be_u32(&mut self) -> Result<u32> {
        let mut a = [0; 4];
        a.copy_from_slice(self.bytes(4)?);
        Ok(u32::from_be_bytes(a))
    }

    /// Reads a big-endian u64.
    pub fn be_u64(&mut self) -> Result<u64> {
        let mut a = [0; 8];
        a.copy_from_slice(self.bytes(8)?);
        Ok(u64::from_be_bytes(a))
    }

    /// Reads a Go uvarint.
    pub fn uvarint(&mut self) -> Result<u64> {
        let mut x = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                break;
            }
            x |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(x);
            }
        }
        Err(corrupt(self.what, "varint overflows 64 bits"))
    }

    /// Reads a uvarint that must fit in 32 bits.
    pub fn uvarint32(&mut self) -> Result<u32> {
        let x = self.uvarint()?;
        u32::try_from(x).map_err(|_| corrupt(self.what, format!("value {x} exceeds 32 bits")))
    }

    /// Reads a Go (zigzag) varint.
    pub fn varint(&mut self) -> Result<i64> {
        Ok(unzigzag(self.uvarint()?))
    }

    /// Reads a uvarint-length-prefixed UTF-8 string.
    pub fn str(&mut self) -> Result<&'a str> {
        let n = self.uvarint()?;
        let b = self.bytes(n)?;
        std::str::from_utf8(b).map_err(|_| corrupt(self.what, "string is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_go() {
        let mut b = Vec::new();
        put_uvarint(&mut b, 300);
        assert_eq!(b, [0xAC, 0x02]);
        b.clear();
        put_varint(&mut b, -1);
        put_varint(&mut b, 1);
        put_varint(&mut b, i64::MIN);
        let mut d = Decoder::new(&b, "t");
        assert_eq!(d.varint().unwrap(), -1);
        assert_eq!(d.varint().unwrap(), 1);
        assert_eq!(d.varint().unwrap(), i64::MIN);
        assert_eq!(d.remaining(), 0);
        b.clear();
        put_uvarint(&mut b, u64::MAX);
        assert_eq!(b.len(), 10);
        assert_eq!(Decoder::new(&b, "t").uvarint().unwrap(), u64::MAX);
        assert!(Decoder::new(&[0xff; 11], "t").uvarint().is_err());
        assert!(Decoder::new(&[0x80], "t").uvarint().is_err());
    }

    #[test]
    fn slice_readers_and_lengths_agree_with_the_writers() {
        for x in [0u64, 1, 127, 128, 300, 16383, 16384, u64::MAX] {
            let mut b = Vec::new();
            put_uvarint(&mut b, x);
            assert_eq!(uvarint_len(x), b.len(), "{x}");
            assert_eq!(uvarint(&b), Some((x, b.len())));
        }
        for x in [0i64, -1, 1, i64::MIN, i64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, x);
            assert_eq!(varint(&b), Some((x, b.len())));
        }
        assert_eq!(uvarint(&[0x80]), None, "truncated");
        assert_eq!(uvarint(&[0xff; 10]), None, "beyond 64 bits");
    }
}
