//! A compact, immutable label set.
//!
//! One allocation per series: `(uvarint len, name, uvarint len, value)*`, sorted by name. The same
//! bytes are the body of a WAL series record, so logging a series copies them verbatim.

use std::cmp::Ordering;
use std::fmt;

/// A sorted label set stored as length-prefixed pairs in one boxed slice.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Labels(Box<[u8]>);

impl Labels {
    /// Builds a label set from pairs that are already sorted by name.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Self {
        let mut buf = Vec::new();
        for (n, v) in pairs {
            put_uvarint(&mut buf, n.len() as u64);
            buf.extend_from_slice(n);
            put_uvarint(&mut buf, v.len() as u64);
            buf.extend_from_slice(v);
        }
        Labels(buf.into_boxed_slice())
    }

    /// Builds a label set from string pairs, sorting them by name.
    pub fn from_strs(pairs: &[(&str, &str)]) -> Self {
        let mut sorted = pairs.to_vec();
        sorted.sort();
        Self::from_pairs(sorted.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    /// Wraps bytes in the encoded form, checking that they parse.
    pub fn from_encoded(bytes: &[u8]) -> Option<Self> {
        let mut pos = 0;
        while pos < bytes.len() {
            for _ in 0..2 {
                let (len, n) = uvarint(&bytes[pos..])?;
                pos = pos
                    .checked_add(n)?
                    .checked_add(usize::try_from(len).ok()?)?;
                if pos > bytes.len() {
                    return None;
                }
            }
        }
        Some(Labels(bytes.into()))
    }

    /// The encoded bytes.
    pub fn encoded(&self) -> &[u8] {
        &self.0
    }

    /// Iterates `(name, value)` pairs in name order.
    pub fn iter(&self) -> LabelsIter<'_> {
        LabelsIter { rest: &self.0 }
    }

    /// Number of label pairs.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether the set has no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Value of the label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Whether the set equals the given pairs, compared byte by byte without building a second set.
    #[inline]
    pub fn eq_pairs<'a>(&self, pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> bool {
        let mut rest: &[u8] = &self.0;
        for (n, v) in pairs {
            for want in [n, v] {
                // Lengths below 128 take one varint byte: the common case costs one compare.
                let (len, used) = match rest.first() {
                    Some(&b) if b < 0x80 => (b as usize, 1),
                    Some(_) => match uvarint(rest) {
                        Some((l, u)) => (l as usize, u),
                        None => return false,
                    },
                    None => return false,
                };
                if len != want.len() || rest.len() < used + len || &rest[used..used + len] != want {
                    return false;
                }
                rest = &rest[used + len..];
            }
        }
        rest.is_empty()
    }

    /// Orders label sets as Prometheus' `labels.Compare`: pairwise by name, then value; a prefix sorts first.
    pub fn compare(&self, other: &Labels) -> Ordering {
        let (mut a, mut b) = (self.iter(), other.iter());
        loop {
            match (a.next(), b.next()) {
                (None, None) => return Ordering::Equal,
                (None, Some(_)) => return Ordering::Less,
                (Some(_), None) => return Ordering::Greater,
                (Some((an, av)), Some((bn, bv))) => {
                    let o = an.cmp(bn).then_with(|| av.cmp(bv));
                    if o != Ordering::Equal {
                        return o;
                    }
                }
            }
        }
    }

    /// Heap bytes held by the set.
    pub fn heap_size(&self) -> usize {
        self.0.len()
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
    let (len, n) = uvarint(rest).expect("labels are validated on construction");
    let (s, tail) = rest[n..].split_at(len as usize);
    *rest = tail;
    // Names and values are checked as UTF-8 before a series is created.
    std::str::from_utf8(s).unwrap_or("\u{fffd}")
}

/// Appends `v` as a Go `binary.PutUvarint`.
pub fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Reads a Go uvarint, returning the value and the bytes consumed.
pub fn uvarint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &b) in buf.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_compare() {
        let a = Labels::from_strs(&[("job", "x"), ("__name__", "up")]);
        assert_eq!(a.to_string(), r#"{__name__="up", job="x"}"#);
        assert_eq!(a.get("job"), Some("x"));
        assert_eq!(a.len(), 2);
        assert_eq!(Labels::from_encoded(a.encoded()), Some(a.clone()));
        assert!(a.eq_pairs([(&b"__name__"[..], &b"up"[..]), (b"job", b"x")].into_iter()));
        assert!(!a.eq_pairs([(&b"__name__"[..], &b"up"[..])].into_iter()));
        let b = Labels::from_strs(&[("__name__", "up")]);
        assert_eq!(b.compare(&a), Ordering::Less);
        assert_eq!(a.compare(&b), Ordering::Greater);
        let c = Labels::from_strs(&[("__name__", "up"), ("job", "y")]);
        assert_eq!(a.compare(&c), Ordering::Less);
        assert_eq!(Labels::from_encoded(&[5, b'a']), None);
    }

    #[test]
    fn long_values_compare_through_multi_byte_lengths() {
        let long = "x".repeat(300);
        let l = Labels::from_strs(&[("a", &long), ("b", "y")]);
        assert!(l.eq_pairs([(&b"a"[..], long.as_bytes()), (b"b", b"y")].into_iter()));
        let other = "x".repeat(299) + "z";
        assert!(!l.eq_pairs([(&b"a"[..], other.as_bytes()), (b"b", b"y")].into_iter()));
        assert!(
            !l.eq_pairs([(&b"a"[..], long.as_bytes())].into_iter()),
            "a prefix is not equal"
        );
        assert!(
            !l.eq_pairs([(&b"a"[..], long.as_bytes()), (b"b", b"y"), (b"c", b"z")].into_iter())
        );
    }
}
