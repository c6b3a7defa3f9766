//! The read path: answering queries over a tenant's head and blocks.
//!
//! - [`remote_read`]: Prometheus remote read (`POST /api/v1/read`).
//! - [`info`]: `thanos.info.Info/Info`, how Thanos Query discovers what a receiver holds.
//! - [`labels_api`]: Prometheus' `/api/v1/series`, `/api/v1/labels`, `/api/v1/label/<name>/values`,
//!   with [`selector`] parsing their `match[]` series selectors.
//!
//! - [`store_api`]: Thanos' `thanos.Store` (`Series`, `LabelNames`, `LabelValues`) for Thanos Query.
//!
//! Every read runs through [`Reads`]: on its own threads, a bounded number at once, at the lowest
//! CPU priority, so reads take what writes leave of the cores and never starve them (Thanos #8885).

pub mod exemplars;
pub mod info;
pub mod labels_api;
pub mod remote_read;
pub mod selector;
pub mod store_api;

use std::sync::{Arc, Mutex, mpsc};

use std::collections::BTreeMap;

use crate::tsdb::{Budget, Labels, Matcher, MultiTsdb, QueryError};
use crate::wire::remote_read::{LabelMatcher, MatchType};

/// Most series and samples one read may return; 0 means no limit of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadLimits {
    /// `--store.limits.request-series`.
    pub series: u64,
    /// `--store.limits.request-samples`.
    pub samples: u64,
}

/// Why a read is refused.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The request is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// The answer would exceed a read limit (422).
    #[error("{0}")]
    Limit(String),
    /// Storage failed (500).
    #[error("storage: {0}")]
    Storage(#[from] crate::tsdb::TsdbError),
    /// The read task failed (500).
    #[error("read: {0}")]
    Internal(String),
}

impl From<QueryError> for ReadError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Storage(e) => ReadError::Storage(e),
            limit => ReadError::Limit(limit.to_string()),
        }
    }
}

impl ReadLimits {
    /// The limits as a selection budget.
    pub fn budget(self) -> Budget {
        Budget {
            series: self.series,
            samples: self.samples,
        }
    }
}

/// The matchers left for a tenant's series once those on its external labels are applied, as
/// Thanos' stores do: an external-label matcher selects or deselects the tenant's data as a
/// whole (`None`: deselected).
pub fn series_matchers(
    matchers: Vec<Matcher>,
    external: &BTreeMap<String, String>,
) -> Option<Vec<Matcher>> {
    let (on_external, on_series): (Vec<Matcher>, Vec<Matcher>) = matchers
        .into_iter()
        .partition(|m| external.contains_key(m.name()));
    on_external
        .iter()
        .all(|m| m.matches_value(&external[m.name()]))
        .then_some(on_series)
}

/// A series' labels with the external labels attached (they win over series labels of the same
/// name, as in Thanos), sorted by name.
pub fn with_external<'a>(
    labels: &'a Labels,
    external: &'a BTreeMap<String, String>,
) -> BTreeMap<&'a str, &'a str> {
    let mut out: BTreeMap<&str, &str> = labels.iter().collect();
    out.extend(external.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    out
}

impl ReadError {
    /// The HTTP status of the error.
    pub fn http_status(&self) -> u16 {
        match self {
            ReadError::BadRequest(_) => 400,
            ReadError::Limit(_) => 422,
            ReadError::Storage(_) | ReadError::Internal(_) => 500,
        }
    }

    /// The gRPC status of the error.
    pub fn grpc_status(&self) -> tonic::Status {
        match self {
            ReadError::BadRequest(m) => tonic::Status::invalid_argument(m),
            ReadError::Limit(m) => tonic::Status::resource_exhausted(m),
            ReadError::Storage(_) | ReadError::Internal(_) => {
                tonic::Status::internal(self.to_string())
            }
        }
    }
}

/// Reads served at once (threads of the read pool): half the CPUs, at least one; more wait in
/// line. Each holds its whole answer in memory and takes a core while it selects, so on two
/// CPUs two broad reads left the write path no idle core (write p99 1.70 × idle).
pub fn max_concurrent_reads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// Nice value of the read threads: the lowest priority, so under contention the kernel gives the
/// write path's threads (nice 0) about 98 % of the CPU, while idle cores still serve reads fully.
const READ_NICE: i32 = 19;

type Job = Box<dyn FnOnce(&MultiTsdb, ReadLimits) + Send>;

/// Runs reads over every tenant's storage on a pool of low-priority threads, shared by the HTTP
/// read endpoints and the Store API.
pub struct Reads {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl Reads {
    /// Reads over `tsdb` within `limits`, on [`max_concurrent_reads`] threads.
    pub fn new(tsdb: Arc<MultiTsdb>, limits: ReadLimits) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..max_concurrent_reads() {
            let (rx, tsdb) = (Arc::clone(&rx), Arc::clone(&tsdb));
            std::thread::Builder::new()
                .name(format!("read-{i}"))
                .spawn(move || read_thread(&rx, &tsdb, limits))
                .expect("spawning a read thread");
        }
        Reads {
            jobs: Mutex::new(tx),
        }
    }

    /// Runs `f` on a read thread once one is free.
    pub async fn run<T, F>(&self, f: F) -> Result<T, ReadError>
    where
        T: Send + 'static,
        F: FnOnce(&MultiTsdb, ReadLimits) -> Result<T, ReadError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |tsdb, limits| {
            // A panicking read fails its request, not the thread.
            let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(tsdb, limits)))
                .unwrap_or_else(|_| Err(ReadError::Internal("the read panicked".into())));
            let _ = tx.send(answer);
        });
        self.jobs
            .lock()
            .expect("never poisoned")
            .send(job)
            .map_err(|_| ReadError::Internal("no read thread".into()))?;
        rx.await
            .map_err(|_| ReadError::Internal("the read thread stopped".into()))?
    }
}

/// A read thread: lowers its own priority, then runs jobs until the pool is dropped.
fn read_thread(jobs: &Mutex<mpsc::Receiver<Job>>, tsdb: &MultiTsdb, limits: ReadLimits) {
    // On Linux a thread ID names one thread, so this leaves the write path's threads alone.
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), READ_NICE)
    {
        tracing::warn!(error = %e, "cannot lower the priority of a read thread");
    }
    loop {
        let job = jobs.lock().expect("never poisoned").recv();
        match job {
            Ok(job) => job(tsdb, limits),
            Err(_) => return,
        }
    }
}

/// A protocol matcher as a storage matcher.
pub fn to_matcher(m: &LabelMatcher) -> Result<Matcher, ReadError> {
    let bad_regex =
        |e: regex::Error| ReadError::BadRequest(format!("matcher {}=~{:?}: {e}", m.name, m.value));
    match MatchType::try_from(m.r#type) {
        Ok(MatchType::Eq) => Ok(Matcher::Equal(m.name.clone(), m.value.clone())),
        Ok(MatchType::Neq) => Ok(Matcher::NotEqual(m.name.clone(), m.value.clone())),
        Ok(MatchType::Re) => Matcher::regex(&m.name, &m.value).map_err(bad_regex),
        Ok(MatchType::Nre) => Matcher::not_regex(&m.name, &m.value).map_err(bad_regex),
        Err(_) => Err(ReadError::BadRequest(format!(
            "unknown matcher type {}",
            m.r#type
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::TsdbOptions;

    #[tokio::test]
    async fn reads_run_at_the_lowest_priority_and_survive_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let tsdb = Arc::new(MultiTsdb::new(dir.path(), TsdbOptions::default()));
        let reads = Reads::new(tsdb, ReadLimits::default());
        let nice = reads
            .run(|_, _| {
                Ok(rustix::process::getpriority_process(Some(
                    rustix::thread::gettid(),
                )))
            })
            .await
            .unwrap();
        assert_eq!(nice.unwrap(), READ_NICE);
        let panicked = reads.run(|_, _| -> Result<(), ReadError> { panic!("boom") });
        assert!(matches!(panicked.await, Err(ReadError::Internal(_))));
        // Both threads still serve.
        for _ in 0..4 {
            assert!(reads.run(|_, limits| Ok(limits)).await.is_ok());
        }
    }
}
