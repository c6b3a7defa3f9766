//! WAL replay into a new head.
//!
//! Series records restore series under their logged references, each given the closed chunks
//! the head chunk files still hold for it ([`Recovered`]); sample records then append only what
//! those chunks do not hold. A series' logged samples up to its newest attached chunk's end are
//! only noted (the newest becomes its last sample) in a slot beside the series, without touching
//! the series itself: a full 2 h WAL is mostly such samples, and reading each series' data for
//! each of them would miss the cache every time. The first sample the chunks do not hold (or a
//! histogram, or an out-of-order sample) hands the series over to the ordinary replay.

use std::sync::Arc;

use super::chunks_head::{Recovered, RecoveredChunk, RecoveryStats};
use super::exemplars::{Exemplar, ExemplarStore};
use super::head::{ClosedChunk, Head, MemSeries, SeriesData};
use super::wal::{Record, WalError};
use super::{Labels, labels_hash};

/// What a replay restored.
pub struct Replayed {
    /// Samples restored into the head (noted or appended).
    pub samples: u64,
    /// Closed chunks taken back from the chunk files.
    pub attached_chunks: u64,
    /// What the chunk files held.
    pub chunk_files: RecoveryStats,
    /// The newest exemplars of the WAL.
    pub exemplars: ExemplarStore,
}

/// Applies WAL records to a head, in the order they were written.
pub struct Replayer<'h> {
    head: &'h Head,
    min_valid: i64,
    future: &'h [(i64, i64)],
    opened_at: i64,
    recovered: Recovered,
    by_id: SeriesById,
    exemplars: ExemplarStore,
    samples: u64,
    attached: u64,
    /// Newest replayed sample that was not ahead of the clock at open.
    newest_present: i64,
}

impl<'h> Replayer<'h> {
    /// A replay into `head`, which takes no sample below `min_valid` or inside the `future`
    /// blocks, with the chunks `recovered` from its files.
    pub fn new(
        head: &'h Head,
        (min_valid, future): (i64, &'h [(i64, i64)]),
        opened_at: i64,
        recovered: Recovered,
        exemplars: ExemplarStore,
    ) -> Self {
        Replayer {
            head,
            min_valid,
            future,
            opened_at,
            recovered,
            by_id: SeriesById::default(),
            exemplars,
            samples: 0,
            attached: 0,
            newest_present: i64::MIN,
        }
    }

    /// Whether a block already holds `t`: such samples are not replayed into the head again.
    fn in_block(&self, t: i64) -> bool {
        t < self.min_valid || self.future.iter().any(|&(a, b)| t >= a && t < b)
    }

    fn replayed(&mut self, t: i64) {
        self.samples += 1;
        if t <= self.opened_at && t > self.newest_present {
            self.newest_present = t;
        }
    }

    /// Applies one record.
    pub fn record(&mut self, record: Record<'_>) -> Result<(), WalError> {
        let head = self.head;
        match record {
            Record::Series(series) => {
                for (id, bytes) in series {
                    let labels =
                        Labels::from_wal(bytes).ok_or(WalError::Record("malformed labels"))?;
                    let hash = labels_hash(labels.key());
                    let series = head.restore_series(id, hash, labels);
                    // A second record of the same labels maps to the first series, whose chunks
                    // are filed under the first reference.
                    let mut until = None;
                    if series.id == id {
                        let chunks =
                            attachable(self.recovered.take(id), self.min_valid, self.future);
                        head.attach_chunks(&series, chunks);
                        self.attached += chunks.len() as u64;
                        until = chunks.last().map(|c| c.max_time);
                    }
                    self.by_id.insert(id, series, until);
                }
            }
            Record::Samples(rows) => {
                for (id, t, v) in rows {
                    if self.in_block(t) {
                        continue;
                    }
                    if self.by_id.note(id, t, v) {
                        self.replayed(t);
                        continue;
                    }
                    let series = self.by_id.settled(id);
                    if replay_row(series, t, |s, d| head.replay(s, d, t, v))
                        || replay_late(series, head, t, v)
                    {
                        self.replayed(t);
                    }
                }
            }
            Record::Histograms(rows) => {
                // Only valid histograms were logged; anything else is damage, not data.
                for (id, t, h) in rows.into_iter().filter(|(_, _, h)| h.validate().is_ok()) {
                    if self.in_block(t) {
                        continue;
                    }
                    let series = self.by_id.settled(id);
                    if replay_row(series, t, |s, d| head.append_histogram(s, d, t, &h)) {
                        self.replayed(t);
                    }
                }
            }
            Record::Exemplars(rows) => {
                for (id, t, value, labels) in rows {
                    let (Some(series), Some(labels)) =
                        (self.by_id.get(id), Labels::from_wal(labels))
                    else {
                        continue;
                    };
                    self.exemplars
                        .add(id, &series.labels, Exemplar { labels, value, t });
                }
            }
        }
        Ok(())
    }

    /// Hands every series still noting over to its data and returns what was restored.
    pub fn finish(mut self) -> Replayed {
        self.by_id.settle_all();
        self.head
            .reserve_ids_through(self.recovered.max_series_ref());
        if self.attached > 0 {
            self.head.settle_replayed();
        }
        if self.newest_present > i64::MIN {
            self.head.note_present(self.newest_present);
        }
        Replayed {
            samples: self.samples,
            attached_chunks: self.attached,
            chunk_files: self.recovered.stats.clone(),
            exemplars: self.exemplars,
        }
    }
}

/// The recovered chunks of a series a replay may attach: those at or above the head's lower
/// bound `min_valid`, up to the first one that reaches below it, into a block cut ahead of the
/// clock (`future`) or spans more than a head chunk may. Samples after the last one attached are
/// replayed from the WAL.
fn attachable<'a>(
    chunks: &'a [RecoveredChunk],
    min_valid: i64,
    future: &[(i64, i64)],
) -> &'a [RecoveredChunk] {
    let start = chunks.partition_point(|c| c.max_time < min_valid);
    let clean = chunks[start..].iter().take_while(|c| {
        c.min_time >= min_valid
            && (0..=ClosedChunk::MAX_SPAN).contains(&c.max_time.saturating_sub(c.min_time))
            && !future
                .iter()
                .any(|&(a, b)| c.min_time < b && c.max_time >= a)
    });
    &chunks[start..start + clean.count()]
}

/// Replays one WAL row of `series` at `t` with `add`, unless it is not newer than the series'
/// last sample or the series' record was lost to repair (`None`); returns whether it was added.
fn replay_row(
    series: Option<&Arc<MemSeries>>,
    t: i64,
    add: impl FnOnce(&MemSeries, &mut SeriesData),
) -> bool {
    let Some(series) = series else {
        return false;
    };
    let mut data = series.data.lock();
    if data.last().is_some_and(|(last, _)| t <= last) {
        return false;
    }
    add(series, &mut data);
    true
}

/// Replays a logged float sample older than its series' newest: the append merged it inside
/// the out-of-order window, so it is merged again, whatever the window is now, unless it is
/// stored already.
fn replay_late(series: Option<&Arc<MemSeries>>, head: &Head, t: i64, v: f64) -> bool {
    let Some(series) = series else {
        return false;
    };
    let mut data = series.data.lock();
    if data.histograms.is_some() || data.last().is_none() {
        return false;
    }
    let merged = match head.float_at(series, &data, t) {
        Ok(None) => head.insert_out_of_order(series, &mut data, &[(t, v)]),
        Ok(Some(_)) => return false,
        Err(e) => Err(e),
    };
    merged
        .inspect_err(|e| tracing::error!(error = %e, "replaying a late sample failed"))
        .is_ok()
}

/// A replayed series and, while its logged samples are only noted, what was noted.
struct Slot {
    series: Arc<MemSeries>,
    noting: Option<Noting>,
}

/// Samples up to `until` (the newest attached chunk's end) are held by the chunks: the newest
/// one seen so far.
struct Noting {
    until: i64,
    last: Option<(i64, u64)>,
}

impl Slot {
    /// Ends noting: the series' data takes the newest noted sample as its last.
    fn settle(&mut self) {
        if let Some(Noting {
            last: Some((t, bits)),
            ..
        }) = self.noting.take()
        {
            Head::restore_last(&self.series, t, bits);
        }
    }
}

/// The series of a replay by WAL reference. References are handed out counting up and a samples
/// record lists them in ascending order, so most live in a vector indexed by reference: a replay
/// walks it in order, where a hash table would miss the cache on every sample.
#[derive(Default)]
struct SeriesById {
    dense: Vec<Option<Slot>>,
    sparse: hashbrown::HashMap<u64, Slot>,
    count: usize,
}

impl SeriesById {
    /// Files `series` under `id`, noting its samples up to `until` when chunks were attached.
    fn insert(&mut self, id: u64, series: Arc<MemSeries>, until: Option<i64>) {
        if let Some(slot) = self.slot_mut(id)
            && Arc::ptr_eq(&slot.series, &series)
        {
            // The same series record twice (a checkpoint and a segment): keep what was noted.
            return;
        }
        self.count += 1;
        let slot = Slot {
            series,
            noting: until.map(|until| Noting { until, last: None }),
        };
        // The vector stays within 16 slots per series seen (plus a floor): far-apart references
        // after a lot of churn go to the table.
        let bound = 16 * (self.count + 65_536);
        match usize::try_from(id).ok().filter(|&i| i < bound) {
            Some(i) => {
                if i >= self.dense.len() {
                    self.dense.resize_with(i + 1, || None);
                }
                self.dense[i] = Some(slot);
            }
            None => {
                self.sparse.insert(id, slot);
            }
        }
    }

    #[inline]
    fn slot_mut(&mut self, id: u64) -> Option<&mut Slot> {
        match usize::try_from(id).ok().and_then(|i| self.dense.get_mut(i)) {
            Some(Some(slot)) => Some(slot),
            // An empty slot may be a reference filed in the table before the vector grew.
            _ => self.sparse.get_mut(&id),
        }
    }

    /// The series filed under `id`, for what does not touch its samples.
    fn get(&self, id: u64) -> Option<&Arc<MemSeries>> {
        match usize::try_from(id).ok().and_then(|i| self.dense.get(i)) {
            Some(Some(slot)) => Some(&slot.series),
            _ => self.sparse.get(&id).map(|s| &s.series),
        }
    }

    /// Notes a float sample at `t` as the newest of series `id` when its attached chunks hold
    /// it: newer than the last noted, not past the chunks' end. `false` when the ordinary replay
    /// must take it.
    #[inline]
    fn note(&mut self, id: u64, t: i64, v: f64) -> bool {
        let Some(Noting { until, last }) = self.slot_mut(id).and_then(|s| s.noting.as_mut()) else {
            return false;
        };
        if t > *until || last.is_some_and(|(l, _)| t <= l) {
            return false;
        }
        *last = Some((t, v.to_bits()));
        true
    }

    /// The series filed under `id`, its noting ended so that its data is up to date.
    fn settled(&mut self, id: u64) -> Option<&Arc<MemSeries>> {
        let slot = self.slot_mut(id)?;
        slot.settle();
        Some(&slot.series)
    }

    /// Ends noting for every series.
    fn settle_all(&mut self) {
        for slot in self.dense.iter_mut().flatten() {
            slot.settle();
        }
        for slot in self.sparse.values_mut() {
            slot.settle();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_by_reference_finds_near_and_far_references() {
        let head = Head::new(7_200_000);
        let mut by_id = SeriesById::default();
        let series = |id: u64| {
            let labels = Labels::from_strs(&[("__name__", &id.to_string())]);
            head.restore_series(id, labels_hash(labels.key()), labels)
        };
        // A far reference first goes to the table; the vector later grows past it.
        for id in [5_000_000, 1, 2, 3, 900_000, 2_000_000, 5_000_000 / 2] {
            by_id.insert(id, series(id), None);
        }
        for id in 4..400_000 {
            by_id.insert(id, series(id), None);
        }
        by_id.insert(6_000_000, series(6_000_000), None);
        assert!(by_id.dense.len() > 5_000_000 && by_id.sparse.contains_key(&5_000_000));
        for id in [
            1, 3, 399_999, 900_000, 2_000_000, 2_500_000, 5_000_000, 6_000_000,
        ] {
            assert_eq!(by_id.get(id).map(|s| s.id), Some(id), "{id}");
        }
        for id in [0, 400_000, 4_999_999, 5_000_001, u64::MAX] {
            assert!(by_id.get(id).is_none(), "{id}");
        }
    }

    #[test]
    fn samples_the_chunks_hold_are_noted_until_the_series_is_settled() {
        let head = Head::new(7_200_000);
        let labels = Labels::from_strs(&[("__name__", "a")]);
        let series = head.restore_series(7, labels_hash(labels.key()), labels);
        let mut by_id = SeriesById::default();
        by_id.insert(7, Arc::clone(&series), Some(100));
        assert!(by_id.note(7, 10, 1.0));
        assert!(by_id.note(7, 100, 2.0));
        assert!(!by_id.note(7, 100, 2.0), "not newer than the last noted");
        assert!(!by_id.note(7, 101, 3.0), "past the chunks");
        assert!(!by_id.note(8, 1, 1.0), "unknown series");
        assert_eq!(series.data.lock().last(), None, "the series is untouched");
        // The same series record again keeps what was noted.
        by_id.insert(7, Arc::clone(&series), None);
        by_id.settled(7);
        assert_eq!(series.data.lock().last(), Some((100, 2f64.to_bits())));
        assert!(
            !by_id.note(7, 50, 1.0),
            "settled: the ordinary replay decides"
        );
    }
}
