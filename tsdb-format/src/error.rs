//! The crate-wide error type.

use std::io;
use std::path::{Path, PathBuf};

use crate::chunkenc::ChunkError;

/// Everything that can go wrong reading or writing TSDB files.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation on `path` failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// A stored CRC32C does not match the data it covers.
    #[error("{what}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum {
        /// Which section or record.
        what: String,
        /// CRC read from the file.
        stored: u32,
        /// CRC of the bytes read.
        computed: u32,
    },
    /// File content violates the format.
    #[error("{what}: corrupt: {reason}")]
    Corrupt {
        /// Which file, section or record.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The caller broke a writer invariant (ordering, ranges, missing symbols, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// An XOR chunk could not be decoded.
    #[error("chunk: {0}")]
    Chunk(#[from] ChunkError),
    /// meta.json could not be encoded or parsed.
    #[error("{}: {source}", path.display())]
    Json {
        /// The meta.json path.
        path: PathBuf,
        /// Underlying error.
        source: serde_json::Error,
    },
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adapter for `map_err` that attaches the path to an I/O error.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Shorthand for [`Error::Corrupt`].
pub(crate) fn corrupt(what: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        what: what.into(),
        reason: reason.into(),
    }
}
