//! Bucket-layout arithmetic for histogram chunks: the union of two layouts, a histogram's
//! buckets re-laid into a wider layout, and the bucket-wise counter-reset test.

use super::histogram::Placement;
use super::histogram_meta::{CounterResetHeader, Layout};
use crate::histogram::{CounterResetHint, Span, bucket_indices, spans_from_indices};

/// Most buckets a chunk's layout may hold on one side: half of what a reader accepts, so every
/// chunk written can be read back however its layout grew.
const MAX_CHUNK_BUCKETS: usize = 1 << 15;

/// Whether widening a chunk layout of `len` buckets by `spans` could pass [`MAX_CHUNK_BUCKETS`].
pub(crate) fn too_wide(len: usize, spans: &[Span]) -> bool {
    len + spans.iter().map(|s| s.length as usize).sum::<usize>() > MAX_CHUNK_BUCKETS
}

/// The layout holding every bucket of `a` and of `b`; `a` itself when it already does.
pub(crate) fn union(a: &[Span], b: &[Span]) -> Vec<Span> {
    if a == b {
        return a.to_vec();
    }
    let ia: Vec<i64> = bucket_indices(a).collect();
    let ib: Vec<i64> = bucket_indices(b).collect();
    let mut merged = Vec::with_capacity(ia.len() + ib.len());
    let (mut i, mut j) = (0, 0);
    while i < ia.len() || j < ib.len() {
        let next = match (ia.get(i), ib.get(j)) {
            (Some(&x), Some(&y)) if x == y => {
                i += 1;
                j += 1;
                x
            }
            (Some(&x), Some(&y)) if x < y => {
                i += 1;
                x
            }
            (Some(&x), None) => {
                i += 1;
                x
            }
            (_, Some(&y)) => {
                j += 1;
                y
            }
            (None, None) => unreachable!("loop condition"),
        };
        merged.push(next);
    }
    if merged == ia {
        return a.to_vec();
    }
    spans_from_indices(&merged)
}

/// Absolute counts of `from` placed at their indices in `to` (a superset), zero elsewhere.
fn relay<T: Copy + Default>(from: &[Span], counts: &[T], to: &[Span]) -> Vec<T> {
    let mut out = Vec::with_capacity(counts.len());
    let mut src = bucket_indices(from).zip(counts.iter().copied()).peekable();
    for idx in bucket_indices(to) {
        match src.peek() {
            Some(&(i, c)) if i == idx => {
                out.push(c);
                src.next();
            }
            _ => out.push(T::default()),
        }
    }
    out
}

/// Delta-coded integer buckets of `from` re-laid into `to`, delta-coded again.
pub(crate) fn expand_deltas(from: &[Span], deltas: &[i64], to: &[Span]) -> Vec<i64> {
    let absolute: Vec<i64> = cumulative(deltas).collect();
    let mut prev = 0i64;
    relay(from, &absolute, to)
        .into_iter()
        .map(|a| {
            let d = a.wrapping_sub(prev);
            prev = a;
            d
        })
        .collect()
}

/// Absolute float buckets of `from` re-laid into `to`.
pub(crate) fn expand_floats(from: &[Span], counts: &[f64], to: &[Span]) -> Vec<f64> {
    relay(from, counts, to)
}

/// Absolute counts of delta-coded integer buckets.
pub(crate) fn cumulative(deltas: &[i64]) -> impl Iterator<Item = i64> + '_ {
    deltas.iter().scan(0i64, |c, &d| {
        *c = c.wrapping_add(d);
        Some(*c)
    })
}

/// Whether any bucket's absolute count went down from `old` to `new` (a bucket missing on
/// one side counts as empty).
pub(crate) fn decreased<T: Copy + Default + PartialOrd>(
    old_spans: &[Span],
    old: impl IntoIterator<Item = T>,
    new_spans: &[Span],
    new: impl IntoIterator<Item = T>,
) -> bool {
    let mut n = bucket_indices(new_spans).zip(new).peekable();
    for (idx, before) in bucket_indices(old_spans).zip(old) {
        while n.peek().is_some_and(|&(i, _)| i < idx) {
            n.next();
        }
        let after = match n.peek() {
            Some(&(i, c)) if i == idx => c,
            _ => T::default(),
        };
        if after < before {
            return true;
        }
    }
    false
}

/// What deciding a histogram's chunk needs of the histogram, whatever its count type.
pub(crate) struct Shape<'a> {
    pub hint: CounterResetHint,
    pub stale: bool,
    pub schema: i32,
    pub zero_threshold: f64,
    pub custom_values: &'a [f64],
    pub positive_spans: &'a [Span],
    pub negative_spans: &'a [Span],
}

/// Where a histogram of shape `h` goes after a chunk of `num` samples with `header` and
/// `layout` whose last sample was a stale marker if `last_stale`, as Prometheus' `Appendable`
/// decides; `reset` tells, for counters of the same layout, whether a count went down.
pub(crate) fn placement(
    (num, header, last_stale): (u16, CounterResetHeader, bool),
    layout: &Layout,
    h: Shape<'_>,
    reset: impl FnOnce() -> bool,
) -> Placement {
    let gauge = h.hint == CounterResetHint::Gauge;
    let fresh = if gauge {
        CounterResetHeader::Gauge
    } else {
        CounterResetHeader::Unknown
    };
    if num == 0 {
        return Placement::Append;
    }
    if gauge != (header == CounterResetHeader::Gauge) {
        return Placement::NewChunk(fresh);
    }
    if h.stale {
        return Placement::Append;
    }
    if last_stale
        || h.schema != layout.schema
        || h.zero_threshold.to_bits() != layout.zero_threshold.to_bits()
        || h.custom_values != layout.custom_values
        || too_wide(layout.positive_len(), h.positive_spans)
        || too_wide(layout.negative_len(), h.negative_spans)
    {
        return Placement::NewChunk(fresh);
    }
    if gauge {
        return Placement::Append;
    }
    if h.hint == CounterResetHint::CounterReset || reset() {
        return Placement::NewChunk(CounterResetHeader::CounterReset);
    }
    Placement::Append
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[(i32, u32)]) -> Vec<Span> {
        v.iter()
            .map(|&(offset, length)| Span { offset, length })
            .collect()
    }

    #[test]
    fn union_keeps_the_wider_layout_as_is() {
        let a = s(&[(0, 2), (0, 1)]);
        assert_eq!(union(&a, &s(&[(1, 1)])), a);
        assert_eq!(union(&s(&[(0, 1)]), &s(&[(2, 1)])), s(&[(0, 1), (1, 1)]));
        assert_eq!(union(&s(&[(-1, 1)]), &s(&[(0, 2)])), s(&[(-1, 3)]));
        assert_eq!(union(&[], &s(&[(3, 1)])), s(&[(3, 1)]));
    }

    #[test]
    fn expansion_inserts_empty_buckets() {
        // Buckets 0 and 2 with counts 3 and 5 -> deltas 3, 2; into 0..=2 -> 3, 0, 5.
        let got = expand_deltas(&s(&[(0, 1), (1, 1)]), &[3, 2], &s(&[(0, 3)]));
        assert_eq!(got, vec![3, -3, 5]);
        let got = expand_floats(&s(&[(1, 1)]), &[2.0], &s(&[(0, 3)]));
        assert_eq!(got, vec![0.0, 2.0, 0.0]);
    }

    #[test]
    fn decrease_is_found_in_any_bucket() {
        let old = s(&[(0, 2)]);
        assert!(!decreased(&old, [1, 2], &s(&[(0, 3)]), [1, 2, 0]));
        assert!(decreased(&old, [1, 2], &s(&[(0, 2)]), [1, 1]));
        // A bucket that disappears went to zero.
        assert!(decreased(&old, [1, 2], &s(&[(0, 1)]), [1]));
        assert!(!decreased(&old, [1, 0], &s(&[(0, 1)]), [1]));
    }
}
