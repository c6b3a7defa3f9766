//! A compact, immutable label set.
//!
//! One allocation per series holding its key `name 0xff value 0xff ...`, names sorted. Valid
//! UTF-8 never contains the byte 0xff, so the separator is unambiguous, and the same bytes are
//! what the head hashes and compares: a lookup is one hash and one `memcmp`. The WAL keeps
//! Prometheus' length-prefixed encoding ([`Labels::from_wal`], [`Labels::write_wal`]).

use std::cmp::Ordering;
use std::fmt;
use std::ops::Range;

use tsdb_format::encoding::{put_uvarint, uvarint};

/// Separates names and values in a label key.
const SEP: u8 = 0xff;

/// A sorted label set stored as its key in one boxed slice.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Labels(Box<[u8]>);

/// Writes the key of `pairs` (sorted by name) into `buf`, replacing its content.
pub fn write_key<'a>(pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>, buf: &mut Vec<u8>) {
    buf.clear();
    append_key(pairs, buf);
}

/// Appends the key of `pairs` (sorted by name) to `buf`.
pub fn append_key<'a>(pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>, buf: &mut Vec<u8>) {
    for (n, v) in pairs {
        buf.extend_from_slice(n);
        buf.push(SEP);
        buf.extend_from_slice(v);
        buf.push(SEP);
    }
}

/// Appends the key of label pairs given as `(name, value)` ranges of `src` (sorted by name).
///
/// The same bytes as [`append_key`], built faster: names and values are mostly under 32 bytes,
/// and copying them one length-dependent `memcpy` call at a time cost a lookup as much as the
/// key compare. A short range is copied as the fixed 32 bytes from its start (when `src` holds
/// them) and the copy cut back to its length.
pub fn append_key_ranges(
    src: &[u8],
    pairs: impl IntoIterator<Item = (Range<usize>, Range<usize>)>,
    buf: &mut Vec<u8>,
) {
    for (n, v) in pairs {
        put_range(src, n, buf);
        buf.push(SEP);
        put_range(src, v, buf);
        buf.push(SEP);
    }
}

fn put_range(src: &[u8], r: Range<usize>, buf: &mut Vec<u8>) {
    const WIDE: usize = 32;
    if r.len() <= WIDE
        && let Some(wide) = src.get(r.start..r.start + WIDE)
    {
        let len = buf.len() + r.len();
        buf.extend_from_slice(wide);
        buf.truncate(len);
    } else {
        buf.extend_from_slice(&src[r]);
    }
}

impl Labels {
    /// Builds a label set from pairs that are already sorted by name.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Self {
        let mut buf = Vec::new();
        write_key(pairs, &mut buf);
        Labels(buf.into_boxed_slice())
    }

    /// Builds a label set from string pairs, sorting them by name.
    pub fn from_strs(pairs: &[(&str, &str)]) -> Self {
        let mut sorted = pairs.to_vec();
        sorted.sort();
        Self::from_pairs(sorted.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    /// A label set from a key written by [`write_key`].
    pub fn from_key(key: &[u8]) -> Self {
        Labels(key.into())
    }

    /// Parses the WAL encoding `(uvarint len, name, uvarint len, value)*`; `None` if malformed
    /// or not UTF-8.
    pub fn from_wal(mut bytes: &[u8]) -> Option<Self> {
        let mut buf = Vec::with_capacity(bytes.len());
        while !bytes.is_empty() {
            for _ in 0..2 {
                let (len, n) = uvarint(bytes)?;
                let len = usize::try_from(len).ok()?;
                let s = bytes.get(n..n.checked_add(len)?)?;
                std::str::from_utf8(s).ok()?;
                buf.extend_from_slice(s);
                buf.push(SEP);
                bytes = &bytes[n + len..];
            }
        }
        Some(Labels(buf.into_boxed_slice()))
    }

    /// Appends the WAL encoding of the pairs (without a count).
    pub fn write_wal(&self, buf: &mut Vec<u8>) {
        for (n, v) in self.iter() {
            put_uvarint(buf, n.len() as u64);
            buf.extend_from_slice(n.as_bytes());
            put_uvarint(buf, v.len() as u64);
            buf.extend_from_slice(v.as_bytes());
        }
    }

    /// The key: `name 0xff value 0xff ...`.
    pub fn key(&self) -> &[u8] {
        &self.0
    }

    /// Iterates `(name, value)` pairs in name order.
    pub fn iter(&self) -> LabelsIter<'_> {
        LabelsIter { rest: &self.0 }
    }

    /// Byte ranges of each pair's name and value in [`Labels::key`], in name order.
    pub fn spans(&self) -> impl Iterator<Item = (Range<usize>, Range<usize>)> + '_ {
        let mut at = 0;
        std::iter::from_fn(move || {
            let key = &self.0;
            if at >= key.len() {
                return None;
            }
            let mut next = || {
                let start = at;
                let end = key[start..]
                    .iter()
                    .position(|&b| b == SEP)
                    .map_or(key.len(), |i| start + i);
                at = end + 1;
                start..end
            };
            let name = next();
            Some((name, next()))
        })
    }

    /// Number of label pairs.
    pub fn len(&self) -> usize {
        self.0.iter().filter(|&&b| b == SEP).count() / 2
    }

    /// Whether the set has no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Value of the label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Orders label sets as Prometheus' `labels.Compare`: pairwise by name, then value; a prefix sorts first.
    ///
    /// Compares the keys bytewise: up to their first difference both keys hold the same pairs, so
    /// the bytes that differ belong to the same name (or value); a separator there ends the
    /// shorter string, which sorts first, and UTF-8 byte order is code point order, as in Go.
    pub fn compare(&self, other: &Labels) -> Ordering {
        let (a, b) = (&self.0, &other.0);
        match a.iter().zip(b.iter()).position(|(x, y)| x != y) {
            None => a.len().cmp(&b.len()),
            Some(i) => match (a[i], b[i]) {
                (SEP, _) => Ordering::Less,
                (_, SEP) => Ordering::Greater,
                (x, y) => x.cmp(&y),
            },
        }
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (n, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n}={v:?}")?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Iterator over the pairs of a [`Labels`].
#[derive(Clone)]
pub struct LabelsIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for LabelsIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let name = take_str(&mut self.rest);
        let value = take_str(&mut self.rest);
        Some((name, value))
    }
}

fn take_str<'a>(rest: &mut &'a [u8]) -> &'a str {
    let end = rest.iter().position(|&b| b == SEP).unwrap_or(rest.len());
    let (s, tail) = rest.split_at(end);
    *rest = tail.get(1..).unwrap_or_default();
    // Names and values are checked as UTF-8 before a series is created.
    std::str::from_utf8(s).unwrap_or("\u{fffd}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_ranges_match_keys_from_pairs() {
        // Lengths around the 32-byte fast copy, ranges ending near the end of `src` (where the
        // fixed-width copy would read past it) and an empty value.
        let src: Vec<u8> = (0..200u8).map(|b| b'a' + b % 26).collect();
        let cases = [
            (0..0, 5..5),
            (0..1, 1..31),
            (10..42, 42..75),
            (50..83, 90..190),
            (160..190, 190..200),
            (199..200, 170..200),
        ];
        let mut from_ranges = b"prefix".to_vec();
        append_key_ranges(&src, cases.iter().cloned(), &mut from_ranges);
        let mut from_pairs = b"prefix".to_vec();
        append_key(
            cases
                .iter()
                .map(|(n, v)| (&src[n.clone()], &src[v.clone()])),
            &mut from_pairs,
        );
        assert_eq!(from_ranges, from_pairs);
    }

    #[test]
    fn round_trip_and_compare() {
        let a = Labels::from_strs(&[("job", "x"), ("__name__", "up")]);
        assert_eq!(a.to_string(), r#"{__name__="up", job="x"}"#);
        assert_eq!(a.get("job"), Some("x"));
        assert_eq!(a.len(), 2);
        assert_eq!(a.key(), b"__name__\xffup\xffjob\xffx\xff");
        let mut wal = Vec::new();
        a.write_wal(&mut wal);
        assert_eq!(Labels::from_wal(&wal), Some(a.clone()));
        let mut key = Vec::new();
        write_key([(&b"__name__"[..], &b"up"[..]), (b"job", b"x")], &mut key);
        assert_eq!(Labels::from_key(&key), a);
        let b = Labels::from_strs(&[("__name__", "up")]);
        assert_eq!(b.compare(&a), Ordering::Less);
        assert_eq!(a.compare(&b), Ordering::Greater);
        let c = Labels::from_strs(&[("__name__", "up"), ("job", "y")]);
        assert_eq!(a.compare(&c), Ordering::Less);
        let prefix = Labels::from_strs(&[("a", "1")]);
        let longer = Labels::from_strs(&[("ab", "1")]);
        assert_eq!(
            prefix.compare(&longer),
            Ordering::Less,
            "a shorter name sorts first"
        );
    }

    #[test]
    fn spans_point_at_names_and_values() {
        let l = Labels::from_strs(&[("job", "x"), ("a", "")]);
        let pairs: Vec<(&[u8], &[u8])> =
            l.spans().map(|(n, v)| (&l.key()[n], &l.key()[v])).collect();
        assert_eq!(pairs, [(&b"a"[..], &b""[..]), (b"job", b"x")]);
    }

    #[test]
    fn bytewise_order_is_pairwise_order() {
        let sets: Vec<Labels> = [
            &[][..],
            &[("a", "")],
            &[("a", "1")],
            &[("a", "1"), ("b", "")],
            &[("a", "1"), ("b", "2")],
            &[("a", "10")],
            &[("a", "1\u{e9}")],
            &[("a", "\u{10348}")],
            &[("aa", "1")],
            &[("ab", "0")],
            &[("b", "")],
            &[("A", "z")],
        ]
        .iter()
        .map(|s| Labels::from_strs(s))
        .collect();
        let pairwise = |a: &Labels, b: &Labels| a.iter().cmp(b.iter());
        for a in &sets {
            for b in &sets {
                assert_eq!(a.compare(b), pairwise(a, b), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn wal_bytes_are_checked() {
        assert_eq!(Labels::from_wal(&[5, b'a']), None, "short");
        assert_eq!(Labels::from_wal(&[1, 0xff, 1, b'a']), None, "not UTF-8");
        let long = "x".repeat(300);
        let l = Labels::from_strs(&[("a", &long)]);
        let mut wal = Vec::new();
        l.write_wal(&mut wal);
        assert_eq!(
            Labels::from_wal(&wal).unwrap().get("a"),
            Some(long.as_str())
        );
    }
}
