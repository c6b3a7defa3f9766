//! The write-error taxonomy and every mapping of it: HTTP status, quorum class, gRPC code.
//!
//! Each failure of a write is one [`WriteError`]; its [`Class`] decides quorums; the class maps to
//! the gRPC code a peer answers and back, so an error keeps its meaning across a forward: a
//! conflict on a replica is a conflict (409) at the client, an unreachable peer is unavailable
//! (503), never a 500.

use tonic::Code;

use crate::replicate::quorum::Class;
use crate::tenant::TenantError;
use crate::tsdb::TsdbError;
use crate::wire::DecodeError;

/// Why a write was not (fully) stored; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// 503: the WAL is still being replayed.
    #[error("receiver is not ready: WAL replay in progress")]
    NotReady,
    /// 400: the tenant name is unusable.
    #[error("invalid tenant: {0}")]
    InvalidTenant(#[from] TenantError),
    /// 413: a request limit was exceeded.
    #[error("{0}")]
    TooLarge(String),
    /// 429: the tenant's head holds as many series as allowed, or the receiver as many tenants.
    #[error("{0}")]
    HeadSeriesLimit(String),
    /// 400: some series or samples can never be accepted.
    #[error("{0}")]
    Invalid(String),
    /// 409: some samples conflict with stored ones (out of order, duplicate timestamp).
    #[error("{0}")]
    Conflict(String),
    /// 500: storage failed; retrying may succeed.
    #[error("storage: {0}")]
    Storage(#[from] TsdbError),
    /// 503: replication could not reach a quorum; retrying may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// 500: anything else.
    #[error("{0}")]
    Internal(String),
}

impl From<DecodeError> for WriteError {
    fn from(e: DecodeError) -> Self {
        if e.is_too_large() {
            WriteError::TooLarge(e.to_string())
        } else {
            WriteError::Invalid(e.to_string())
        }
    }
}

impl WriteError {
    /// The HTTP status code of the error.
    pub fn http_status(&self) -> u16 {
        match self {
            WriteError::NotReady | WriteError::Unavailable(_) => 503,
            WriteError::InvalidTenant(_) | WriteError::Invalid(_) => 400,
            WriteError::TooLarge(_) => 413,
            WriteError::HeadSeriesLimit(_) => 429,
            WriteError::Conflict(_) => 409,
            WriteError::Storage(_) | WriteError::Internal(_) => 500,
        }
    }

    /// The quorum class of the error.
    pub fn class(&self) -> Class {
        match self {
            WriteError::NotReady | WriteError::Unavailable(_) => Class::Unavailable,
            WriteError::HeadSeriesLimit(_) => Class::Limited,
            WriteError::Conflict(_) => Class::Conflict,
            WriteError::InvalidTenant(_) | WriteError::Invalid(_) | WriteError::TooLarge(_) => {
                Class::Invalid
            }
            WriteError::Storage(_) | WriteError::Internal(_) => Class::Internal,
        }
    }

    /// The gRPC status a peer answers for the error, with Thanos' codes.
    pub fn grpc_status(&self) -> tonic::Status {
        tonic::Status::new(code_of_class(self.class()), self.to_string())
    }

    /// The error a failed quorum of `class` answers.
    pub fn of_class(class: Class, message: String) -> WriteError {
        match class {
            Class::Unavailable => WriteError::Unavailable(message),
            Class::Limited => WriteError::HeadSeriesLimit(message),
            Class::Conflict => WriteError::Conflict(message),
            Class::Invalid => WriteError::Invalid(message),
            Class::Internal => WriteError::Internal(message),
        }
    }
}

/// The gRPC code of a quorum class.
fn code_of_class(class: Class) -> Code {
    match class {
        Class::Unavailable => Code::Unavailable,
        Class::Limited => Code::ResourceExhausted,
        Class::Conflict => Code::AlreadyExists,
        Class::Invalid => Code::InvalidArgument,
        Class::Internal => Code::Internal,
    }
}

/// The quorum class of a peer's answer. A peer's handler sends only the codes of
/// [`code_of_class`]; a reset connection reaches tonic's client as `Unknown`, so it counts as the
/// peer being unavailable, like a refused connection or a timeout.
pub fn class_of_code(code: Code) -> Class {
    match code {
        Code::AlreadyExists => Class::Conflict,
        Code::InvalidArgument => Class::Invalid,
        Code::ResourceExhausted => Class::Limited,
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::Aborted
        | Code::Unknown => Class::Unavailable,
        _ => Class::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_error() -> Vec<WriteError> {
        vec![
            WriteError::NotReady,
            WriteError::InvalidTenant(TenantError::Empty),
            WriteError::TooLarge("big".into()),
            WriteError::HeadSeriesLimit("full".into()),
            WriteError::Invalid("bad".into()),
            WriteError::Conflict("old".into()),
            WriteError::Storage(TsdbError::Block {
                path: "/x".into(),
                message: "disk full".into(),
            }),
            WriteError::Unavailable("down".into()),
            WriteError::Internal("bug".into()),
        ]
    }

    #[test]
    fn every_error_has_the_status_the_readme_promises() {
        let statuses: Vec<u16> = every_error().iter().map(WriteError::http_status).collect();
        assert_eq!(statuses, [503, 400, 413, 429, 400, 409, 500, 503, 500]);
    }

    #[test]
    fn an_error_keeps_its_meaning_across_a_forward() {
        for e in every_error() {
            let answered = e.grpc_status();
            let class = class_of_code(answered.code());
            assert_eq!(class, e.class(), "{e:?}");
            // The client sees the status of the class a peer's error falls in.
            let at_client = WriteError::of_class(class, answered.message().to_string());
            let expected = match e.http_status() {
                413 => 400, // a peer's size refusal is the request's fault: 400 at the client
                s => s,
            };
            assert_eq!(at_client.http_status(), expected, "{e:?}");
        }
    }

    #[test]
    fn transport_failures_are_unavailable_not_internal() {
        for code in [
            Code::Unknown,
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Cancelled,
        ] {
            assert_eq!(class_of_code(code), Class::Unavailable, "{code:?}");
            assert_eq!(
                WriteError::of_class(class_of_code(code), String::new()).http_status(),
                503
            );
        }
    }

    #[test]
    fn decode_errors_are_refusals_by_size_or_form() {
        assert_eq!(
            WriteError::from(DecodeError::DecodedTooLarge).http_status(),
            413
        );
        assert_eq!(WriteError::from(DecodeError::Truncated).http_status(), 400);
    }
}
