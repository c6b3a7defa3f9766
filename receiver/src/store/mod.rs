//! The read path: answering queries over a tenant's head and blocks.
//!
//! - [`remote_read`]: Prometheus remote read (`POST /api/v1/read`).
//! - [`info`]: `thanos.info.Info/Info`, how Thanos Query discovers what a receiver holds.
//! - [`labels_api`]: Prometheus' `/api/v1/series`, `/api/v1/labels`, `/api/v1/label/<name>/values`,
//!   with [`selector`] parsing their `match[]` series selectors.
//!
//! Thanos' `thanos.Store` API is to join here, over the same selection.

pub mod info;
pub mod labels_api;
pub mod remote_read;
pub mod selector;

use crate::tsdb::Matcher;
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
}

impl ReadError {
    /// The HTTP status of the error.
    pub fn http_status(&self) -> u16 {
        match self {
            ReadError::BadRequest(_) => 400,
            ReadError::Limit(_) => 422,
            ReadError::Storage(_) => 500,
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
