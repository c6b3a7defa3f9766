//! A snappy block-format encoder that keeps chosen byte ranges as literals, so they can be
//! rewritten in the compressed body without compressing again.
//!
//! Remote-write bodies of one request differ from step to step only in sample timestamps and
//! values. Compressing every body anew would cost the generator about as much CPU as the receiver
//! spends decompressing it; instead each body is compressed once with the sample bytes kept out
//! of every back-reference (neither copied from nor into), and replaying a request is a memcpy
//! plus a few stores per sample. The matcher is snappy's (4-byte hash, 64 KiB window, greedy), so
//! compression ratio and the decoder's work stay close to what a Prometheus sender produces.

use std::ops::Range;

use tsdb_format::encoding::put_uvarint;

/// Back-references reach at most this far, as snappy's 64 KiB blocks allow.
const WINDOW: usize = 1 << 16;
const HASH_BITS: u32 = 14;
const MIN_MATCH: usize = 4;

/// A compressed body and where each protected range starts inside it.
#[derive(Debug, Clone)]
pub struct Compressed {
    /// The snappy block-format stream (length preamble included).
    pub bytes: Vec<u8>,
    /// For each protected range, the offset of its first byte in [`Compressed::bytes`].
    pub protected_at: Vec<u32>,
}

/// Compresses `src`, emitting every range of `protected` (sorted, disjoint) verbatim in literals.
pub fn compress(src: &[u8], protected: &[Range<usize>]) -> Compressed {
    debug_assert!(protected.windows(2).all(|w| w[0].end <= w[1].start));
    let mut enc = Encoder {
        src,
        protected,
        out: Vec::with_capacity(src.len() / 3 + 16),
        protected_at: Vec::with_capacity(protected.len()),
        next_recorded: 0,
    };
    put_uvarint(&mut enc.out, src.len() as u64);
    let mut table = vec![0u32; 1 << HASH_BITS];
    let mut next_protected = 0;
    let mut literal_start = 0;
    let mut i = 0;
    while i + MIN_MATCH <= src.len() {
        // Bytes up to the next protected range (or the end) may take part in a match.
        let free_end = protected.get(next_protected).map_or(src.len(), |r| r.start);
        if i >= free_end {
            i = protected[next_protected].end;
            next_protected += 1;
            continue;
        }
        if i + MIN_MATCH > free_end {
            i += 1;
            continue;
        }
        let word = load32(src, i);
        let slot = &mut table[hash(word)];
        // Entries are position + 1 so that 0 means empty.
        let candidate = (*slot as usize).wrapping_sub(1);
        *slot = (i + 1) as u32;
        if candidate >= i || i - candidate >= WINDOW || load32(src, candidate) != word {
            i += 1;
            continue;
        }
        let source_end = enc.free_end_after(candidate);
        if candidate + MIN_MATCH > source_end {
            i += 1;
            continue;
        }
        let mut len = MIN_MATCH;
        while i + len < free_end
            && candidate + len < source_end
            && src[i + len] == src[candidate + len]
        {
            len += 1;
        }
        enc.literal(literal_start, i);
        enc.copy(i - candidate, len);
        i += len;
        literal_start = i;
    }
    enc.literal(literal_start, src.len());
    debug_assert_eq!(enc.protected_at.len(), protected.len());
    Compressed {
        bytes: enc.out,
        protected_at: enc.protected_at,
    }
}

struct Encoder<'a> {
    src: &'a [u8],
    protected: &'a [Range<usize>],
    out: Vec<u8>,
    protected_at: Vec<u32>,
    /// First protected range whose compressed position is not recorded yet.
    next_recorded: usize,
}

impl Encoder<'_> {
    /// End of the unprotected run that contains `pos` (a match source must stay inside it).
    fn free_end_after(&self, pos: usize) -> usize {
        let k = self.protected.partition_point(|r| r.end <= pos);
        match self.protected.get(k) {
            Some(r) if r.start <= pos => pos, // inside a protected range: nothing usable
            Some(r) => r.start,
            None => self.src.len(),
        }
    }

    fn literal(&mut self, start: usize, end: usize) {
        if start == end {
            return;
        }
        let n = end - start - 1;
        match n {
            0..60 => self.out.push((n as u8) << 2),
            60..0x100 => self.out.extend_from_slice(&[60 << 2, n as u8]),
            0x100..0x1_0000 => {
                self.out.push(61 << 2);
                self.out.extend_from_slice(&(n as u16).to_le_bytes());
            }
            0x1_0000..0x100_0000 => {
                self.out.push(62 << 2);
                self.out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
            }
            _ => {
                self.out.push(63 << 2);
                self.out.extend_from_slice(&(n as u32).to_le_bytes());
            }
        }
        let base = self.out.len();
        while let Some(r) = self.protected.get(self.next_recorded) {
            if r.start >= end {
                break;
            }
            debug_assert!(r.start >= start && r.end <= end);
            self.protected_at.push((base + r.start - start) as u32);
            self.next_recorded += 1;
        }
        self.out.extend_from_slice(&self.src[start..end]);
    }

    fn copy(&mut self, offset: usize, mut len: usize) {
        // Snappy's own split: 64-byte copies, keeping the remainder at 4 bytes or more.
        while len >= 68 {
            self.copy2(offset, 64);
            len -= 64;
        }
        if len > 64 {
            self.copy2(offset, 60);
            len -= 60;
        }
        if (4..12).contains(&len) && offset < 2048 {
            self.out
                .push(0b01 | (((len - 4) as u8) << 2) | (((offset >> 8) as u8) << 5));
            self.out.push(offset as u8);
        } else {
            self.copy2(offset, len);
        }
    }

    fn copy2(&mut self, offset: usize, len: usize) {
        self.out.push(0b10 | (((len - 1) as u8) << 2));
        self.out.extend_from_slice(&(offset as u16).to_le_bytes());
    }
}

fn load32(src: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(src[i..i + 4].try_into().expect("4 bytes"))
}

fn hash(word: u32) -> usize {
    (word.wrapping_mul(0x1e35_a7bd) >> (32 - HASH_BITS)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_text() -> Vec<u8> {
        (0..2000)
            .flat_map(|i| {
                format!(
                    "namespace=\"team-{}\",pod=\"api-7d9c8b-{i:05}\",value=",
                    i % 7
                )
                .into_bytes()
                .into_iter()
                .chain(*b"0123456789ABCDEF")
            })
            .collect()
    }

    #[test]
    fn round_trips_and_patches_protected_ranges_in_place() {
        let src = sample_text();
        let protected: Vec<Range<usize>> = src
            .windows(16)
            .enumerate()
            .filter(|(_, w)| *w == b"0123456789ABCDEF")
            .map(|(i, _)| i..i + 16)
            .collect();
        let c = compress(&src, &protected);
        assert!(c.bytes.len() < src.len() / 2, "the labels must compress");
        assert_eq!(
            snap::raw::Decoder::new().decompress_vec(&c.bytes).unwrap(),
            src
        );

        let mut body = c.bytes.clone();
        let mut expected = src.clone();
        for (k, (r, &at)) in protected.iter().zip(&c.protected_at).enumerate() {
            let patch = [(k % 251) as u8; 16];
            body[at as usize..at as usize + 16].copy_from_slice(&patch);
            expected[r.clone()].copy_from_slice(&patch);
        }
        assert_eq!(
            snap::raw::Decoder::new().decompress_vec(&body).unwrap(),
            expected
        );
    }

    #[test]
    fn compresses_about_as_well_as_snappy() {
        let src = sample_text();
        let ours = compress(&src, &[]).bytes.len();
        let reference = snap::raw::Encoder::new().compress_vec(&src).unwrap().len();
        assert!(
            ours as f64 <= reference as f64 * 1.2,
            "{ours} vs {reference}"
        );
    }
}
