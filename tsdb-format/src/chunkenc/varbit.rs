//! Prometheus' variable-width bit integers (`varbit.go`): a unary prefix picks one of nine
//! payload widths, so small deltas-of-deltas take a handful of bits.

use super::ChunkError;
use super::bstream::{BitReader, BitWriter};

/// (prefix, prefix bits, payload bits), narrowest first.
const WIDTHS: [(u64, u32, u32); 7] = [
    (0b10, 2, 3),
    (0b110, 3, 6),
    (0b1110, 4, 9),
    (0b11110, 5, 12),
    (0b111110, 6, 18),
    (0b1111110, 7, 25),
    (0b11111110, 8, 56),
];

/// Writes a signed varbit integer.
pub(crate) fn put_int(w: &mut BitWriter, v: i64) {
    if v == 0 {
        w.write_bits(0, 1);
        return;
    }
    for (prefix, plen, n) in WIDTHS {
        // Prometheus' asymmetric `bitRange`: -(2^(n-1)-1) ..= 2^(n-1).
        let half = 1i64 << (n - 1);
        if -(half - 1) <= v && v <= half {
            w.write_bits(prefix, plen);
            w.write_bits(v as u64, n);
            return;
        }
    }
    w.write_bits(0b1111_1111, 8);
    w.write_bits(v as u64, 64);
}

/// Writes an unsigned varbit integer.
pub(crate) fn put_uint(w: &mut BitWriter, v: u64) {
    if v == 0 {
        w.write_bits(0, 1);
        return;
    }
    for (prefix, plen, n) in WIDTHS {
        if v >> n == 0 {
            w.write_bits(prefix, plen);
            w.write_bits(v, n);
            return;
        }
    }
    w.write_bits(0b1111_1111, 8);
    w.write_bits(v, 64);
}

/// Reads the prefix and returns the payload width (0 for the value 0).
fn read_width(br: &mut BitReader<'_>) -> Option<u32> {
    let mut ones = 0;
    while ones < 8 {
        if br.read_bits(1)? == 0 {
            break;
        }
        ones += 1;
    }
    Some(match ones {
        0 => 0,
        8 => 64,
        n => WIDTHS[n - 1].2,
    })
}

/// Reads a signed varbit integer.
pub(crate) fn read_int(
    br: &mut BitReader<'_>,
    truncated: impl Fn() -> ChunkError,
) -> Result<i64, ChunkError> {
    let n = read_width(br).ok_or_else(&truncated)?;
    if n == 0 {
        return Ok(0);
    }
    let mut bits = br.read_bits(n).ok_or_else(&truncated)?;
    if n < 64 && bits > 1 << (n - 1) {
        bits = bits.wrapping_sub(1 << n);
    }
    Ok(bits as i64)
}

/// Reads an unsigned varbit integer.
pub(crate) fn read_uint(
    br: &mut BitReader<'_>,
    truncated: impl Fn() -> ChunkError,
) -> Result<u64, ChunkError> {
    let n = read_width(br).ok_or_else(&truncated)?;
    if n == 0 {
        return Ok(0);
    }
    br.read_bits(n).ok_or_else(truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits_of(f: impl FnOnce(&mut BitWriter)) -> (Vec<u8>, usize) {
        let mut w = BitWriter::with_header(&[]);
        f(&mut w);
        let len = w.bit_len();
        (w.buf, len)
    }

    #[test]
    fn widths_and_round_trips() {
        let trunc = || ChunkError::MissingHeader(0);
        for (v, width) in [
            (0i64, 1),
            (1, 5),
            (-3, 5),
            (4, 5),
            (5, 9),
            (-4, 9),
            (32, 9),
            (-31, 9),
            (33, 13),
            (256, 13),
            (257, 17),
            (2048, 17),
            (2049, 24),
            (131_072, 24),
            (131_073, 32),
            (16_777_216, 32),
            (16_777_217, 64),
            (1 << 55, 64),
            ((1 << 55) + 1, 72),
            (i64::MIN, 72),
            (i64::MAX, 72),
        ] {
            let (buf, len) = bits_of(|w| put_int(w, v));
            assert_eq!(len, width, "int {v}");
            let mut br = BitReader { data: &buf, pos: 0 };
            assert_eq!(read_int(&mut br, trunc), Ok(v));
        }
        for (v, width) in [
            (0u64, 1),
            (7, 5),
            (8, 9),
            (63, 9),
            (64, 13),
            (4095, 17),
            (4096, 24),
            (262_143, 24),
            (33_554_431, 32),
            (33_554_432, 64),
            ((1 << 56) - 1, 64),
            (1 << 56, 72),
            (u64::MAX, 72),
        ] {
            let (buf, len) = bits_of(|w| put_uint(w, v));
            assert_eq!(len, width, "uint {v}");
            let mut br = BitReader { data: &buf, pos: 0 };
            assert_eq!(read_uint(&mut br, trunc), Ok(v));
        }
    }
}
