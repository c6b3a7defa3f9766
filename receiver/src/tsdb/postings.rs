//! Postings: for each label pair, the sorted IDs of the series that carry it, so a query selects
//! its series by merging a few lists instead of testing every series (Prometheus' `MemPostings`
//! for the head, the index's postings section for a block).
//!
//! [`select`] turns matchers into IDs the way Prometheus' `PostingsForMatchers` does: a matcher
//! that rejects the empty value intersects the union of the lists of the values it accepts; one
//! that accepts it (a label may be absent) subtracts the lists of the values it rejects.

use std::borrow::Cow;
use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use roaring::RoaringTreemap;
use tsdb_format::index::IndexReader;

use super::{Matcher, MemSeries};

/// A postings list: sorted IDs, or a bitmap the index holds (tested in place, never expanded
/// unless it is the shortest list of an intersection).
pub enum List<'a> {
    /// Ascending IDs.
    Sorted(Cow<'a, [u64]>),
    /// A compressed bitmap.
    Bitmap(&'a RoaringTreemap),
}

impl List<'_> {
    fn len(&self) -> u64 {
        match self {
            List::Sorted(ids) => ids.len() as u64,
            List::Bitmap(b) => b.len(),
        }
    }

    fn to_vec(&self) -> Vec<u64> {
        match self {
            List::Sorted(ids) => ids.to_vec(),
            List::Bitmap(b) => b.iter().collect(),
        }
    }

    fn extend_into(&self, out: &mut Vec<u64>) {
        match self {
            List::Sorted(ids) => out.extend_from_slice(ids),
            List::Bitmap(b) => out.extend(b.iter()),
        }
    }

    /// Keeps the IDs of the ascending `ids` that are (`present`) or are not in the list.
    fn retain(&self, ids: &mut Vec<u64>, present: bool) {
        match self {
            List::Sorted(list) => retain_sorted(ids, list, present),
            List::Bitmap(b) => ids.retain(|id| b.contains(*id) == present),
        }
    }
}

/// An inverted index that [`select`] can query.
pub trait PostingsIndex {
    /// Why a list could not be read.
    type Error;
    /// The values label `name` takes.
    fn label_values(&self, name: &str) -> Vec<&str>;
    /// IDs of the series with `name="value"`.
    fn postings(&self, name: &str, value: &str) -> Result<List<'_>, Self::Error>;
    /// IDs of every series, ascending.
    fn all(&self) -> Result<Cow<'_, [u64]>, Self::Error>;
}

/// IDs of the series that satisfy every matcher, ascending.
pub fn select<I: PostingsIndex>(index: &I, matchers: &[Matcher]) -> Result<Vec<u64>, I::Error> {
    let mut positive: Vec<List<'_>> = Vec::new();
    let mut negative: Vec<List<'_>> = Vec::new();
    for m in matchers {
        match m {
            Matcher::Equal(n, v) if !v.is_empty() => positive.push(index.postings(n, v)?),
            Matcher::NotEqual(n, v) if !v.is_empty() => negative.push(index.postings(n, v)?),
            _ => {
                // A series without the label has the value "".
                let takes_empty = m.matches_value("");
                let values: Vec<&str> = index
                    .label_values(m.name())
                    .into_iter()
                    .filter(|v| m.matches_value(v) != takes_empty)
                    .collect();
                let list = union(index, m.name(), &values)?;
                match takes_empty {
                    true if !list.is_empty() => negative.push(List::Sorted(Cow::Owned(list))),
                    true => {}
                    false => positive.push(List::Sorted(Cow::Owned(list))),
                }
            }
        }
    }
    // The shortest list is expanded; the others only test its IDs.
    positive.sort_by_key(List::len);
    let mut ids = match positive.split_first() {
        Some((first, rest)) => {
            let mut ids = first.to_vec();
            for list in rest {
                list.retain(&mut ids, true);
            }
            ids
        }
        None => index.all()?.into_owned(),
    };
    for list in &negative {
        list.retain(&mut ids, false);
    }
    Ok(ids)
}

/// The IDs carrying any of `values` for `name`, ascending.
fn union<I: PostingsIndex>(index: &I, name: &str, values: &[&str]) -> Result<Vec<u64>, I::Error> {
    let mut ids = Vec::new();
    for v in values {
        index.postings(name, v)?.extend_into(&mut ids);
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Keeps the IDs of `ids` that are (`present`) or are not in the ascending `list`.
fn retain_sorted(ids: &mut Vec<u64>, list: &[u64], present: bool) {
    let mut from = 0;
    ids.retain(|id| {
        let found = match list[from..].binary_search(id) {
            Ok(i) => {
                from += i;
                true
            }
            Err(i) => {
                from += i;
                false
            }
        };
        found == present
    });
}

/// The IDs of a label pair that more than one series carries: a sorted vector while short,
/// a compressed bitmap past [`FEW`] (about 2 bytes per ID, far less when IDs are dense, as series
/// created together are).
#[derive(Debug)]
enum Ids {
    Few(Vec<u64>),
    Many(Box<RoaringTreemap>),
}

/// Longest list kept as a vector: past it, a bitmap is smaller.
const FEW: usize = 256;

impl Ids {
    fn insert(&mut self, id: u64) {
        match self {
            Ids::Few(few) => {
                // IDs come nearly in order, so this is nearly a push.
                let at = few.iter().rposition(|&x| x < id).map_or(0, |i| i + 1);
                if few.get(at) != Some(&id) {
                    few.insert(at, id);
                }
                if few.len() > FEW {
                    *self = Ids::Many(Box::new(few.iter().copied().collect()));
                }
            }
            Ids::Many(many) => {
                many.insert(id);
            }
        }
    }

    /// Removes the sorted `gone` IDs.
    fn remove(&mut self, gone: &[u64]) {
        match self {
            Ids::Few(few) => few.retain(|id| gone.binary_search(id).is_err()),
            Ids::Many(many) => {
                for id in gone {
                    many.remove(*id);
                }
                if many.len() <= FEW as u64 / 2 {
                    *self = Ids::Few(many.iter().collect());
                }
            }
        }
    }

    fn len(&self) -> u64 {
        match self {
            Ids::Few(few) => few.len() as u64,
            Ids::Many(many) => many.len(),
        }
    }

    fn first(&self) -> Option<u64> {
        match self {
            Ids::Few(few) => few.first().copied(),
            Ids::Many(many) => many.min(),
        }
    }

    fn as_list(&self) -> List<'_> {
        match self {
            Ids::Few(few) => List::Sorted(Cow::Borrowed(few)),
            Ids::Many(many) => List::Bitmap(many),
        }
    }
}

/// A label value and the series carrying it. The value's bytes are not copied: they are read from
/// the key of one series that carries it (the owner). A value of a high-cardinality label usually
/// has only its owner, and then costs one 24-byte table entry and no allocation.
struct Value {
    owner: Arc<MemSeries>,
    at: u32,
    len: u32,
    /// Every ID, owner's included, once another series shares the value.
    shared: Option<Box<Ids>>,
}

impl Value {
    fn new(owner: &Arc<MemSeries>, span: std::ops::Range<usize>) -> Self {
        Value {
            owner: Arc::clone(owner),
            at: span.start as u32,
            len: span.len() as u32,
            shared: None,
        }
    }

    fn bytes(&self) -> &[u8] {
        let at = self.at as usize;
        &self.owner.labels.key()[at..at + self.len as usize]
    }

    fn ids(&self) -> List<'_> {
        match &self.shared {
            None => List::Sorted(Cow::Owned(vec![self.owner.id])),
            Some(ids) => ids.as_list(),
        }
    }

    fn insert(&mut self, id: u64) {
        match &mut self.shared {
            None if id == self.owner.id => {}
            None => {
                let mut few = vec![self.owner.id, id];
                few.sort_unstable();
                self.shared = Some(Box::new(Ids::Few(few)));
            }
            Some(ids) => ids.insert(id),
        }
    }

    /// Removes the sorted `gone` IDs, handing the bytes to a series that stays when the owner
    /// leaves (`series` finds it by ID); `false` when no series is left.
    fn remove(&mut self, gone: &[u64], name: &[u8], series: &[(u64, Arc<MemSeries>)]) -> bool {
        let Some(ids) = &mut self.shared else {
            return gone.binary_search(&self.owner.id).is_err();
        };
        ids.remove(gone);
        let (Some(first), len) = (ids.first(), ids.len()) else {
            return false;
        };
        if gone.binary_search(&self.owner.id).is_ok() {
            let i = series
                .binary_search_by_key(&first, |(x, _)| *x)
                .expect("indexed IDs are in the series list");
            let owner = &series[i].1;
            let key = owner.labels.key();
            let (_, span) = owner
                .labels
                .spans()
                .find(|(n, _)| &key[n.clone()] == name)
                .expect("the series carries the label");
            let shared = self.shared.take();
            *self = Value::new(owner, span);
            self.shared = shared;
        }
        if len == 1 {
            self.shared = None;
        }
        true
    }
}

/// The values of one label name.
type Values = HashTable<Value>;

/// The head's inverted index, and its series by ID.
#[derive(Default)]
pub struct MemPostings {
    hasher: DefaultHashBuilder,
    labels: HashMap<Box<[u8]>, Values>,
    /// Every series, ascending by ID.
    series: Vec<(u64, Arc<MemSeries>)>,
}

impl MemPostings {
    /// Adds a series under each of its label pairs.
    pub fn add(&mut self, series: &Arc<MemSeries>) {
        let id = series.id;
        let key = series.labels.key();
        let hasher = &self.hasher;
        for (n, v) in series.labels.spans() {
            let (name, value) = (&key[n], &key[v.clone()]);
            if !self.labels.contains_key(name) {
                self.labels.insert(name.into(), Values::new());
            }
            let values = self.labels.get_mut(name).expect("inserted above");
            let hash = hasher.hash_one(value);
            match values.find_mut(hash, |e| e.bytes() == value) {
                Some(e) => e.insert(id),
                None => {
                    values
                        .insert_unique(hash, Value::new(series, v), |e| hasher.hash_one(e.bytes()));
                }
            }
        }
        let at = self
            .series
            .iter()
            .rposition(|(x, _)| *x < id)
            .map_or(0, |i| i + 1);
        if self.series.get(at).is_none_or(|(x, _)| *x != id) {
            self.series.insert(at, (id, Arc::clone(series)));
        }
    }

    /// Removes series from every list in one pass per list touched.
    pub fn remove(&mut self, removed: &[Arc<MemSeries>]) {
        if removed.is_empty() {
            return;
        }
        let mut by_pair: std::collections::HashMap<(&str, &str), Vec<u64>> =
            std::collections::HashMap::new();
        for s in removed {
            for pair in s.labels.iter() {
                by_pair.entry(pair).or_default().push(s.id);
            }
        }
        let mut gone: Vec<u64> = removed.iter().map(|s| s.id).collect();
        gone.sort_unstable();
        let (hasher, labels, series) = (&self.hasher, &mut self.labels, &self.series);
        for ((n, v), mut ids) in by_pair {
            ids.sort_unstable();
            let Some(values) = labels.get_mut(n.as_bytes()) else {
                continue;
            };
            let hash = hasher.hash_one(v.as_bytes());
            if let Ok(mut entry) = values.find_entry(hash, |e| e.bytes() == v.as_bytes())
                && !entry.get_mut().remove(&ids, n.as_bytes(), series)
            {
                entry.remove();
            }
            if values.is_empty() {
                labels.remove(n.as_bytes());
            }
        }
        self.series
            .retain(|(id, _)| gone.binary_search(id).is_err());
    }

    /// The series of ascending `ids` that are still indexed.
    pub fn series(&self, ids: &[u64]) -> Vec<Arc<MemSeries>> {
        let mut out = Vec::with_capacity(ids.len());
        let mut from = 0;
        for id in ids {
            match self.series[from..].binary_search_by_key(id, |(x, _)| *x) {
                Ok(i) => {
                    from += i;
                    out.push(Arc::clone(&self.series[from].1));
                }
                Err(i) => from += i,
            }
        }
        out
    }

    fn values(&self, name: &str) -> Option<&Values> {
        self.labels.get(name.as_bytes())
    }
}

impl PostingsIndex for MemPostings {
    type Error = std::convert::Infallible;

    fn label_values(&self, name: &str) -> Vec<&str> {
        self.values(name)
            .map(|values| {
                values
                    .iter()
                    .filter_map(|v| std::str::from_utf8(v.bytes()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn postings(&self, name: &str, value: &str) -> Result<List<'_>, Self::Error> {
        let hash = self.hasher.hash_one(value.as_bytes());
        Ok(self
            .values(name)
            .and_then(|values| values.find(hash, |e| e.bytes() == value.as_bytes()))
            .map_or(List::Sorted(Cow::Borrowed(&[])), Value::ids))
    }

    fn all(&self) -> Result<Cow<'_, [u64]>, Self::Error> {
        Ok(Cow::Owned(self.series.iter().map(|(id, _)| *id).collect()))
    }
}

impl PostingsIndex for IndexReader {
    type Error = tsdb_format::Error;

    fn label_values(&self, name: &str) -> Vec<&str> {
        IndexReader::label_values(self, name)
    }

    fn postings(&self, name: &str, value: &str) -> Result<List<'_>, Self::Error> {
        let ids = IndexReader::postings(self, name, value)?;
        Ok(List::Sorted(Cow::Owned(
            ids.into_iter().map(u64::from).collect(),
        )))
    }

    fn all(&self) -> Result<Cow<'_, [u64]>, Self::Error> {
        let ids = self.all_postings()?;
        Ok(Cow::Owned(ids.into_iter().map(u64::from).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::{Head, Labels, labels_hash};

    fn head_with(sets: &[&[(&str, &str)]]) -> Head {
        let head = Head::new(7_200_000);
        for set in sets {
            let labels = Labels::from_strs(set);
            head.get_or_create(labels_hash(labels.key()), labels.key());
        }
        head
    }

    fn jobs(head: &Head, matchers: &[Matcher]) -> Vec<String> {
        head.select(matchers)
            .iter()
            .map(|s| s.labels.get("job").unwrap_or("-").to_string())
            .collect()
    }

    #[test]
    fn matchers_select_as_promql() {
        let head = head_with(&[
            &[("__name__", "up"), ("job", "api")],
            &[("__name__", "up"), ("job", "web")],
            &[("__name__", "up")],
            &[("__name__", "down"), ("job", "api")],
        ]);
        let up = Matcher::Equal("__name__".into(), "up".into());
        let cases: Vec<(Vec<Matcher>, Vec<&str>)> = vec![
            (vec![up.clone()], vec!["-", "api", "web"]),
            (
                vec![up.clone(), Matcher::NotEqual("job".into(), "api".into())],
                vec!["-", "web"],
            ),
            (
                vec![up.clone(), Matcher::Equal("job".into(), String::new())],
                vec!["-"],
            ),
            (
                vec![up.clone(), Matcher::NotEqual("job".into(), String::new())],
                vec!["api", "web"],
            ),
            (
                vec![up.clone(), Matcher::regex("job", "a.*|w.*").unwrap()],
                vec!["api", "web"],
            ),
            (
                vec![up.clone(), Matcher::not_regex("job", "a.*").unwrap()],
                vec!["-", "web"],
            ),
            (
                vec![up.clone(), Matcher::regex("job", ".*").unwrap()],
                vec!["-", "api", "web"],
            ),
            (
                vec![Matcher::regex("job", ".+").unwrap()],
                vec!["api", "api", "web"],
            ),
            (
                vec![Matcher::NotEqual("job".into(), "api".into())],
                vec!["-", "web"],
            ),
            (vec![Matcher::Equal("job".into(), "none".into())], vec![]),
            (vec![], vec!["-", "api", "api", "web"]),
        ];
        for (matchers, want) in cases {
            let mut got = jobs(&head, &matchers);
            got.sort();
            assert_eq!(got, want, "{matchers:?}");
            // The index agrees with testing every series.
            let scanned = head
                .all_series()
                .iter()
                .filter(|s| matchers.iter().all(|m| m.matches(&s.labels)))
                .count();
            assert_eq!(scanned, want.len(), "{matchers:?}");
        }
    }

    #[test]
    fn bitmap_lists_intersect_and_subtract_in_place() {
        let head = Head::new(7_200_000);
        for i in 0..3 * FEW {
            let (i, parity) = (i.to_string(), ["even", "odd"][i % 2]);
            let labels = Labels::from_strs(&[("job", "big"), ("i", &i), ("parity", parity)]);
            head.get_or_create(labels_hash(labels.key()), labels.key());
        }
        assert!(matches!(
            head.postings().postings("job", "big").unwrap(),
            List::Bitmap(_)
        ));
        let count = |m: &[Matcher]| head.select(m).len();
        let big = Matcher::Equal("job".into(), "big".into());
        let one = Matcher::Equal("i".into(), "7".into());
        assert_eq!(count(&[big.clone(), one.clone()]), 1);
        let even = Matcher::Equal("parity".into(), "even".into());
        assert_eq!(count(&[big.clone(), even.clone()]), 3 * FEW / 2);
        assert_eq!(count(&[one, even.clone()]), 0);
        let not_even = Matcher::NotEqual("parity".into(), "even".into());
        assert_eq!(count(&[big, not_even]), 3 * FEW / 2);
    }

    #[test]
    fn removed_series_leave_the_index() {
        let head = head_with(&[
            &[("__name__", "up"), ("pod", "a")],
            &[("__name__", "up"), ("pod", "b")],
        ]);
        let gone = head.select(&[Matcher::Equal("pod".into(), "a".into())]);
        assert_eq!(gone.len(), 1);
        head.remove_if_empty(&gone[0]);
        assert!(
            head.select(&[Matcher::Equal("pod".into(), "a".into())])
                .is_empty()
        );
        assert_eq!(
            head.select(&[Matcher::Equal("__name__".into(), "up".into())])
                .len(),
            1
        );
        let index = head.postings();
        assert!(index.label_values("pod") == ["b"]);
        // `up` was read from the removed series' key; it now reads from the one left, and the
        // index holds no reference to the removed series.
        assert!(index.label_values("__name__") == ["up"]);
        assert_eq!(index.postings("__name__", "up").unwrap().len(), 1);
        assert_eq!(Arc::strong_count(&gone[0]), 1);
    }

    #[test]
    fn sorted_list_operations() {
        let mut ids = vec![1, 3, 5, 7, 9];
        retain_sorted(&mut ids, &[3, 4, 9], true);
        assert_eq!(ids, [3, 9]);
        let mut ids = vec![1, 3, 5, 7, 9];
        retain_sorted(&mut ids, &[3, 4, 9], false);
        assert_eq!(ids, [1, 5, 7]);
        let mut list = Ids::Few(vec![5]);
        for id in [1, 9, 5, 7] {
            list.insert(id);
        }
        assert_eq!(list.as_list().to_vec(), [1, 5, 7, 9]);
        list.remove(&[1, 5, 9]);
        assert_eq!((list.first(), list.len()), (Some(7), 1));
        // A long list becomes a bitmap and a short one again as series leave.
        let mut list = Ids::Few(vec![0]);
        for id in (1..=2 * FEW as u64).rev() {
            list.insert(id);
        }
        assert!(matches!(list, Ids::Many(_)));
        assert_eq!(list.as_list().len(), 2 * FEW as u64 + 1);
        let gone: Vec<u64> = (0..2 * FEW as u64).collect();
        list.remove(&gone);
        assert!(matches!(&list, Ids::Few(few) if few[..] == [2 * FEW as u64]));
    }
}
