//! Chunk encodings (Prometheus' `tsdb/chunkenc`): XOR floats (1), integer histograms (2) and
//! float histograms (3), each a self-describing byte string that starts with a u16 sample count.

mod bstream;
mod float_histogram;
mod histogram;
mod histogram_meta;
mod layout_ops;
mod varbit;
mod xor;

pub use float_histogram::{FloatHistogramAppender, FloatHistogramIter, iter_float_histogram};
pub use histogram::{HistogramAppender, HistogramIter, Placement, iter_histogram};
pub use histogram_meta::CounterResetHeader;
pub use xor::{XorAppender, XorIter, iter_xor};

use thiserror::Error;

/// Chunk encoding byte of XOR float chunks in segment files.
pub const ENCODING_XOR: u8 = 1;
/// Chunk encoding byte of integer histogram chunks.
pub const ENCODING_HISTOGRAM: u8 = 2;
/// Chunk encoding byte of float histogram chunks.
pub const ENCODING_FLOAT_HISTOGRAM: u8 = 3;

/// Why a chunk could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChunkError {
    /// Fewer than the two header bytes holding the sample count.
    #[error("chunk is {0} bytes, shorter than its 2-byte header")]
    MissingHeader(usize),
    /// The bit stream ended before the header's sample count was reached.
    #[error("chunk data ends after {read} of {expected} samples")]
    Truncated {
        /// Samples decoded successfully.
        read: u16,
        /// Sample count announced by the header.
        expected: u16,
    },
    /// A field holds a value no valid encoder produces.
    #[error("corrupt chunk at sample {sample}: {reason}")]
    Corrupt {
        /// Index of the sample being decoded.
        sample: u16,
        /// What was wrong.
        reason: &'static str,
    },
}

/// The first sample's timestamp of a chunk of any supported encoding.
pub fn first_time(encoding: u8, data: &[u8]) -> Option<i64> {
    match encoding {
        ENCODING_XOR => iter_xor(data).next().map(|(t, _)| t),
        ENCODING_HISTOGRAM => iter_histogram(data).next().map(|(t, _)| t),
        ENCODING_FLOAT_HISTOGRAM => iter_float_histogram(data).next().map(|(t, _)| t),
        _ => None,
    }
}

/// Returns the sample count stored in a chunk's header.
pub fn num_samples(data: &[u8]) -> Result<u16, ChunkError> {
    match data {
        [a, b, ..] => Ok(u16::from_be_bytes([*a, *b])),
        _ => Err(ChunkError::MissingHeader(data.len())),
    }
}
