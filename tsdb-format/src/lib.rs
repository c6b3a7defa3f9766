//! Prometheus TSDB on-disk formats, one module per format, as Prometheus' `tsdb` package documents them.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod block;
pub mod chunkenc;
pub mod chunks;
pub mod encoding;
pub mod error;
mod fsutil;
pub mod histogram;
pub mod index;
pub mod meta;
pub mod tombstones;

pub use block::{Block, BlockWriter, SeriesSamples};
pub use error::{Error, Result};
