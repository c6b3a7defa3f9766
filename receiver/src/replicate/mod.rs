//! The write path of a receiver in a ring: route each series to its replicas, write the local share
//! directly and the rest to peers over gRPC in parallel, and answer as soon as a quorum decides.
//!
//! Modes, as Thanos: with a ring and `--receive.local-endpoint` a receiver routes and ingests; with a
//! ring and no local endpoint it only routes; with no ring it only ingests. Peer requests that are
//! still running when the answer goes out are not cancelled, so a slow replica still gets its copy.

pub mod quorum;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use crate::grpc::{self, Forward};
use crate::ingest::validate::Rules;
use crate::ingest::{Ingester, Written};
use crate::metrics::ReplicationMetrics;
use crate::ring::{RingHolder, RingState};
use crate::tls::{ClientTls, PeerConnector};
use crate::wire::pool::BatchPool;
use crate::wire::{WriteBatch, forward};
use crate::write_error::{WriteError, class_of_code};
use quorum::{Class, Decision, QuorumTracker};

/// Replication settings.
#[derive(Debug, Clone)]
pub struct ReplicationConfig {
    /// Copies of each series.
    pub replication_factor: usize,
    /// This receiver's address as it appears in the ring; `None` for a router-only receiver.
    pub local_endpoint: Option<String>,
    /// How long a replicated write may take before it fails as unavailable.
    pub forward_timeout: Duration,
    /// Longest back-off for a peer that answered Unavailable.
    pub max_backoff: Duration,
    /// Whether forwards are snappy-compressed (`--receive.grpc-compression=snappy`).
    pub snappy: bool,
    /// TLS of forwards (`--remote-write.client-tls-secure`); plaintext when unset.
    pub tls: Option<Arc<ClientTls>>,
}

/// Peers of the ring in force, by address.
type PeerMap = HashMap<String, Arc<Peer>>;

/// A peer's channel and back-off state.
struct Peer {
    channel: Channel,
    backoff: Mutex<Backoff>,
}

#[derive(Default)]
struct Backoff {
    down_until: Option<Instant>,
    next: Duration,
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// Routes, replicates and answers writes.
pub struct Replicator {
    ingester: Arc<Ingester>,
    ring: Option<Arc<RingHolder>>,
    metrics: ReplicationMetrics,
    config: ReplicationConfig,
    peers: Mutex<(usize, Arc<PeerMap>)>,
    batches: BatchPool,
}

/// What one replica answered: nothing, or the quorum class of its failure and why.
type PeerResult = Result<(), (Class, String)>;

/// The quorum tracker of one write and the first reason of each failure class.
struct Outcomes {
    tracker: QuorumTracker,
    first_error: HashMap<Class, String>,
}

impl Outcomes {
    fn new(series: usize, replication_factor: usize) -> Self {
        Outcomes {
            tracker: QuorumTracker::new(series, replication_factor),
            first_error: HashMap::new(),
        }
    }

    /// Records one replica's answer for the series at `positions`.
    fn record(&mut self, positions: &[usize], result: PeerResult) {
        if let Err((class, msg)) = &result {
            self.first_error
                .entry(*class)
                .or_insert_with(|| msg.clone());
        }
        self.tracker
            .record(positions.iter().copied(), result.map_err(|(c, _)| c));
    }

    /// The write's answer: success, or the error of the class that decided it.
    fn decision(mut self) -> Result<(), WriteError> {
        match self.tracker.decision() {
            Decision::Success => Ok(()),
            Decision::Failed(class) => {
                let detail = self
                    .first_error
                    .remove(&class)
                    .or_else(|| self.first_error.into_values().next())
                    .unwrap_or_default();
                Err(WriteError::of_class(
                    class,
                    format!("quorum not reached: {detail}"),
                ))
            }
            Decision::Pending => Err(WriteError::Unavailable(
                "replication ended without a quorum".into(),
            )),
        }
    }
}

impl Replicator {
    /// A replicator over the local ingester and, when given, a ring.
    pub fn new(
        ingester: Arc<Ingester>,
        ring: Option<Arc<RingHolder>>,
        metrics: ReplicationMetrics,
        config: ReplicationConfig,
    ) -> Self {
        metrics.set_replication_factor(config.replication_factor);
        Replicator {
            ingester,
            ring,
            metrics,
            batches: BatchPool::default(),
            config,
            peers: Mutex::new((0, Arc::default())),
        }
    }

    /// The readiness probe: an ingesting receiver is ready once its WAL is replayed, even before a
    /// ring exists (the operator adds a pod to the ring only after it turns Ready); a router-only
    /// receiver is ready once it has a ring.
    pub fn is_ready(&self) -> bool {
        let ingests = self.ring.is_none() || self.config.local_endpoint.is_some();
        if ingests {
            self.ingester.is_ready()
        } else {
            self.ring.as_ref().is_some_and(|r| r.load().is_some())
        }
    }

    /// Handles the series `range` of a write: `replica > 0` means a peer already routed it here, so
    /// it is stored locally only.
    pub async fn write(
        &self,
        tenant: &str,
        batch: &WriteBatch,
        range: Range<usize>,
        rules: Rules,
        replica: i64,
    ) -> (Written, Result<(), WriteError>) {
        if !self.is_ready() {
            return (Written::default(), Err(WriteError::NotReady));
        }
        let routed = self.ring.is_some() && (replica <= 0 || self.config.local_endpoint.is_none());
        // A write stored here only leaves label checks to the series that need them (see
        // `Ingester::append_checked_locally`); one that is routed is checked whole first.
        let rules = rules.checking_labels_of_new_series_only(!routed);
        let mut checked = match self.ingester.check(tenant, batch, range, rules) {
            Ok(c) => c,
            Err(e) => return (Written::default(), Err(e)),
        };
        let stored = if checked.valid.is_empty() {
            Ok(())
        } else {
            match &self.ring {
                Some(ring) if replica <= 0 || self.config.local_endpoint.is_none() => {
                    match ring.load() {
                        Some(state) => self.replicate(&state, tenant, batch, &checked.valid).await,
                        None => Err(WriteError::Unavailable(
                            "no hashring loaded yet: cannot route".into(),
                        )),
                    }
                }
                _ => self
                    .ingester
                    .append_checked_locally(tenant, batch, &mut checked)
                    .map(|_| ()),
            }
        };
        self.metrics.replicated(stored.is_ok());
        match stored {
            Ok(()) => {
                let written = Written {
                    samples: checked.samples,
                    histograms: checked.histograms,
                    exemplars: checked.exemplars,
                };
                (written, checked.rejection(batch))
            }
            Err(e) => (Written::default(), Err(e)),
        }
    }

    /// Writes each series to its replicas (locally when this receiver is one) and waits until
    /// the quorum decides.
    async fn replicate(
        &self,
        state: &Arc<RingState>,
        tenant: &str,
        batch: &WriteBatch,
        valid: &[usize],
    ) -> Result<(), WriteError> {
        let Some((ring_index, ring)) = state.hashrings.ring_for_tenant(tenant) else {
            return Err(WriteError::Internal(format!(
                "no matching hashring to handle tenant {tenant:?}"
            )));
        };
        let endpoints = ring.endpoints();
        // Positions into `valid`, per endpoint.
        let mut groups: Vec<Vec<usize>> = vec![Vec::new(); endpoints.len()];
        for (pos, &i) in valid.iter().enumerate() {
            let hash = hashring::series_hash(tenant.as_bytes(), batch.series_labels(i));
            for ep in ring.replicas(hash) {
                groups[ep].push(pos);
            }
        }
        let ring_name = &state.hashrings.configs()[ring_index].hashring;
        let mut outcomes = Outcomes::new(valid.len(), ring.replication_factor());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut local = None;
        let peers = self.peers_for(state);
        // Peers that hold the same series (every peer, when the ring has as many endpoints as
        // replicas) get the same bytes, encoded and compressed once.
        let mut prepared: Vec<(usize, Forward)> = Vec::new();
        for (ep, positions) in groups.iter().enumerate() {
            if positions.is_empty() {
                continue;
            }
            let address = &endpoints[ep].address;
            self.metrics.routed(ring_name, address, positions.len());
            if self.config.local_endpoint.as_deref() == Some(address.as_str()) {
                local = Some(ep);
                continue;
            }
            let same = prepared
                .iter()
                .find(|(other, _)| groups[*other] == *positions);
            let request = match same {
                Some((_, request)) => request.clone(),
                None => {
                    let series: Vec<usize> = positions.iter().map(|&p| valid[p]).collect();
                    let mut buf = Vec::new();
                    forward::encode(batch, &series, tenant, 1, &mut buf);
                    let request = Forward::new(Bytes::from(buf), self.config.snappy);
                    prepared.push((ep, request.clone()));
                    request
                }
            };
            let peer = peers.get(address).cloned();
            self.spawn_forward(peer, address.clone(), request, ep, tx.clone());
        }
        drop(tx);

        if let Some(ep) = local {
            let series: Vec<usize> = groups[ep].iter().map(|&p| valid[p]).collect();
            let result = self
                .ingester
                .append_local(tenant, batch, &series)
                .map(|_| ())
                .map_err(|e| (e.class(), e.to_string()));
            outcomes.record(&groups[ep], result);
        }
        let deadline = tokio::time::Instant::now() + self.config.forward_timeout;
        while outcomes.tracker.decision() == Decision::Pending {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((ep, result))) => outcomes.record(&groups[ep], result),
                Ok(None) => break,
                Err(_) => {
                    return Err(WriteError::Unavailable(format!(
                        "replication did not reach quorum within {:?}",
                        self.config.forward_timeout
                    )));
                }
            }
        }
        outcomes.decision()
    }

    /// Sends one peer its share in the background; the outcome arrives on `tx` as `(ep, result)`.
    /// The request is not cancelled when the quorum answers first, so a slow replica still gets
    /// its copy.
    fn spawn_forward(
        &self,
        peer: Option<Arc<Peer>>,
        address: String,
        request: Forward,
        ep: usize,
        tx: mpsc::UnboundedSender<(usize, PeerResult)>,
    ) {
        let (timeout, max_backoff) = (self.config.forward_timeout, self.config.max_backoff);
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let result = match peer {
                Some(peer) => forward(&peer, request, timeout, max_backoff).await,
                None => Err((Class::Internal, format!("no channel for {address}"))),
            };
            metrics.forwarded(&address, start.elapsed().as_secs_f64(), result.is_ok());
            if let Err((class, msg)) = &result {
                tracing::debug!(endpoint = address, ?class, msg, "forward failed");
            }
            let _ = tx.send((
                ep,
                result.map_err(|(c, m)| (c, format!("forwarding to {address}: {m}"))),
            ));
        });
    }

    /// Peers of the ring in force; back-off states reset whenever the ring changes.
    fn peers_for(&self, state: &Arc<RingState>) -> Arc<PeerMap> {
        let key = Arc::as_ptr(state) as usize;
        let mut peers = self.peers.lock();
        if peers.0 != key {
            let mut fresh = HashMap::new();
            for cfg in state.hashrings.configs() {
                for ep in &cfg.endpoints {
                    if self.config.local_endpoint.as_deref() == Some(ep.address.as_str())
                        || fresh.contains_key(&ep.address)
                    {
                        continue;
                    }
                    // Reuse the connection of a peer that stays in the ring; only its back-off resets.
                    let channel = match peers.1.get(&ep.address) {
                        Some(p) => p.channel.clone(),
                        None => match channel(&ep.address, self.config.tls.as_ref()) {
                            Ok(c) => c,
                            Err(e) => {
                                tracing::error!(endpoint = ep.address, error = %e, "invalid peer address");
                                continue;
                            }
                        },
                    };
                    fresh.insert(
                        ep.address.clone(),
                        Arc::new(Peer {
                            channel,
                            backoff: Mutex::new(Backoff::default()),
                        }),
                    );
                }
            }
            *peers = (key, Arc::new(fresh));
        }
        Arc::clone(&peers.1)
    }
}

impl grpc::UnaryMethod for Replicator {
    const SERVICE: &'static str = "thanos.WriteableStore";
    const PATH: &'static str = grpc::REMOTE_WRITE_PATH;

    /// Stores a forwarded `thanos.WriteRequest`; errors carry Thanos' gRPC codes.
    fn call(self: &Arc<Self>, request: Bytes) -> tonic::codegen::BoxFuture<Bytes, tonic::Status> {
        let this = Arc::clone(self);
        Box::pin(async move {
            let mut batch = this.batches.take();
            batch.set_body(Vec::from(request));
            let result = this.write_forwarded(&mut batch).await;
            this.batches.give(batch);
            // `thanos.WriteResponse` is an empty message.
            result.map(|()| Bytes::new())
        })
    }

    fn message_buffer(&self) -> Vec<u8> {
        self.batches.take_body()
    }
}

impl Replicator {
    /// The batches the write handlers decode into.
    pub fn batches(&self) -> &BatchPool {
        &self.batches
    }

    /// Stores the decoded `thanos.WriteRequest` in `batch`'s body, tenant by tenant.
    async fn write_forwarded(&self, batch: &mut WriteBatch) -> Result<(), tonic::Status> {
        let size = batch.body_len();
        let meta = batch
            .decode_forward()
            .map_err(|e| WriteError::from(e).grpc_status())?;
        let batch = &*batch;
        for (tenant, range) in meta.groups {
            // The tenant's request size limit holds for forwarded writes as for HTTP ones.
            let limit = self.ingester.tenant_limits(&tenant).size_bytes;
            if limit > 0 && size as u64 > limit {
                return Err(WriteError::TooLarge(format!(
                    "write request too large: {size} bytes, limit {limit}"
                ))
                .grpc_status());
            }
            let (_, result) = self
                .write(&tenant, batch, range, Rules::FORWARDED, meta.replica)
                .await;
            result.map_err(|e| e.grpc_status())?;
        }
        Ok(())
    }
}

/// A lazily connected channel to a peer, over TLS when `tls` is set (each new connection uses
/// the certificates in force then).
fn channel(
    address: &str,
    tls: Option<&Arc<ClientTls>>,
) -> Result<Channel, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    Ok(match tls {
        Some(tls) => endpoint.connect_with_connector_lazy(PeerConnector(Arc::clone(tls))),
        None => endpoint.connect_lazy(),
    })
}

/// Sends one forward request, honouring and updating the peer's back-off.
async fn forward(
    peer: &Peer,
    request: Forward,
    timeout: Duration,
    max_backoff: Duration,
) -> PeerResult {
    if let Some(until) = peer.backoff.lock().down_until
        && Instant::now() < until
    {
        return Err((
            Class::Unavailable,
            "backing off: peer was unavailable".into(),
        ));
    }
    let result = match tokio::time::timeout(
        timeout,
        grpc::remote_write(peer.channel.clone(), request),
    )
    .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(status)) => Err((
            class_of_code(status.code()),
            status.message().to_string(),
            status.code(),
        )),
        Err(_) => Err((
            Class::Unavailable,
            format!("no answer within {timeout:?}"),
            Code::DeadlineExceeded,
        )),
    };
    let mut b = peer.backoff.lock();
    match result {
        Ok(()) => {
            *b = Backoff::default();
            Ok(())
        }
        // A refused connection or a not-ready peer backs off; a timeout does not, so a slow
        // replica keeps receiving its copies.
        Err((class, msg, Code::Unavailable)) => {
            b.next = (b.next * 2).clamp(MIN_BACKOFF, max_backoff);
            b.down_until = Some(Instant::now() + b.next);
            Err((class, msg))
        }
        Err((class, msg, _)) => Err((class, msg)),
    }
}
