//! HTTP listeners: remote write (`POST /api/v1/receive`) and operations (`/metrics`, probes, status).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::admission::Admission;
use crate::ingest::{Ingester, Written};
use crate::listen::BODY_READ_TIMEOUT;
use crate::metrics::Metrics;
use crate::metrics::http::{HttpLabels, Received};
use crate::replicate::Replicator;
use crate::ring::RingHolder;
use crate::status;
use crate::store::labels_api::{self, Selection};
use crate::store::remote_read::Answer;
use crate::store::{ReadError, ReadLimits, Reads, selector};
use crate::tls::{BasicAuth, CertificateField, ClientIdentity, WebConfig};
use crate::tsdb::MultiTsdb;
use crate::wire::remote_read::{
    CHUNKED_CONTENT_TYPE, MAX_READ_REQUEST, decode_request, encode_response,
};
use crate::wire::remote_write::protocol_of;
use crate::wire::{MAX_DECODED_SIZE, Protocol, SnappyError};
use crate::write_error::WriteError;

/// Largest compressed body accepted when no limit is configured, as the reference handler.
pub const MAX_COMPRESSED_SIZE: usize = 32 << 20;

/// What the handlers use: the write path, storage for status pages, the ring, metrics.
pub struct Handles {
    /// Routes, replicates and stores writes.
    pub replicator: Arc<Replicator>,
    /// The local write path, for the tenants' limits.
    pub ingester: Arc<Ingester>,
    /// Every tenant's storage, for status pages.
    pub tsdb: Arc<MultiTsdb>,
    /// The ring in force, for its status page.
    pub ring: Option<Arc<RingHolder>>,
    /// Every metric, for `/metrics` and the request metrics.
    pub metrics: Arc<Metrics>,
}

/// How requests name their tenant and replica, and how many may write at once.
pub struct HttpConfig {
    /// Header naming the tenant.
    pub tenant_header: String,
    /// Header carrying the replica number of an already-replicated write.
    pub replica_header: String,
    /// Tenant of requests without the header.
    pub default_tenant: String,
    /// Concurrent writes allowed (`write.global.max_concurrency`; 0: no bound).
    pub max_concurrency: u64,
    /// Decoded bytes of the writes worked on at once (`--receive.max-inflight-write-bytes`,
    /// resolved; 0: no bound).
    pub max_inflight_write_bytes: u64,
    /// Most series and samples one read may return.
    pub read_limits: ReadLimits,
    /// Take the tenant from this field of the client certificate, not the header.
    pub tenant_certificate_field: Option<CertificateField>,
}

/// Shared state of the HTTP handlers.
pub struct App {
    handles: Handles,
    tenant_header: HeaderName,
    replica_header: HeaderName,
    default_tenant: String,
    tenant_certificate_field: Option<CertificateField>,
    /// Bounds the writes worked on at once.
    admission: Admission,
    /// Warm batches and the bytes they retain.
    /// One status computation at a time: each walks a whole head.
    status_permit: Semaphore,
    reads: Arc<Reads>,
}

impl App {
    /// Handler state over the write path.
    pub fn new(
        handles: Handles,
        config: HttpConfig,
    ) -> Result<Self, axum::http::header::InvalidHeaderName> {
        Ok(App {
            tenant_header: HeaderName::try_from(config.tenant_header)?,
            replica_header: HeaderName::try_from(config.replica_header)?,
            default_tenant: config.default_tenant,
            tenant_certificate_field: config.tenant_certificate_field,
            admission: Admission::new(
                config.max_inflight_write_bytes,
                config.max_concurrency,
                handles.metrics.http.write_waiting(),
            ),
            status_permit: Semaphore::new(1),
            reads: Arc::new(Reads::new(Arc::clone(&handles.tsdb), config.read_limits)),
            handles,
        })
    }

    /// The read runner, shared with the Store API so both count against one bound.
    pub fn reads(&self) -> Arc<Reads> {
        Arc::clone(&self.reads)
    }
}

/// Routes of the remote-write listener: writes only. Status pages, which show label names and
/// values of every tenant, are on the operational listener alone.
pub fn remote_write_router(app: Arc<App>) -> Router {
    // On the POST handler only: a request the router refuses (405) is not a remote write.
    let record = middleware::from_fn_with_state(Arc::clone(&app), record_request);
    Router::new()
        .route("/api/v1/receive", post(receive).route_layer(record))
        .route("/api/v1/read", post(remote_read))
        .route("/api/v1/series", get(series_api))
        .route("/api/v1/labels", get(label_names_api))
        .route("/api/v1/label/{name}/values", get(label_values_api))
        .with_state(Arc::clone(&app))
        .layer(middleware::from_fn_with_state(app, tenant_from_certificate))
}

/// With `--receive.tenant-certificate-field`, the verified client certificate names the tenant
/// of every request on the remote-write port, whatever its header says (as Thanos: a client
/// cannot write or read as another tenant); no such field is a 400.
async fn tenant_from_certificate(
    State(app): State<Arc<App>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(field) = app.tenant_certificate_field else {
        return next.run(request).await;
    };
    let tenant = request
        .extensions()
        .get::<ClientIdentity>()
        .and_then(|id| id.field(field))
        .and_then(|t| HeaderValue::from_str(t).ok());
    match tenant {
        Some(tenant) => {
            request
                .headers_mut()
                .insert(app.tenant_header.clone(), tenant);
            next.run(request).await
        }
        None => (
            StatusCode::BAD_REQUEST,
            format!(
                "could not get the {} field of a client certificate: the tenant comes from it\n",
                field.as_flag_value()
            ),
        )
            .into_response(),
    }
}

/// The operational router behind `--http.config`'s basic auth, with its response headers.
pub fn with_web_config(router: Router, web: &WebConfig) -> Result<Router, String> {
    let headers = web
        .headers()
        .iter()
        .map(|(k, v)| {
            let name = HeaderName::try_from(k.as_str()).map_err(|e| format!("header {k}: {e}"))?;
            let value =
                HeaderValue::try_from(v.as_str()).map_err(|e| format!("header {k}: {e}"))?;
            Ok((name, value))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let state = Arc::new((web.basic_auth(), headers));
    Ok(router.layer(middleware::from_fn_with_state(state, web_config_layer)))
}

type WebState = Arc<(Option<Arc<BasicAuth>>, Vec<(HeaderName, HeaderValue)>)>;

async fn web_config_layer(State(state): State<WebState>, request: Request, next: Next) -> Response {
    let (auth, headers) = &*state;
    let mut response = match auth {
        Some(auth) => {
            let given = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if auth.allows(given).await {
                next.run(request).await
            } else {
                (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Basic")],
                    "Unauthorized\n",
                )
                    .into_response()
            }
        }
        None => next.run(request).await,
    };
    for (name, value) in headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

/// Records `http_requests_total` and `http_request_duration_seconds` of every remote-write
/// request, labelled with its tenant (`invalid` when the tenant header is unusable).
async fn record_request(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let tenant = match tenant_of(&app, request.headers()) {
        Ok(t) if crate::tenant::validate(&t).is_ok() => t,
        _ => "invalid".to_string(),
    };
    let in_flight = app
        .handles
        .metrics
        .http
        .in_flight("receive", "POST", &tenant);
    let response = next.run(request).await;
    drop(in_flight);
    let labels = HttpLabels {
        handler: "receive",
        code: response.status().as_u16(),
        method: "POST",
        tenant,
    };
    let received = response
        .extensions()
        .get::<Received>()
        .copied()
        .unwrap_or_default();
    app.handles
        .metrics
        .http
        .answered(&labels, start.elapsed().as_secs_f64(), received);
    response
}

/// Routes of the operational listener.
pub fn ops_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "OK" }))
        .route("/-/ready", get(ready))
        .route("/api/v1/status/tsdb", get(tsdb_status))
        .route("/api/v1/status/hashring", get(hashring_status))
        .with_state(app)
}

async fn hashring_status(State(app): State<Arc<App>>) -> Response {
    match app.handles.ring.as_ref().and_then(|r| r.status_json()) {
        Some(status) => axum::Json(status).into_response(),
        None => (StatusCode::NOT_FOUND, "no hashring in force\n").into_response(),
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.handles.metrics.encode(),
    )
        .into_response()
}

async fn ready(State(app): State<Arc<App>>) -> Response {
    if app.handles.replicator.is_ready() {
        (StatusCode::OK, "OK").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "NOT OK").into_response()
    }
}

#[derive(Deserialize)]
struct StatusParams {
    limit: Option<usize>,
    all_tenants: Option<bool>,
}

/// Most entries per list a status page returns.
const MAX_STATUS_LIMIT: usize = 1000;

async fn tsdb_status(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(params): Query<StatusParams>,
) -> Response {
    let limit = params.limit.unwrap_or(10).min(MAX_STATUS_LIMIT);
    let all = params.all_tenants.unwrap_or(false);
    let tenant = match tenant_of(&app, &headers) {
        Ok(t) => t,
        Err(Reject(code, msg)) => return (code, format!("{msg}\n")).into_response(),
    };
    // Status walks whole heads: one at a time, off the async workers, so it cannot stall writes.
    let _permit = app.status_permit.acquire().await.expect("never closed");
    let tsdb = Arc::clone(&app.handles.tsdb);
    let data = tokio::task::spawn_blocking(move || {
        if all {
            Some(
                tsdb.tenants()
                    .iter()
                    .map(|db| status::tsdb_status(db, limit))
                    .collect::<Vec<_>>(),
            )
        } else {
            tsdb.get(&tenant)
                .map(|db| vec![status::tsdb_status(&db, limit)])
        }
    })
    .await;
    // Thanos' shape: always an array of per-tenant statistics, empty for a tenant with no data.
    let body = match data {
        Ok(data) => serde_json::json!({"status": "success", "data": data.unwrap_or_default()}),
        Err(e) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("status: {e}\n")).into_response();
        }
    };
    axum::Json(body).into_response()
}

/// `POST /api/v1/read`: Prometheus remote read of the request's tenant, answered with samples or
/// streamed chunks.
async fn remote_read(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let answered = async {
        let tenant = read_tenant(&app, &headers)?;
        let too_large = || {
            Reject(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("read request larger than {MAX_READ_REQUEST} bytes"),
            )
        };
        let compressed = read_body(body, MAX_READ_REQUEST, too_large).await?;
        let request = decode_request(&compressed)
            .map_err(|e| Reject(StatusCode::BAD_REQUEST, e.to_string()))?;
        // Encoding and compression run on the read thread too, at its low priority.
        answer_read(&app, move |tsdb, limits| {
            Ok(
                match crate::store::remote_read::remote_read(tsdb, &tenant, &request, limits)? {
                    Answer::Samples(response) => (true, encode_response(&response)),
                    Answer::Chunks(frames) => (false, frames),
                },
            )
        })
        .await
    };
    match answered.await {
        Ok((true, body)) => (
            [
                (header::CONTENT_TYPE, "application/x-protobuf"),
                (header::CONTENT_ENCODING, "snappy"),
            ],
            body,
        )
            .into_response(),
        Ok((false, frames)) => {
            ([(header::CONTENT_TYPE, CHUNKED_CONTENT_TYPE)], frames).into_response()
        }
        Err(Reject(code, msg)) => (code, format!("{msg}\n")).into_response(),
    }
}

/// `GET /api/v1/series?match[]=...&start=...&end=...` in Prometheus' JSON shape.
async fn series_api(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    metadata(app, headers, query, labels_api::series).await
}

/// `GET /api/v1/labels?match[]=...` in Prometheus' JSON shape.
async fn label_names_api(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    metadata(app, headers, query, labels_api::label_names).await
}

/// `GET /api/v1/label/<name>/values?match[]=...` in Prometheus' JSON shape.
async fn label_values_api(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    metadata(
        app,
        headers,
        query,
        move |tsdb, tenant, selection, limits| {
            labels_api::label_values(tsdb, tenant, &name, selection, limits)
        },
    )
    .await
}

/// Runs one metadata request for the header's tenant off the request threads, under the read
/// concurrency bound, and answers `{"status": ..., "data": ...}` as Prometheus does.
async fn metadata<T, F>(app: Arc<App>, headers: HeaderMap, query: Option<String>, f: F) -> Response
where
    T: serde::Serialize + Send + 'static,
    F: FnOnce(&MultiTsdb, &str, &Selection, ReadLimits) -> Result<T, ReadError> + Send + 'static,
{
    let answered = async {
        let tenant = read_tenant(&app, &headers)?;
        let selection = selection_of(query.as_deref().unwrap_or(""))
            .map_err(|e| Reject(StatusCode::BAD_REQUEST, e))?;
        answer_read(&app, move |tsdb, limits| {
            f(tsdb, &tenant, &selection, limits)
        })
        .await
    };
    match answered.await {
        Ok(data) => {
            axum::Json(serde_json::json!({"status": "success", "data": data})).into_response()
        }
        Err(Reject(code, msg)) => {
            // Prometheus' error types: the request's fault, a replaying receiver, or the query.
            let kind = match code {
                StatusCode::BAD_REQUEST => "bad_data",
                StatusCode::SERVICE_UNAVAILABLE => "unavailable",
                _ => "execution",
            };
            let body = serde_json::json!({"status": "error", "errorType": kind, "error": msg});
            (code, axum::Json(body)).into_response()
        }
    }
}

/// The tenant a read is for, once the receiver has replayed its WAL (503 before).
fn read_tenant(app: &App, headers: &HeaderMap) -> Result<String, Reject> {
    let tenant = tenant_of(app, headers)?;
    crate::tenant::validate(&tenant)
        .map_err(|e| Reject(StatusCode::BAD_REQUEST, format!("invalid tenant: {e}")))?;
    if !app.handles.ingester.is_ready() {
        return Err(Reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "receiver is not ready: WAL replay in progress".into(),
        ));
    }
    Ok(tenant)
}

/// Runs a read through the shared [`Reads`] runner, its error as an HTTP answer.
async fn answer_read<T, F>(app: &App, f: F) -> Result<T, Reject>
where
    T: Send + 'static,
    F: FnOnce(&MultiTsdb, ReadLimits) -> Result<T, ReadError> + Send + 'static,
{
    app.reads.run(f).await.map_err(|e| {
        Reject(
            StatusCode::from_u16(e.http_status()).expect("valid status"),
            e.to_string(),
        )
    })
}

/// Reads a request body of at most `limit` bytes within [`BODY_READ_TIMEOUT`].
async fn read_body(
    body: Body,
    limit: usize,
    too_large: impl FnOnce() -> Reject,
) -> Result<Bytes, Reject> {
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, limit).collect());
    match read.await {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => Err(Reject(
            StatusCode::BAD_REQUEST,
            format!("reading request body: {e}"),
        )),
        Err(_) => Err(Reject(
            StatusCode::REQUEST_TIMEOUT,
            format!("request body not received within {BODY_READ_TIMEOUT:?}"),
        )),
    }
}

/// The `match[]`, `start` and `end` parameters of a metadata request.
fn selection_of(query: &str) -> Result<Selection, String> {
    let params: Vec<(String, String)> =
        serde_urlencoded::from_str(query).map_err(|e| format!("query string: {e}"))?;
    let mut selection = Selection {
        selectors: Vec::new(),
        start: i64::MIN,
        end: i64::MAX,
    };
    for (key, value) in params {
        match key.as_str() {
            "match[]" => selection.selectors.push(selector::parse(&value)?),
            "start" => selection.start = parse_time(&value)?,
            "end" => selection.end = parse_time(&value)?,
            _ => {}
        }
    }
    Ok(selection)
}

/// A time as Prometheus' API takes it: Unix seconds (fractions allowed) or RFC 3339.
fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(seconds) = s.parse::<f64>()
        && seconds.is_finite()
    {
        return Ok((seconds * 1000.0).round() as i64);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| format!("invalid time {s:?}: want Unix seconds or RFC 3339"))
}

/// The request's tenant: the tenant header, or the default tenant without one. A header that is
/// not visible ASCII is refused rather than silently stored under the default tenant.
fn tenant_of(app: &App, headers: &HeaderMap) -> Result<String, Reject> {
    match headers.get(&app.tenant_header) {
        None => Ok(app.default_tenant.clone()),
        Some(v) if v.is_empty() => Ok(app.default_tenant.clone()),
        Some(v) => v.to_str().map(str::to_string).map_err(|_| {
            Reject(
                StatusCode::BAD_REQUEST,
                format!("invalid tenant: {} header is not ASCII", app.tenant_header),
            )
        }),
    }
}

/// A failed request before or during decoding.
struct Reject(StatusCode, String);

async fn receive(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let protocol = protocol_of(ct);
    let mut received = Received::default();
    let (tenant, handled) = match tenant_of(&app, &headers) {
        Ok(tenant) => {
            let handled = handle(&app, &tenant, &headers, protocol, body, &mut received).await;
            (tenant, handled)
        }
        Err(reject) => ("invalid".to_string(), Err(reject)),
    };
    let (code, message, written) = match handled {
        Ok((written, Ok(()))) => {
            let code = match protocol {
                Some(Protocol::V2) => StatusCode::NO_CONTENT,
                _ => StatusCode::OK,
            };
            (code, String::new(), written)
        }
        Ok((written, Err(e))) => (
            StatusCode::from_u16(e.http_status()).expect("valid status"),
            e.to_string(),
            written,
        ),
        Err(Reject(code, msg)) => (code, msg, Written::default()),
    };
    // 5xx means this receiver failed (disk full, no quorum): operators must see it.
    if code.is_server_error() {
        tracing::warn!(tenant, code = code.as_u16(), message, "remote write failed");
    } else if !message.is_empty() {
        tracing::debug!(
            tenant,
            code = code.as_u16(),
            message,
            "remote write rejected"
        );
    }
    let mut response = if message.is_empty() {
        code.into_response()
    } else {
        (code, format!("{message}\n")).into_response()
    };
    if protocol == Some(Protocol::V2) {
        let h = response.headers_mut();
        for (name, n) in [
            ("x-prometheus-remote-write-samples-written", written.samples),
            (
                "x-prometheus-remote-write-histograms-written",
                written.histograms,
            ),
            (
                "x-prometheus-remote-write-exemplars-written",
                written.exemplars,
            ),
        ] {
            h.insert(name, HeaderValue::from(n));
        }
    }
    response.extensions_mut().insert(received);
    response
}

async fn handle(
    app: &App,
    tenant: &str,
    headers: &HeaderMap,
    protocol: Option<Protocol>,
    body: Body,
    received: &mut Received,
) -> Result<(Written, Result<(), WriteError>), Reject> {
    let Some(protocol) = protocol else {
        return Err(Reject(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported Content-Type: want application/x-protobuf with proto=prometheus.WriteRequest or io.prometheus.write.v2.Request".into(),
        ));
    };
    if let Some(enc) = headers.get(header::CONTENT_ENCODING)
        && !enc.as_bytes().eq_ignore_ascii_case(b"snappy")
    {
        return Err(Reject(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Encoding {enc:?}: only snappy is supported"),
        ));
    }
    if !app.handles.replicator.is_ready() {
        let e = WriteError::NotReady;
        return Err(Reject(StatusCode::SERVICE_UNAVAILABLE, e.to_string()));
    }
    let replica = match headers.get(&app.replica_header) {
        None => 0,
        Some(v) => match v.to_str().ok().and_then(|v| v.parse::<i64>().ok()) {
            Some(r) if r >= 0 => r,
            _ => {
                return Err(Reject(
                    StatusCode::BAD_REQUEST,
                    format!("invalid {} header {v:?}", app.replica_header),
                ));
            }
        },
    };
    // A configured size limit bounds the body before and after decompression, as in Thanos.
    let (limit, decoded_limit) = match app.handles.ingester.tenant_limits(tenant).size_bytes {
        0 => (MAX_COMPRESSED_SIZE, MAX_DECODED_SIZE),
        n => (n as usize, n as usize),
    };
    let too_large = |n: String| {
        Reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("write request too large: {n} bytes, limit {limit}"),
        )
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > limit
    {
        return Err(too_large(len.to_string()));
    }
    let compressed = read_body(body, limit, || too_large(format!("more than {limit}"))).await?;
    received.bytes = compressed.len() as u64;
    // Bounded after the body is in: slow senders must not hold the write slots. The weight is
    // the length the snappy header announces; a body announcing more than it may decode to is
    // refused before it queues (it would otherwise wait for the whole budget to be free).
    let announced = snap::raw::decompress_len(&compressed).unwrap_or(compressed.len());
    if announced > decoded_limit {
        return Err(too_large(format!("{announced} (decompressed)")));
    }
    let _admitted = app.admission.admit(announced).await;

    let mut batch = app.handles.replicator.batches().take();
    let decoded = match batch.decompress(&compressed, decoded_limit) {
        Err(SnappyError::TooLarge(n)) => Err(too_large(format!("{n} (decompressed)"))),
        Err(e) => Err(Reject(StatusCode::BAD_REQUEST, e.to_string())),
        Ok(()) => batch.decode(protocol).map_err(|e| {
            let e = WriteError::from(e);
            let code = StatusCode::from_u16(e.http_status()).expect("valid status");
            Reject(code, e.to_string())
        }),
    };
    if decoded.is_ok() {
        received.series = batch.series.len() as u64;
        received.samples = batch.samples.len() as u64;
    }
    let result = match decoded {
        Ok(()) => Ok(app
            .handles
            .replicator
            .write(
                tenant,
                &batch,
                0..batch.series.len(),
                protocol.into(),
                replica,
            )
            .await),
        Err(e) => Err(e),
    };
    app.handles.replicator.batches().give(batch);
    result
}
