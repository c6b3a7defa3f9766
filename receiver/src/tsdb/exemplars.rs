//! A tenant's exemplars: the newest `--tsdb.max-exemplars` of them in a ring buffer, as
//! Prometheus' circular exemplar storage keeps them, with the same acceptance rules: per series,
//! an exemplar must be newer than the series' newest one (an identical one is a duplicate and
//! ignored), and its labels may hold at most 128 characters in all.

use std::collections::HashMap;

use super::{Labels, Matcher};

/// Most characters (names and values together) an exemplar's labels may hold.
pub const MAX_LABEL_SET_CHARS: usize = 128;

/// Whether `e` may follow `newest` in the same series: only if newer; an identical one is a
/// duplicate.
pub fn after(newest: &Exemplar, e: &Exemplar) -> Verdict {
    if e.t > newest.t {
        Verdict::Added
    } else if e.t == newest.t
        && e.value.to_bits() == newest.value.to_bits()
        && e.labels == newest.labels
    {
        Verdict::Duplicate
    } else {
        Verdict::OutOfOrder
    }
}

/// One stored exemplar.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    /// Its own labels (e.g. `trace_id`).
    pub labels: Labels,
    /// Its value.
    pub value: f64,
    /// Milliseconds since the epoch.
    pub t: i64,
}

/// What happened to an exemplar offered to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Stored.
    Added,
    /// Identical to the series' newest: ignored.
    Duplicate,
    /// Not newer than the series' newest: refused.
    OutOfOrder,
    /// Labels longer than [`MAX_LABEL_SET_CHARS`]: refused.
    LabelsTooLong,
}

struct Entry {
    series: u64,
    exemplar: Exemplar,
}

struct SeriesState {
    labels: Labels,
    newest: Option<Exemplar>,
    /// Entries of this series in the ring; the state goes when the last one is overwritten.
    stored: usize,
}

/// The exemplars of one tenant, at most `capacity` of them; the oldest go first.
pub struct ExemplarStore {
    capacity: usize,
    ring: Vec<Entry>,
    next: usize,
    series: HashMap<u64, SeriesState>,
}

impl ExemplarStore {
    /// A store for `capacity` exemplars (0 stores nothing).
    pub fn new(capacity: usize) -> Self {
        ExemplarStore {
            capacity,
            ring: Vec::new(),
            next: 0,
            series: HashMap::new(),
        }
    }

    /// Exemplars stored now.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// What [`ExemplarStore::add`] would do with an exemplar of series `id`, without storing it.
    pub fn check(&self, id: u64, e: &Exemplar) -> Verdict {
        let chars: usize = e
            .labels
            .iter()
            .map(|(n, v)| n.chars().count() + v.chars().count())
            .sum();
        if chars > MAX_LABEL_SET_CHARS {
            return Verdict::LabelsTooLong;
        }
        match self.series.get(&id).and_then(|s| s.newest.as_ref()) {
            Some(newest) => after(newest, e),
            None => Verdict::Added,
        }
    }

    /// Stores an exemplar of series `id` (labels `series`) if [`ExemplarStore::check`] allows.
    pub fn add(&mut self, id: u64, series: &Labels, e: Exemplar) -> Verdict {
        let verdict = self.check(id, &e);
        if verdict != Verdict::Added || self.capacity == 0 {
            return verdict;
        }
        let state = self.series.entry(id).or_insert_with(|| SeriesState {
            labels: series.clone(),
            newest: None,
            stored: 0,
        });
        state.newest = Some(e.clone());
        state.stored += 1;
        let entry = Entry {
            series: id,
            exemplar: e,
        };
        if self.ring.len() < self.capacity {
            self.ring.push(entry);
        } else {
            let old = std::mem::replace(&mut self.ring[self.next], entry);
            if let Some(s) = self.series.get_mut(&old.series) {
                s.stored -= 1;
                if s.stored == 0 {
                    self.series.remove(&old.series);
                }
            }
        }
        self.next = (self.next + 1) % self.capacity;
        Verdict::Added
    }

    /// The exemplars in `[mint, maxt]` of the series that match every matcher of any of
    /// `selectors`: per series, its labels and its exemplars oldest first; series sorted.
    pub fn select(
        &self,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Vec<(Labels, Vec<Exemplar>)> {
        let mut found: HashMap<u64, Vec<Exemplar>> = HashMap::new();
        let mut matched: HashMap<u64, bool> = HashMap::new();
        for entry in &self.ring {
            let e = &entry.exemplar;
            if e.t < mint || e.t > maxt {
                continue;
            }
            let Some(state) = self.series.get(&entry.series) else {
                continue;
            };
            let ok = *matched.entry(entry.series).or_insert_with(|| {
                selectors
                    .iter()
                    .any(|ms| ms.iter().all(|m| m.matches(&state.labels)))
            });
            if ok {
                found.entry(entry.series).or_default().push(e.clone());
            }
        }
        let mut out: Vec<(Labels, Vec<Exemplar>)> = found
            .into_iter()
            .map(|(id, mut list)| {
                list.sort_by_key(|e| e.t);
                (self.series[&id].labels.clone(), list)
            })
            .collect();
        out.sort_by(|a, b| a.0.compare(&b.0));
        out
    }

    /// Oldest and newest exemplar times, if any.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let min = self.ring.iter().map(|e| e.exemplar.t).min()?;
        let max = self.ring.iter().map(|e| e.exemplar.t).max()?;
        Some((min, max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(trace: &str, value: f64, t: i64) -> Exemplar {
        Exemplar {
            labels: Labels::from_strs(&[("trace_id", trace)]),
            value,
            t,
        }
    }

    #[test]
    fn keeps_the_newest_and_applies_prometheus_rules() {
        let a = Labels::from_strs(&[("__name__", "req"), ("job", "a")]);
        let b = Labels::from_strs(&[("__name__", "req"), ("job", "b")]);
        let mut s = ExemplarStore::new(3);
        assert_eq!(s.add(1, &a, ex("x", 1.0, 10)), Verdict::Added);
        assert_eq!(s.add(1, &a, ex("x", 1.0, 10)), Verdict::Duplicate);
        assert_eq!(s.add(1, &a, ex("y", 2.0, 10)), Verdict::OutOfOrder);
        assert_eq!(s.add(1, &a, ex("y", 2.0, 5)), Verdict::OutOfOrder);
        let long = "z".repeat(MAX_LABEL_SET_CHARS);
        assert_eq!(s.add(1, &a, ex(&long, 2.0, 20)), Verdict::LabelsTooLong);
        assert_eq!(s.add(2, &b, ex("b1", 3.0, 11)), Verdict::Added);
        assert_eq!(s.add(1, &a, ex("y", 2.0, 12)), Verdict::Added);
        assert_eq!(s.len(), 3);
        // The fourth pushes out the oldest (series 1 at t=10).
        assert_eq!(s.add(2, &b, ex("b2", 4.0, 13)), Verdict::Added);
        assert_eq!(s.len(), 3);
        let all = s.select(
            &[vec![Matcher::Equal("__name__".into(), "req".into())]],
            0,
            100,
        );
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].0, a);
        assert_eq!(all[0].1, vec![ex("y", 2.0, 12)]);
        assert_eq!(all[1].1, vec![ex("b1", 3.0, 11), ex("b2", 4.0, 13)]);
        let only_b = s.select(&[vec![Matcher::Equal("job".into(), "b".into())]], 12, 100);
        assert_eq!(only_b.len(), 1);
        assert_eq!(only_b[0].1, vec![ex("b2", 4.0, 13)]);
        assert_eq!(s.time_range(), Some((11, 13)));
        // A series whose last exemplar is overwritten is forgotten.
        s.add(2, &b, ex("b3", 5.0, 14));
        s.add(2, &b, ex("b4", 6.0, 15));
        assert!(!s.series.contains_key(&1));
    }
}
