//! Process wiring, in the order a receiver lives: [`Config::from_args`] checks every flag and
//! loads every file they name, [`Receiver::build`] wires the components, [`Receiver::serve`]
//! opens the listeners, the background tasks run by name (WAL replay, fsync, compaction,
//! shipping), and [`Receiver::shutdown`] stops everything in one order.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::cli::{Args, GrpcCompression, LogFormat, LogLevel, ReplicationProtocol};
use crate::grpc::{StoreServer, StreamServer, UnaryServer};
use crate::http::{App, Handles, HttpConfig, ops_router, remote_write_router};
use crate::ingest::Ingester;
use crate::ingest::limits::LimitsConfig;
use crate::listen::{self, ConnectionCaps};
use crate::metrics::Metrics;
use crate::replicate::{ReplicationConfig, Replicator};
use crate::ring::{self, RingHolder};
use crate::shipper::{Shipper, objstore};
use crate::store::exemplars::ExemplarsService;
use crate::store::info::InfoService;
use crate::store::store_api::StoreService;
use crate::tls::{ClientTls, ServerOptions, ServerTls, WebConfig};
use crate::tsdb::{MultiTsdb, Retention, TsdbOptions};
use crate::wire::pool;

/// Installs the global logger for `--log.level` and `--log.format`.
pub fn init_logging(level: LogLevel, format: LogFormat) {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::filter::LevelFilter::from_level(match level {
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Error => tracing::Level::ERROR,
    });
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Logfmt => registry
            .with(
                tracing_logfmt::builder()
                    .layer()
                    .with_writer(std::io::stderr),
            )
            .init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
}

/// Runs the receiver until SIGTERM or SIGINT.
pub async fn run(args: Args) -> anyhow::Result<()> {
    for warning in &args.ignored_flags {
        tracing::warn!("{warning}");
    }
    let config = Config::from_args(args)?;
    let nofile = listen::raise_nofile_limit();
    let caps = ConnectionCaps::for_limit(nofile);
    tracing::info!(nofile, ?caps, "descriptor limit and connection caps");
    let receiver = Receiver::build(config).await?;
    let servers = receiver.serve(caps).await?;
    let tasks = receiver.start_tasks(&servers.health);
    receiver.wait_for_shutdown_signal(tasks.replay).await?;
    receiver.shutdown(servers, tasks.periodic).await
}

/// Every setting of a receiver, checked, with the files its flags name loaded.
pub struct Config {
    /// The flags as given.
    pub args: Args,
    /// The limits file's content (`--receive.limits-config-file`).
    pub limits: LimitsConfig,
    /// Storage settings derived from the `--tsdb.*` flags.
    pub tsdb: TsdbOptions,
    /// The bucket of `--objstore.config-file`, if set.
    pub bucket: Option<objstore::Bucket>,
    /// TLS of the listeners and of forwards, loaded.
    pub tls: Tls,
}

/// TLS of each listener and of forwards; `None` is plaintext.
#[derive(Default)]
pub struct Tls {
    /// The remote-write port.
    pub remote_write: Option<Arc<ServerTls>>,
    /// The gRPC port.
    pub grpc: Option<Arc<ServerTls>>,
    /// The operational port, from `--http.config`.
    pub ops: Option<Arc<ServerTls>>,
    /// `--http.config`, for basic auth and headers.
    pub web: Option<WebConfig>,
    /// Forwards to peers.
    pub client: Option<Arc<ClientTls>>,
}

impl Tls {
    /// Loads the certificates and files the TLS flags name.
    fn from_args(args: &Args) -> anyhow::Result<Tls> {
        let t = &args.tls;
        let server = |options: Result<Option<ServerOptions>, String>, flags: &str| {
            options
                .map_err(anyhow::Error::msg)?
                .map(ServerTls::new)
                .transpose()
                .with_context(|| format!("--{flags}-*"))
        };
        let remote_write = server(t.remote_write_server(), "remote-write.server-tls")?;
        let grpc = server(t.grpc_server(), "grpc-server-tls")?;
        if let Some(field) = t.tenant_certificate_field
            && t.rw_client_ca.is_empty()
        {
            anyhow::bail!(
                "--receive.tenant-certificate-field={} needs verified client certificates: set --remote-write.server-tls-client-ca",
                field.as_flag_value()
            );
        }
        let web = (!t.http_config.is_empty())
            .then(|| WebConfig::load(std::path::Path::new(&t.http_config)))
            .transpose()
            .context("--http.config")?;
        let ops = web
            .as_ref()
            .map(WebConfig::tls_options)
            .transpose()?
            .flatten()
            .map(ServerTls::new)
            .transpose()
            .context("--http.config")?;
        let client = t
            .client()
            .map(ClientTls::new)
            .transpose()
            .context("--remote-write.client-tls-*")?;
        Ok(Tls {
            remote_write,
            grpc,
            ops,
            web,
            client,
        })
    }
}

impl Config {
    /// Checks the flags and loads the files they name; nothing starts.
    pub fn from_args(args: Args) -> anyhow::Result<Config> {
        let limits = match (&args.limits_config_file, &args.limits_config) {
            (Some(path), _) => LimitsConfig::load(path)?,
            (None, Some(text)) => LimitsConfig::parse(text).context("--receive.limits-config")?,
            (None, None) => LimitsConfig::default(),
        };
        crate::tenant::validate(&args.default_tenant)
            .with_context(|| format!("--receive.default-tenant-id={:?}", args.default_tenant))?;
        if args.max_block_duration < args.min_block_duration {
            anyhow::bail!("--tsdb.max-block-duration must not be below --tsdb.min-block-duration");
        }
        let block_ms = args.min_block_duration.as_millis() as i64;
        if block_ms < 60_000 {
            anyhow::bail!("--tsdb.min-block-duration must be at least 1m");
        }
        if !has_ring(&args) && args.replication_factor > 1 {
            anyhow::bail!(
                "--receive.replication-factor={} needs a hashring (--receive.hashrings-file, --receive.hashrings-configmap or --receive.hashrings)",
                args.replication_factor
            );
        }
        let tsdb = TsdbOptions {
            block_duration_ms: block_ms,
            fsync_every_write: args.wal_fsync_interval.is_zero(),
            too_far_in_future_ms: (!args.too_far_in_future.is_zero())
                .then_some(args.too_far_in_future.as_millis() as i64),
            external_labels: args.labels.iter().cloned().collect(),
            tenant_label_name: args.tenant_label_name.clone(),
            index_cache: Arc::default(),
            ring_labels: Arc::default(),
            max_exemplars: usize::try_from(args.max_exemplars).unwrap_or(0),
            out_of_order_window_ms: i64::try_from(args.out_of_order_time_window.as_millis())
                .unwrap_or(i64::MAX),
        };
        let bucket = match (&args.objstore_config_file, &args.objstore_config) {
            (Some(path), _) => Some(objstore::load(path).context("--objstore.config-file")?),
            (None, Some(text)) => {
                Some(objstore::parse(text, "inline").context("--objstore.config")?)
            }
            (None, None) => None,
        };
        if args.replication_protocol == ReplicationProtocol::Capnproto {
            anyhow::bail!(
                "--receive.replication-protocol=capnproto cannot be honoured: forwards use gRPC (protobuf), which Thanos receivers also accept"
            );
        }
        let tls = Tls::from_args(&args)?;
        Ok(Config {
            args,
            limits,
            tsdb,
            bucket,
            tls,
        })
    }

    /// A ring but no local endpoint: writes are only forwarded and no TSDB is opened.
    fn router_only(&self) -> bool {
        self.args.local_endpoint.is_none() && has_ring(&self.args)
    }
}

/// Whether a ring source is configured (file, ConfigMap or inline).
fn has_ring(args: &Args) -> bool {
    args.hashrings_file.is_some() || args.hashrings_configmap.is_some() || args.hashrings.is_some()
}

/// The wired components of one receiver.
struct Receiver {
    args: Args,
    router_only: bool,
    metrics: Arc<Metrics>,
    tsdb: Arc<MultiTsdb>,
    ingester: Arc<Ingester>,
    replicator: Arc<Replicator>,
    shipper: Option<Arc<Shipper>>,
    app: Arc<App>,
    tls: Tls,
}

/// The listeners' tasks and the signal that stops them.
struct Servers {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// `grpc.health.v1.Health` of the gRPC port, following readiness.
    health: HealthReporter,
}

/// The background tasks: WAL replay once, then the periodic ones.
struct Tasks {
    replay: JoinHandle<anyhow::Result<()>>,
    periodic: Vec<JoinHandle<()>>,
}

impl Receiver {
    /// Wires storage, ingestion, the ring sources, replication and the HTTP state.
    async fn build(config: Config) -> anyhow::Result<Receiver> {
        let router_only = config.router_only();
        let Config {
            args,
            limits,
            tsdb,
            bucket,
            tls,
        } = config;
        let metrics = Arc::new(Metrics::new());
        let ring_labels = Arc::clone(&tsdb.ring_labels);
        let tsdb = Arc::new(MultiTsdb::new(&args.tsdb_path, tsdb));
        let shipper = bucket
            .map(|bucket| {
                tracing::info!(bucket = bucket.description, "uploading blocks");
                Shipper::new(bucket, metrics.shipper.clone()).map(Arc::new)
            })
            .transpose()
            .context("starting the upload threads")?;
        let max_concurrency = limits.write.global.max_concurrency;
        let ingester = Arc::new(Ingester::new(
            Arc::clone(&tsdb),
            metrics.ingest.clone(),
            metrics.tsdb.clone(),
            limits,
        ));
        let ring = start_ring_sources(&args, &metrics, ring_labels).await?;
        let routes = ring.is_some();
        let replicator = Arc::new(Replicator::new(
            Arc::clone(&ingester),
            ring.clone(),
            metrics.replication.clone(),
            ReplicationConfig {
                replication_factor: args.replication_factor as usize,
                local_endpoint: args.local_endpoint.clone(),
                forward_timeout: args.forward_timeout,
                max_backoff: args.forward_max_backoff,
                snappy: args.grpc_compression == GrpcCompression::Snappy,
                tls: tls.client.clone(),
            },
        ));
        let app = Arc::new(
            App::new(
                Handles {
                    replicator: Arc::clone(&replicator),
                    ingester: Arc::clone(&ingester),
                    tsdb: Arc::clone(&tsdb),
                    ring,
                    metrics: Arc::clone(&metrics),
                },
                HttpConfig {
                    tenant_header: args.tenant_header.clone(),
                    replica_header: args.replica_header.clone(),
                    default_tenant: args.default_tenant.clone(),
                    max_concurrency,
                    max_inflight_write_bytes: crate::admission::resolve_budget(
                        args.max_inflight_write_bytes.0,
                        std::thread::available_parallelism().map_or(1, |n| n.get()),
                        routes,
                    ),
                    read_limits: crate::store::ReadLimits {
                        series: args.read_series_limit,
                        samples: args.read_samples_limit,
                    },
                    tenant_certificate_field: args.tls.tenant_certificate_field,
                },
            )
            .context("--receive.tenant-header / --receive.replica-header")?,
        );
        Ok(Receiver {
            args,
            router_only,
            metrics,
            tsdb,
            ingester,
            replicator,
            shipper,
            app,
            tls,
        })
    }

    /// Binds the three ports and serves them, each with its own connection cap so exhausting one
    /// never starves another: the ops port answers `/-/ready` while the write port is flooded.
    async fn serve(&self, caps: ConnectionCaps) -> anyhow::Result<Servers> {
        let args = &self.args;
        let bind = |addr, flag: &'static str| async move {
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on --{flag}={addr}"))
        };
        let rw = bind(args.remote_write_address, "remote-write.address").await?;
        let ops = bind(args.http_address, "http-address").await?;
        let grpc = bind(args.grpc_address, "grpc-address").await?;
        tracing::info!(
            remote_write = %args.remote_write_address,
            http = %args.http_address,
            grpc = %args.grpc_address,
            tsdb_path = %args.tsdb_path.display(),
            remote_write_tls = self.tls.remote_write.is_some(),
            grpc_tls = self.tls.grpc.is_some(),
            http_tls = self.tls.ops.is_some(),
            forward_tls = self.tls.client.is_some(),
            "receiver listening"
        );
        let mut ops_router = ops_router(Arc::clone(&self.app));
        if let Some(web) = &self.tls.web {
            ops_router = crate::http::with_web_config(ops_router, web)
                .map_err(anyhow::Error::msg)
                .context("--http.config")?;
        }
        let (stop, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        let grpc_server = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_service(health_service)
            .add_service(UnaryServer::new(
                Arc::clone(&self.replicator),
                self.metrics.grpc.clone(),
            ))
            .add_service(UnaryServer::new(
                Arc::new(InfoService::new(
                    Arc::clone(&self.tsdb),
                    Arc::clone(&self.ingester),
                )),
                self.metrics.grpc.clone(),
            ))
            .add_service(StreamServer::new(
                Arc::new(ExemplarsService::new(self.app.reads())),
                self.metrics.grpc.clone(),
            ))
            .add_service(StoreServer::new(
                Arc::new(StoreService::new(
                    self.app.reads(),
                    Arc::clone(&self.ingester),
                )),
                self.metrics.grpc.clone(),
            ))
            .serve_with_incoming_shutdown(
                listen::capped_incoming(grpc, caps.grpc, self.tls.grpc.clone()),
                stopped(stop_rx.clone()),
            );
        let tasks = vec![
            tokio::spawn(listen::serve_http(
                rw,
                remote_write_router(Arc::clone(&self.app)),
                caps.remote_write,
                self.tls.remote_write.clone(),
                stopped(stop_rx.clone()),
            )),
            tokio::spawn(listen::serve_http(
                ops,
                ops_router,
                caps.ops,
                self.tls.ops.clone(),
                stopped(stop_rx.clone()),
            )),
            tokio::spawn(async move {
                if let Err(e) = grpc_server.await {
                    tracing::error!(error = %e, "gRPC server failed");
                }
            }),
        ];
        Ok(Servers {
            stop,
            tasks,
            health,
        })
    }

    /// Starts WAL replay and the periodic tasks.
    fn start_tasks(&self, health: &HealthReporter) -> Tasks {
        let mut periodic = vec![
            self.fsync_task(),
            self.compaction_task(),
            self.health_task(health.clone()),
        ];
        periodic.push(self.batch_release_task());
        periodic.extend(self.shipping_task());
        periodic.extend(self.limits_reload_task());
        Tasks {
            replay: self.replay_task(),
            periodic,
        }
    }

    /// Lets the write handlers' kept batches go once writes stop, so an idle receiver's memory
    /// is its series'.
    fn batch_release_task(&self) -> JoinHandle<()> {
        let replicator = Arc::clone(&self.replicator);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(pool::IDLE_RELEASE);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                replicator.batches().release_idle(pool::IDLE_RELEASE);
            }
        })
    }

    /// Re-reads the limits file every `--receive.limits-config-reload-timer` and applies it when
    /// it changed; a broken file is logged and counted, and the limits in force stay.
    fn limits_reload_task(&self) -> Option<JoinHandle<()>> {
        let path = self.args.limits_config_file.clone()?;
        let (ingester, metrics) = (Arc::clone(&self.ingester), Arc::clone(&self.metrics));
        let interval = self
            .args
            .limits_reload_interval
            .max(Duration::from_millis(100));
        Some(tokio::spawn(async move {
            let mut applied = tokio::fs::read(&path).await.ok();
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Ok(text) = tokio::fs::read(&path).await else {
                    continue;
                };
                if applied.as_deref() == Some(&text[..]) {
                    continue;
                }
                match LimitsConfig::parse(&String::from_utf8_lossy(&text)) {
                    Ok(limits) => {
                        ingester.set_limits(limits);
                        metrics.ingest.limits_reloaded(true);
                        tracing::info!(path = %path.display(), "limits file reloaded");
                    }
                    Err(e) => {
                        metrics.ingest.limits_reloaded(false);
                        tracing::error!(path = %path.display(), error = %e, "limits file refused; the limits in force stay");
                    }
                }
                applied = Some(text);
            }
        }))
    }

    /// Replays every tenant's WAL, then marks the receiver ready.
    fn replay_task(&self) -> JoinHandle<anyhow::Result<()>> {
        if self.router_only {
            tracing::info!(
                "router-only mode: no --receive.local-endpoint, writes are only forwarded"
            );
        }
        let (ingester, tsdb, metrics) = (
            Arc::clone(&self.ingester),
            Arc::clone(&self.tsdb),
            Arc::clone(&self.metrics),
        );
        let (default_tenant, router_only) = (self.args.default_tenant.clone(), self.router_only);
        tokio::task::spawn_blocking(move || {
            if !router_only {
                for (tenant, s) in tsdb.open_existing()? {
                    if s.replay.repaired {
                        tracing::warn!(
                            tenant,
                            truncated_bytes = s.replay.truncated_bytes,
                            "repaired a torn WAL tail"
                        );
                    }
                    let (series, wal) = tsdb
                        .get(&tenant)
                        .map_or((0, 0), |db| (db.head.num_series(), db.wal_size()));
                    metrics
                        .tsdb
                        .replayed(&tenant, s.duration, s.replay.repaired, series, wal);
                    tracing::info!(
                        tenant,
                        records = s.replay.records,
                        samples = s.samples,
                        head_chunks = s.attached_chunks,
                        chunk_files = s.chunk_files.files,
                        chunk_bytes_dropped = s.chunk_files.dropped_bytes,
                        duration_ms = s.duration.as_millis() as u64,
                        "WAL replayed"
                    );
                }
                tsdb.tenant(&default_tenant)?;
            }
            ingester.set_ready();
            Ok(())
        })
    }

    /// Keeps the gRPC health status (service `""`) equal to readiness, as `/-/ready` reports it.
    fn health_task(&self, health: HealthReporter) -> JoinHandle<()> {
        let replicator = Arc::clone(&self.replicator);
        tokio::spawn(async move {
            let mut serving = false;
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let ready = replicator.is_ready();
                if ready != serving {
                    let status = if ready {
                        ServingStatus::Serving
                    } else {
                        ServingStatus::NotServing
                    };
                    health.set_service_status("", status).await;
                    serving = ready;
                }
            }
        })
    }

    /// Fsyncs every WAL each `--tsdb.wal-fsync-interval` (0: every write is fsynced instead).
    fn fsync_task(&self) -> JoinHandle<()> {
        let (tsdb, metrics) = (Arc::clone(&self.tsdb), Arc::clone(&self.metrics));
        let interval = self.args.wal_fsync_interval;
        tokio::spawn(async move {
            if interval.is_zero() {
                return;
            }
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                let tsdb = Arc::clone(&tsdb);
                let result = tokio::task::spawn_blocking(move || tsdb.sync_all()).await;
                if !matches!(result, Ok(Ok(()))) {
                    metrics.tsdb.fsync_failed();
                    tracing::error!(?result, "WAL fsync failed");
                }
            }
        })
    }

    /// Cuts blocks, applies retention and closes idle WALs every head-compaction interval.
    fn compaction_task(&self) -> JoinHandle<()> {
        let (tsdb, ingester) = (Arc::clone(&self.tsdb), Arc::clone(&self.ingester));
        let interval = self.args.head_compaction_interval;
        let retention = Retention::new(self.args.tsdb_retention, self.args.max_retention_bytes);
        let shipping = self.shipper.is_some();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if !ingester.is_ready() {
                    continue;
                }
                let tsdb = Arc::clone(&tsdb);
                let _ = tokio::task::spawn_blocking(move || {
                    // With a bucket, only blocks that reached it may leave the disk.
                    tsdb.compact_all(retention, &|db, meta| {
                        !shipping || Shipper::is_uploaded(&db.dir, meta.ulid)
                    });
                    // Idle tenants give their WAL descriptor back between compactions.
                    tsdb.close_idle_wals();
                })
                .await;
            }
        })
    }

    /// Uploads new blocks every `--shipper.sync-interval`, when a bucket is configured.
    fn shipping_task(&self) -> Option<JoinHandle<()>> {
        let shipper = Arc::clone(self.shipper.as_ref()?);
        let (tsdb, ingester) = (Arc::clone(&self.tsdb), Arc::clone(&self.ingester));
        let interval = self.args.shipper_sync_interval;
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if ingester.is_ready() {
                    shipper.sync_all(&tsdb).await;
                }
            }
        }))
    }

    /// Waits for WAL replay, then for SIGTERM or SIGINT (which may also end a replay early).
    async fn wait_for_shutdown_signal(
        &self,
        mut replay: JoinHandle<anyhow::Result<()>>,
    ) -> anyhow::Result<()> {
        tokio::select! {
            r = &mut replay => r.context("WAL replay task")??,
            _ = shutdown_signal() => {
                tracing::info!("shutdown requested during WAL replay");
                return Ok(());
            }
        }
        tracing::info!("ready");
        shutdown_signal().await;
        Ok(())
    }

    /// Stops in the order that loses nothing: drain requests, stop the periodic tasks, cut the
    /// head into blocks, upload them, and sync the WAL last.
    async fn shutdown(self, servers: Servers, periodic: Vec<JoinHandle<()>>) -> anyhow::Result<()> {
        tracing::info!("shutting down: draining in-flight requests");
        // The health task keeps its last status, so this one stays.
        servers
            .health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        let _ = servers.stop.send(true);
        let drain = futures::future::join_all(servers.tasks);
        // Thanos waits out each server's grace period; here they drain together.
        let grace = self.args.http_grace_period.max(self.args.grpc_grace_period);
        if tokio::time::timeout(grace, drain).await.is_err() {
            tracing::warn!(
                ?grace,
                "in-flight requests did not finish within --http-grace-period/--grpc-grace-period"
            );
        }
        for task in periodic {
            task.abort();
        }
        let flush_timeout = self.args.flush_timeout;
        if self.ingester.is_ready() {
            self.flush(flush_timeout).await;
        }
        if let Some(shipper) = &self.shipper {
            // A scaled-down receiver must leave nothing behind: upload what the flush produced.
            if tokio::time::timeout(flush_timeout, shipper.sync_all(&self.tsdb))
                .await
                .is_err()
            {
                tracing::error!(
                    "final upload did not finish within --tsdb.flush-timeout; blocks stay on disk"
                );
            }
        }
        let tsdb = Arc::clone(&self.tsdb);
        tokio::task::spawn_blocking(move || tsdb.sync_all())
            .await
            .context("final WAL sync task")??;
        tracing::info!("WAL synced; bye");
        Ok(())
    }

    /// Cuts the whole head into blocks so a receiver that is scaled down leaves everything on
    /// disk in block form; the WAL keeps the data if this does not finish in time.
    async fn flush(&self, timeout: Duration) {
        let tsdb = Arc::clone(&self.tsdb);
        let flush = tokio::task::spawn_blocking(move || tsdb.flush_all());
        match tokio::time::timeout(timeout, flush).await {
            Ok(Ok((blocks, failed))) => {
                for (tenant, e) in &failed {
                    tracing::error!(tenant, error = %e, "head flush failed; the WAL keeps the data");
                }
                tracing::info!(blocks, failed = failed.len(), "head flushed into blocks");
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "head flush task failed; the WAL keeps the data")
            }
            Err(_) => tracing::error!(
                "head flush did not finish within --tsdb.flush-timeout; the WAL keeps the data"
            ),
        }
    }
}

/// Loads the first ring and starts the sources that keep it current; `None` when no ring is configured.
async fn start_ring_sources(
    args: &Args,
    metrics: &Metrics,
    ring_labels: Arc<crate::tsdb::RingLabels>,
) -> anyhow::Result<Option<Arc<RingHolder>>> {
    if !has_ring(args) {
        return Ok(None);
    }
    let holder = Arc::new(
        RingHolder::new(
            args.replication_factor as usize,
            args.hashrings_algorithm.into(),
            args.local_endpoint.clone(),
            metrics.ring.clone(),
        )
        .with_tenant_labels(ring_labels),
    );
    let cm_delivered = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(cm) = &args.hashrings_configmap {
        let (namespace, name) = ring::configmap::parse_ref(cm)
            .map_err(|e| anyhow::anyhow!("--receive.hashrings-configmap: {e}"))?;
        let client = kube::Client::try_default().await.context(
            "--receive.hashrings-configmap: no Kubernetes client (in-cluster config or KUBECONFIG)",
        )?;
        // In a pod (the operator sets POD_NAME), the ring in force is reported on the pod.
        let reporter = std::env::var(hashring::contract::POD_NAME_ENV)
            .ok()
            .filter(|pod| !pod.is_empty())
            .map(|pod| ring::configmap::PodReporter::new(client.clone(), &namespace, pod));
        tokio::spawn(ring::configmap::watch(
            client,
            namespace,
            name,
            Arc::clone(&holder),
            Arc::clone(&cm_delivered),
            reporter,
        ));
    }
    if let Some(path) = &args.hashrings_file {
        ring::file::load_once(path, &holder);
        tokio::spawn(ring::file::watch(
            path.clone(),
            args.hashrings_refresh_interval,
            Arc::clone(&holder),
            cm_delivered,
        ));
    } else if let Some(content) = &args.hashrings
        && args.hashrings_configmap.is_none()
    {
        holder
            .apply("flag", content.as_bytes())
            .context("--receive.hashrings")?;
    }
    Ok(Some(holder))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
