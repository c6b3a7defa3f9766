//! XOR (Gorilla-style) float chunks, Prometheus chunk encoding 1.
//!
//! Layout: `num_samples u16 BE`, then sample 0 as `varint(t) | 64 raw value bits`,
//! sample 1 as `uvarint(Δt) | xor(value)`, later samples as `dod bucket | xor(value)`.
//! The bit stream is MSB-first with the last byte zero-padded.

use super::bstream::{BitReader, BitWriter, NO_WINDOW, xor_read, xor_write};
use super::{ChunkError, num_samples};

/// Incremental XOR encoder; its buffer is a complete chunk after every append.
#[derive(Debug, Clone)]
pub struct XorAppender {
    w: BitWriter,
    num: u16,
    t: i64,
    t_delta: u64,
    v: u64,
    leading: u8,
    trailing: u8,
}

impl Default for XorAppender {
    fn default() -> Self {
        Self::new()
    }
}

impl XorAppender {
    /// Creates an empty chunk (header with sample count 0).
    pub fn new() -> Self {
        Self {
            w: BitWriter::with_header(&[0, 0]),
            num: 0,
            t: 0,
            t_delta: 0,
            v: 0,
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    /// Appends a sample; `t` must exceed the previous timestamp and the chunk must hold
    /// fewer than 65535 samples (the header is a u16; panics otherwise rather than corrupt it).
    pub fn append(&mut self, t: i64, v: f64) {
        assert!(self.num < u16::MAX, "XOR chunk holds at most 65535 samples");
        let vbits = v.to_bits();
        match self.num {
            0 => {
                self.w.write_uvarint(zigzag(t));
                self.w.write_bits(vbits, 64);
            }
            1 => {
                let delta = t.wrapping_sub(self.t) as u64;
                self.w.write_uvarint(delta);
                xor_write(
                    &mut self.w,
                    vbits,
                    self.v,
                    &mut self.leading,
                    &mut self.trailing,
                );
                self.t_delta = delta;
            }
            _ => {
                let delta = t.wrapping_sub(self.t) as u64;
                let dod = delta.wrapping_sub(self.t_delta) as i64;
                if dod == 0 {
                    self.w.write_bits(0, 1);
                } else if bit_range(dod, 14) {
                    self.w.write_bits(0b10, 2);
                    self.w.write_bits(dod as u64, 14);
                } else if bit_range(dod, 17) {
                    self.w.write_bits(0b110, 3);
                    self.w.write_bits(dod as u64, 17);
                } else if bit_range(dod, 20) {
                    self.w.write_bits(0b1110, 4);
                    self.w.write_bits(dod as u64, 20);
                } else {
                    self.w.write_bits(0b1111, 4);
                    self.w.write_bits(dod as u64, 64);
                }
                xor_write(
                    &mut self.w,
                    vbits,
                    self.v,
                    &mut self.leading,
                    &mut self.trailing,
                );
                self.t_delta = delta;
            }
        }
        self.t = t;
        self.v = vbits;
        self.num += 1;
        self.w.buf[..2].copy_from_slice(&self.num.to_be_bytes());
    }

    /// Number of samples appended so far.
    pub fn num_samples(&self) -> u16 {
        self.num
    }

    /// The chunk as it stands: valid and decodable at any moment.
    pub fn bytes(&self) -> &[u8] {
        &self.w.buf
    }

    /// Closes the chunk, returning its bytes without spare capacity.
    pub fn into_bytes(self) -> Box<[u8]> {
        self.w.buf.into_boxed_slice()
    }

    /// Timestamp of the first sample (meaningless while empty); read back from the chunk rather
    /// than kept, as a head holds one appender per series.
    #[inline]
    pub fn min_time(&self) -> i64 {
        self.w
            .buf
            .get(2..)
            .and_then(crate::encoding::varint)
            .map_or(0, |(t, _)| t)
    }

    /// Timestamp of the last sample (meaningless while empty).
    pub fn max_time(&self) -> i64 {
        self.t
    }

    /// The last appended sample, if any.
    pub fn last(&self) -> Option<(i64, f64)> {
        (self.num > 0).then(|| (self.t, f64::from_bits(self.v)))
    }
}

/// Go's `binary.PutVarint` zigzag mapping.
fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

/// Whether `x` fits an `n`-bit dod bucket (Prometheus' asymmetric `bitRange`).
fn bit_range(x: i64, n: u32) -> bool {
    let half = 1i64 << (n - 1);
    -(half - 1) <= x && x <= half
}

/// Starts decoding an XOR chunk.
pub fn iter_xor(data: &[u8]) -> XorIter<'_> {
    let (total, err) = match num_samples(data) {
        Ok(n) => (n, None),
        Err(e) => (0, Some(e)),
    };
    XorIter {
        br: BitReader { data, pos: 16 },
        total,
        read: 0,
        t: 0,
        t_delta: 0,
        v: 0,
        leading: 0,
        trailing: 0,
        err,
    }
}

/// Decoder over an XOR chunk's samples; check [`XorIter::err`] after it ends.
#[derive(Debug, Clone)]
pub struct XorIter<'a> {
    br: BitReader<'a>,
    total: u16,
    read: u16,
    t: i64,
    t_delta: u64,
    v: u64,
    leading: u8,
    trailing: u8,
    err: Option<ChunkError>,
}

impl XorIter<'_> {
    /// The error that ended iteration early, if any.
    pub fn err(&self) -> Option<&ChunkError> {
        self.err.as_ref()
    }

    /// Sample count announced by the chunk header.
    pub fn num_samples(&self) -> u16 {
        self.total
    }

    fn truncated(&self) -> ChunkError {
        ChunkError::Truncated {
            read: self.read,
            expected: self.total,
        }
    }

    fn step(&mut self) -> Result<(i64, f64), ChunkError> {
        match self.read {
            0 => {
                let zz = self.read_uvarint()?;
                self.t = ((zz >> 1) as i64) ^ -((zz & 1) as i64);
                self.v = self.br.read_bits(64).ok_or_else(|| self.truncated())?;
            }
            1 => {
                self.t_delta = self.read_uvarint()?;
                self.t = self.t.wrapping_add(self.t_delta as i64);
                self.read_value()?;
            }
            _ => {
                let mut prefix = 0u8;
                for _ in 0..4 {
                    let bit = self.br.read_bits(1).ok_or_else(|| self.truncated())?;
                    prefix = (prefix << 1) | bit as u8;
                    if bit == 0 {
                        break;
                    }
                }
                let size = match prefix {
                    0b0 => 0,
                    0b10 => 14,
                    0b110 => 17,
                    0b1110 => 20,
                    _ => 64,
                };
                let dod = if size == 0 {
                    0
                } else {
                    let mut bits = self.br.read_bits(size).ok_or_else(|| self.truncated())?;
                    // Negative dods come back as large unsigned values in narrow buckets.
                    if size < 64 && bits > 1 << (size - 1) {
                        bits = bits.wrapping_sub(1 << size);
                    }
                    bits
                };
                self.t_delta = self.t_delta.wrapping_add(dod);
                self.t = self.t.wrapping_add(self.t_delta as i64);
                self.read_value()?;
            }
        }
        Ok((self.t, f64::from_bits(self.v)))
    }

    fn read_value(&mut self) -> Result<(), ChunkError> {
        let (read, total) = (self.read, self.total);
        let truncated = || ChunkError::Truncated {
            read,
            expected: total,
        };
        xor_read(
            &mut self.br,
            &mut self.v,
            &mut self.leading,
            &mut self.trailing,
            truncated,
            read,
        )
    }

    fn read_uvarint(&mut self) -> Result<u64, ChunkError> {
        match self.br.read_uvarint() {
            None => Err(self.truncated()),
            Some(Ok(x)) => Ok(x),
            Some(Err(reason)) => Err(ChunkError::Corrupt {
                sample: self.read,
                reason,
            }),
        }
    }
}

impl Iterator for XorIter<'_> {
    type Item = (i64, f64);

    fn next(&mut self) -> Option<(i64, f64)> {
        if self.err.is_some() || self.read >= self.total {
            return None;
        }
        match self.step() {
            Ok(sample) => {
                self.read += 1;
                Some(sample)
            }
            Err(e) => {
                self.err = Some(e);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

    fn encode(samples: &[(i64, f64)]) -> XorAppender {
        let mut app = XorAppender::new();
        for &(t, v) in samples {
            app.append(t, v);
        }
        app
    }

    /// Compares bit patterns so NaN payloads count.
    fn assert_round_trip(samples: &[(i64, f64)]) {
        let app = encode(samples);
        assert_eq!(app.num_samples() as usize, samples.len());
        let mut it = iter_xor(app.bytes());
        let got: Vec<(i64, u64)> = it.by_ref().map(|(t, v)| (t, v.to_bits())).collect();
        assert!(it.err().is_none(), "{:?}", it.err());
        let want: Vec<(i64, u64)> = samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
        assert_eq!(got, want);
        // The closed chunk decodes identically.
        let closed = app.clone().into_bytes();
        assert_eq!(&*closed, app.bytes());
        if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
            assert_eq!(app.min_time(), first.0);
            assert_eq!(app.max_time(), last.0);
            assert_eq!(
                app.last().map(|(t, v)| (t, v.to_bits())),
                Some((last.0, last.1.to_bits()))
            );
        }
    }

    /// Tiny xorshift so tests need no rand dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn empty_chunk() {
        let app = XorAppender::new();
        assert_eq!(app.bytes(), &[0, 0]);
        assert_eq!(app.last(), None);
        let mut it = iter_xor(app.bytes());
        assert_eq!(it.next(), None);
        assert!(it.err().is_none());
    }

    #[test]
    fn golden_bytes() {
        // Worked out by hand from the layout:
        // 00 03                    3 samples
        // D0 0F                    varint(1000) = uvarint(2000)
        // 3F F0 00 00 00 00 00 00  1.0
        // E8 07                    uvarint(Δ=1000)
        // bits: 0 (v1 == v0) | 0 (dod 0) | 1 1 00001 001011 11111111111
        //       (xor 0x7FF0.. : lead 1, 11 significant bits)  -> 30 97 FF C0
        let app = encode(&[(1000, 1.0), (2000, 1.0), (3000, 2.0)]);
        let want = [
            0x00, 0x03, 0xD0, 0x0F, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0, 0xE8, 0x07, 0x30, 0x97, 0xFF,
            0xC0,
        ];
        assert_eq!(app.bytes(), &want);
        let got: Vec<_> = iter_xor(&want).collect();
        assert_eq!(got, vec![(1000, 1.0), (2000, 1.0), (3000, 2.0)]);
    }

    #[test]
    fn golden_reused_window_and_dod() {
        // 0 -> 1.0, 10 -> 3.0, 25 -> 2.0:
        // 00 03 | 00 (varint 0) | 3F F0 00.. (1.0) | 0A (Δ=10)
        // v1: xor 0x7FF8.. lead 1 trail 51 sig 12 -> 11 00001 001100 111111111111
        // t2: dod = 15-10 = 5                    -> 10 00000000000101
        // v2: xor 0x0008.. fits the window 1/51   -> 10 000000000001
        // 55 bits -> C2 67 FF C0 02 C0 02
        let app = encode(&[(0, 1.0), (10, 3.0), (25, 2.0)]);
        let want = [
            0x00, 0x03, 0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0, 0x0A, 0xC2, 0x67, 0xFF, 0xC0, 0x02,
            0xC0, 0x02,
        ];
        assert_eq!(app.bytes(), &want);
    }

    #[test]
    fn regular_intervals_120_samples() {
        let samples: Vec<_> = (0..120)
            .map(|i| (1_700_000_000_000 + i * 15_000, i as f64 * 1.5))
            .collect();
        assert_round_trip(&samples);
        // Constant timestamps and values compress to two bits per sample.
        let constant: Vec<_> = (0..120).map(|i| (i * 15_000, 42.0)).collect();
        let app = encode(&constant);
        // header, varint(0), 1.0, uvarint(15000), then 1 + 118*2 bits.
        assert_eq!(
            app.bytes().len(),
            2 + 1 + 8 + 2 + (1usize + 118 * 2).div_ceil(8)
        );
        assert_round_trip(&constant);
    }

    #[test]
    fn irregular_intervals() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut t = -5_000i64;
        let mut samples = Vec::new();
        for _ in 0..500 {
            t += 1 + (rng.next() % 100_000) as i64;
            samples.push((t, (rng.next() % 1000) as f64 / 7.0));
        }
        assert_round_trip(&samples);
    }

    #[test]
    fn dod_bucket_boundaries() {
        let base = 1_000_000i64;
        // Δ1 large enough that every negative dod keeps timestamps increasing.
        let d1 = 2_000_000i64;
        let bits_used = |app: &XorAppender| app.w.bit_len() as u32;
        let zero_dod = bits_used(&encode(&[
            (base, 1.0),
            (base + d1, 1.0),
            (base + 2 * d1, 1.0),
        ]));
        // (dod, bits of prefix + payload): pins the asymmetric bucket edges, which a
        // round trip alone would not catch if encoder and decoder shared a mistake.
        for (dod, width) in [
            (0, 1),
            (1, 16),
            (-1, 16),
            (-8191, 16),
            (8192, 16),
            (-8192, 20),
            (8193, 20),
            (-65535, 20),
            (65536, 20),
            (-65536, 24),
            (65537, 24),
            (-524287, 24),
            (524288, 24),
            (-524288, 68),
            (524289, 68),
            (1 << 40, 68),
            (-(1 << 40), 68),
        ] {
            let three = encode(&[(base, 1.0), (base + d1, 1.0), (base + 2 * d1 + dod, 1.0)]);
            assert_eq!(bits_used(&three) - zero_dod, width - 1, "dod {dod}");
            let samples = [
                (base, 1.0),
                (base + d1, 2.0),
                (base + 2 * d1 + dod, 3.0),
                (base + 3 * d1 + 2 * dod, 4.0),
            ];
            assert_round_trip(&samples);
        }
    }

    #[test]
    fn negative_and_extreme_timestamps() {
        assert_round_trip(&[
            (-1_000_000, 1.0),
            (-999_000, 2.0),
            (-1, 3.0),
            (0, 4.0),
            (5, 5.0),
        ]);
        assert_round_trip(&[(i64::MIN / 2, 1.0), (0, 1.0), (i64::MAX / 2, 1.0)]);
        assert_round_trip(&[(i64::MIN, 0.0), (i64::MIN + 1, 0.0)]);
    }

    #[test]
    fn special_values() {
        let stale = f64::from_bits(STALE_NAN);
        let values = [
            0.0,
            -0.0,
            f64::NAN,
            stale,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1.0,
            stale,
            stale,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            -0.0,
            f64::from_bits(1),
            f64::from_bits(u64::MAX),
        ];
        let samples: Vec<_> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as i64 * 1000, v))
            .collect();
        assert_round_trip(&samples);
        let got: Vec<_> = iter_xor(encode(&samples).bytes()).collect();
        assert_eq!(got[3].1.to_bits(), STALE_NAN);
        assert_eq!(got[1].1.to_bits(), (-0.0f64).to_bits());
    }

    #[test]
    fn random_values() {
        let mut rng = Rng(12345);
        for round in 0..50 {
            let samples: Vec<_> = (0..120)
                .map(|i| {
                    let v = match round % 3 {
                        0 => f64::from_bits(rng.next()),
                        1 => (rng.next() % 100) as f64,
                        _ => (rng.next() as f64) / 3.0,
                    };
                    (i * 15_000 + (rng.next() % 50) as i64, v)
                })
                .collect();
            assert_round_trip(&samples);
        }
    }

    #[test]
    fn bytes_valid_after_every_append() {
        let mut app = XorAppender::new();
        for i in 0..130i64 {
            app.append(i * 1000 + i % 7, (i * i) as f64);
            let got: Vec<_> = iter_xor(app.bytes()).collect();
            assert_eq!(got.len() as i64, i + 1);
            assert_eq!(got.last(), Some(&(i * 1000 + i % 7, (i * i) as f64)));
        }
    }

    #[test]
    fn truncated_and_corrupt_data() {
        let app = encode(&(0..120).map(|i| (i * 15_000, i as f64)).collect::<Vec<_>>());
        let bytes = app.bytes();
        for cut in [0, 1] {
            let mut it = iter_xor(&bytes[..cut]);
            assert_eq!(it.next(), None);
            assert_eq!(it.err(), Some(&ChunkError::MissingHeader(cut)));
        }
        for cut in [2, 5, 12, bytes.len() / 2, bytes.len() - 1] {
            let mut it = iter_xor(&bytes[..cut]);
            let n = it.by_ref().count();
            assert!(n < 120);
            assert!(
                matches!(it.err(), Some(ChunkError::Truncated { expected: 120, .. })),
                "cut {cut}"
            );
        }
        // A header claiming more samples than encoded is reported, not invented.
        let mut lying = bytes.to_vec();
        lying[..2].copy_from_slice(&1000u16.to_be_bytes());
        let mut it = iter_xor(&lying);
        assert!(it.by_ref().count() >= 120);
        assert!(it.err().is_some());
        // An overlong varint is corrupt.
        let mut it = iter_xor(&[
            0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ]);
        assert_eq!(it.next(), None);
        assert!(matches!(it.err(), Some(ChunkError::Corrupt { .. })));
        assert_eq!(num_samples(bytes), Ok(120));
    }
}
