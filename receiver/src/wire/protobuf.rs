//! Protobuf wire primitives: a bounds-checked reader over a borrowed body and the few encoder
//! helpers the hand-written formats need.
//!
//! The decoders read with this [`Reader`] rather than `prost::encoding`: it works on offsets into
//! one buffer (so decoded labels stay spans into the body) and inlines into the series loops,
//! which `cargo bench --bench decode` shows is where a request's decode time goes.

use super::DecodeError;
use tsdb_format::encoding::{put_uvarint, uvarint_len};

/// Wire type of varints.
pub const WIRE_VARINT: u8 = 0;
/// Wire type of fixed 64-bit values.
pub const WIRE_I64: u8 = 1;
/// Wire type of length-delimited values (strings, bytes, messages, packed repeated fields).
pub const WIRE_LEN: u8 = 2;
/// Wire type of fixed 32-bit values.
pub const WIRE_I32: u8 = 5;

/// A cursor over `buf[pos..end]` that reads protobuf wire primitives.
pub struct Reader {
    pos: usize,
    end: usize,
}

impl Reader {
    /// A reader of `buf[pos..end]`.
    pub fn new(pos: usize, end: usize) -> Self {
        Self { pos, end }
    }

    /// Whether the range is consumed.
    #[inline]
    pub fn done(&self) -> bool {
        self.pos >= self.end
    }

    /// Reads a base-128 varint.
    #[inline]
    pub fn varint(&mut self, buf: &[u8]) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            if self.pos >= self.end {
                return Err(DecodeError::Truncated);
            }
            let b = buf[self.pos];
            self.pos += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(DecodeError::Varint)
    }

    /// Reads a field key as `(field number, wire type)`.
    #[inline]
    pub fn key(&mut self, buf: &[u8]) -> Result<(u32, u8), DecodeError> {
        let k = self.varint(buf)?;
        let field = (k >> 3) as u32;
        if field == 0 {
            return Err(DecodeError::FieldZero);
        }
        Ok((field, (k & 7) as u8))
    }

    /// Reads a length-delimited value and returns its `(start, end)` offsets.
    #[inline]
    pub fn len_delimited(&mut self, buf: &[u8]) -> Result<(usize, usize), DecodeError> {
        let len = self.varint(buf)?;
        let start = self.pos;
        if len > (self.end - start) as u64 {
            return Err(DecodeError::Truncated);
        }
        self.pos = start + len as usize;
        Ok((start, self.pos))
    }

    /// Reads a length-delimited value as a span of the body.
    #[inline]
    pub fn span(&mut self, buf: &[u8]) -> Result<super::Span, DecodeError> {
        let (s, e) = self.len_delimited(buf)?;
        Ok(super::Span {
            off: s as u32,
            len: (e - s) as u32,
        })
    }

    /// Reads a little-endian fixed 64-bit value.
    #[inline]
    pub fn fixed64(&mut self, buf: &[u8]) -> Result<u64, DecodeError> {
        if self.end - self.pos < 8 {
            return Err(DecodeError::Truncated);
        }
        let bytes: [u8; 8] = buf[self.pos..self.pos + 8].try_into().expect("8 bytes");
        self.pos += 8;
        Ok(u64::from_le_bytes(bytes))
    }

    /// Skips a field of an unknown number; unknown wire types are an error.
    pub fn skip(&mut self, buf: &[u8], field: u32, wire: u8) -> Result<(), DecodeError> {
        let n = match wire {
            WIRE_VARINT => {
                self.varint(buf)?;
                return Ok(());
            }
            WIRE_I64 => 8,
            WIRE_LEN => {
                self.len_delimited(buf)?;
                return Ok(());
            }
            WIRE_I32 => 4,
            _ => return Err(DecodeError::WireType(wire, field)),
        };
        if self.end - self.pos < n {
            return Err(DecodeError::Truncated);
        }
        self.pos += n;
        Ok(())
    }
}

/// The key byte of a field numbered below 16.
pub const fn key(field: u8, wire: u8) -> u8 {
    (field << 3) | wire
}

/// Encoded length of a length-delimited field of `len` bytes with a one-byte key.
pub fn len_field_size(len: usize) -> usize {
    1 + uvarint_len(len as u64) + len
}

/// Appends a length-delimited field.
pub fn put_len_field(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    put_len_prefix(out, field, bytes.len());
    out.extend_from_slice(bytes);
}

/// Appends the key and length of a length-delimited field whose `len` bytes follow.
pub fn put_len_prefix(out: &mut Vec<u8>, field: u8, len: usize) {
    out.push(key(field, WIRE_LEN));
    put_uvarint(out, len as u64);
}

/// Appends a varint field.
pub fn put_varint_field(out: &mut Vec<u8>, field: u8, v: u64) {
    out.push(key(field, WIRE_VARINT));
    put_uvarint(out, v);
}

/// Appends a fixed 64-bit field.
pub fn put_fixed64_field(out: &mut Vec<u8>, field: u8, v: u64) {
    out.push(key(field, WIRE_I64));
    out.extend_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_refuses_malformed_primitives() {
        let overlong = [0xffu8; 11];
        assert_eq!(
            Reader::new(0, overlong.len()).varint(&overlong),
            Err(DecodeError::Varint)
        );
        assert_eq!(
            Reader::new(0, 1).varint(&[0x80]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(Reader::new(0, 1).key(&[0x00]), Err(DecodeError::FieldZero));
        // A length running past the range is truncation, not a read of the bytes after it.
        let buf = [0x05, 1, 2, 0xaa, 0xbb, 0xcc];
        assert_eq!(
            Reader::new(0, 3).len_delimited(&buf),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            Reader::new(0, 2).skip(&[0x0b, 0], 1, 3),
            Err(DecodeError::WireType(3, 1))
        );
    }

    #[test]
    fn encoded_fields_read_back() {
        let mut out = Vec::new();
        put_len_field(&mut out, 2, b"abc");
        put_varint_field(&mut out, 3, 300);
        put_fixed64_field(&mut out, 1, 7);
        assert_eq!(len_field_size(3), 5);
        let mut r = Reader::new(0, out.len());
        assert_eq!(r.key(&out), Ok((2, WIRE_LEN)));
        assert_eq!(r.len_delimited(&out), Ok((2, 5)));
        assert_eq!(r.key(&out), Ok((3, WIRE_VARINT)));
        assert_eq!(r.varint(&out), Ok(300));
        assert_eq!(r.key(&out), Ok((1, WIRE_I64)));
        assert_eq!(r.fixed64(&out), Ok(7));
        assert!(r.done());
    }
}
