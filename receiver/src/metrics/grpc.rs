//! gRPC server metrics under go-grpc-prometheus' names and labels, which Thanos exposes and its
//! dashboards query: calls started, calls handled by code, and handling latency.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

/// A gRPC method: service, method and type (`unary`, `server_stream`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcCall {
    /// Full service name, e.g. `thanos.WriteableStore`.
    pub grpc_service: &'static str,
    /// Method name, e.g. `RemoteWrite`.
    pub grpc_method: &'static str,
    /// `unary` or `server_stream`.
    pub grpc_type: &'static str,
}

/// A handled call: the method and the status code it ended with.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Handled {
    grpc_service: &'static str,
    grpc_method: &'static str,
    grpc_type: &'static str,
    grpc_code: &'static str,
}

/// `grpc_server_{started,handled}_total` and `grpc_server_handling_seconds`.
#[derive(Clone)]
pub struct GrpcMetrics {
    started: Family<GrpcCall, Counter>,
    handled: Family<Handled, Counter>,
    seconds: Family<GrpcCall, Histogram, fn() -> Histogram>,
}

impl GrpcMetrics {
    /// Creates the metrics on `registry`.
    pub fn register(registry: &mut super::Registrar) -> Self {
        let m = GrpcMetrics {
            started: Family::default(),
            handled: Family::default(),
            seconds: Family::new_with_constructor(super::request_duration_histogram),
        };
        registry.register(
            "grpc_server_started",
            "gRPC calls started on the server",
            m.started.clone(),
        );
        registry.register(
            "grpc_server_handled",
            "gRPC calls completed on the server, by status code",
            m.handled.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "Time to answer a gRPC call",
            m.seconds.clone(),
        );
        m
    }

    /// A call of `call` arrived.
    pub fn started(&self, call: GrpcCall) {
        self.started.get_or_create(&call).inc();
    }

    /// A call of `call` ended with `code` after `seconds`.
    pub fn handled(&self, call: GrpcCall, code: tonic::Code, seconds: f64) {
        self.handled
            .get_or_create(&Handled {
                grpc_service: call.grpc_service,
                grpc_method: call.grpc_method,
                grpc_type: call.grpc_type,
                grpc_code: code_name(code),
            })
            .inc();
        self.seconds.get_or_create(&call).observe(seconds);
    }
}

/// The name grpc-go gives `code` (what the `grpc_code` label holds in Thanos' metrics).
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}
