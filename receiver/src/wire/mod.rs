//! Wire formats, one file per format: how bytes on the network become a [`WriteBatch`] and back.
//!
//! - [`protobuf`]: the protobuf reader and encoder helpers every format uses.
//! - [`batch`]: the decoded form of a request, flat arrays of spans into its body.
//! - [`pool`]: batches kept between requests for their memory.
//! - [`remote_write`]: Prometheus remote write 1.0 and 2.0 bodies.
//! - [`forward`]: Thanos' `thanos.WriteRequest`, the message receivers forward to each other.
//! - [`remote_read`]: Prometheus remote read requests and responses.
//! - [`info`]: Thanos' `thanos.info.Info` messages.
//! - [`store`]: Thanos' `thanos.Store` messages (`Series`, `LabelNames`, `LabelValues`).
//! - [`messages`]: prost types of those messages, for senders (tests, the load generator).
//!
//! Validation of what a request says (label rules, sample order) is ingestion's job
//! ([`crate::ingest::validate`]); here a body is only checked to be well-formed and bounded.

pub mod batch;
pub mod exemplars;
pub mod forward;
pub mod histogram;
pub mod info;
pub mod messages;
pub mod pool;
pub mod protobuf;
pub mod remote_read;
pub mod remote_write;
pub mod store;

pub use batch::{
    ExemplarRef, LabelRef, MAX_DECODED_MEMORY, MAX_DECODED_SIZE, MAX_LABELS_PER_EXEMPLAR,
    MAX_LABELS_PER_SERIES, SeriesEntry, Span, WriteBatch,
};
pub use forward::ForwardMeta;
pub use remote_write::Protocol;

/// Why a body could not be decoded; every variant means the request can never succeed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// A field runs past the end of its message.
    #[error("protobuf: message truncated")]
    Truncated,
    /// A varint is longer than 10 bytes.
    #[error("protobuf: malformed varint")]
    Varint,
    /// A wire type protobuf 3 does not use (groups).
    #[error("protobuf: unsupported wire type {0} for field {1}")]
    WireType(u8, u32),
    /// A key names field 0.
    #[error("protobuf: invalid field number 0")]
    FieldZero,
    /// A 2.0 reference points past the symbol table.
    #[error("remote write 2.0: symbol reference {0} out of range ({1} symbols)")]
    SymbolOutOfRange(u64, usize),
    /// A 2.0 series has a name without a value.
    #[error("remote write 2.0: odd number of label references")]
    OddLabelRefs,
    /// A 2.0 symbol table does not start with `""`.
    #[error("remote write 2.0: the first symbol must be the empty string")]
    FirstSymbolNotEmpty,
    /// The body is larger than a request may be.
    #[error("request too large: {0} bytes after decompression")]
    TooLarge(usize),
    /// The decoded description would exceed [`MAX_DECODED_MEMORY`].
    #[error(
        "request too large: its series, labels and samples take more than {MAX_DECODED_MEMORY} bytes decoded"
    )]
    DecodedTooLarge,
    /// A series carries more than [`MAX_LABELS_PER_SERIES`] labels.
    #[error("a series has more than {MAX_LABELS_PER_SERIES} labels")]
    TooManyLabels,
    /// A forwarded tenant name is not UTF-8.
    #[error("thanos.WriteRequest: tenant is not valid UTF-8")]
    TenantUtf8,
    /// A native histogram carries more than [`histogram::MAX_BUCKETS`] buckets or spans.
    #[error(
        "a native histogram has more than {} buckets on one side",
        histogram::MAX_BUCKETS
    )]
    TooManyBuckets,
    /// The body is the other remote-write version than its Content-Type says.
    #[error("body has no series but remote write {0} fields: is Content-Type right?")]
    WrongProtocol(&'static str),
}

impl DecodeError {
    /// Whether the request is refused for its size (413) rather than its form (400).
    pub fn is_too_large(&self) -> bool {
        matches!(
            self,
            DecodeError::TooLarge(_) | DecodeError::DecodedTooLarge
        )
    }
}

/// Why a body is not valid snappy.
#[derive(Debug, thiserror::Error)]
pub enum SnappyError {
    /// Not snappy block format.
    #[error("snappy: {0}")]
    Corrupt(snap::Error),
    /// Decompressed, the body would exceed the size limit.
    #[error("request too large: {0} bytes after decompression")]
    TooLarge(usize),
}
