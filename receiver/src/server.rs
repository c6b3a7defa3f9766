//! Process wiring: listeners, WAL replay, periodic fsync, and graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cli::{Args, GrpcCompression, LogFormat, LogLevel};
use crate::grpc::WriteableStoreServer;
use crate::http::{App, ops_router, remote_write_router};
use crate::ingest::Ingester;
use crate::ingest::limits::LimitsConfig;
use crate::listen;
use crate::metrics::Metrics;
use crate::replicate::{ReplicationConfig, Replicator};
use crate::ring::{self, RingHolder};
use crate::shipper::{Shipper, objstore};
use crate::tsdb::{MultiTsdb, TsdbOptions};

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
    let nofile = listen::raise_nofile_limit();
    let caps = listen::ConnectionCaps::for_limit(nofile);
    tracing::info!(nofile, ?caps, "descriptor limit and connection caps");
    let limits = match &args.limits_config_file {
        Some(path) => LimitsConfig::load(path)?,
        None => LimitsConfig::default(),
    };
    crate::tenant::validate(&args.default_tenant)
        .with_context(|| format!("--receive.default-tenant-id={:?}", args.default_tenant))?;
    let metrics = Arc::new(Metrics::new());
    if args.max_block_duration < args.min_block_duration {
        anyhow::bail!("--tsdb.max-block-duration must not be below --tsdb.min-block-duration");
    }
    let block_ms = args.min_block_duration.as_millis() as i64;
    if block_ms < 60_000 {
        anyhow::bail!("--tsdb.min-block-duration must be at least 1m");
    }
    let opts = TsdbOptions {
        block_duration_ms: block_ms,
        fsync_every_write: args.wal_fsync_interval.is_zero(),
        too_far_in_future_ms: (!args.too_far_in_future.is_zero())
            .then_some(args.too_far_in_future.as_millis() as i64),
        external_labels: args.labels.iter().cloned().collect(),
        tenant_label_name: args.tenant_label_name.clone(),
    };
    let tsdb = Arc::new(MultiTsdb::new(&args.tsdb_path, opts));
    let shipper = match &args.objstore_config_file {
        Some(path) => {
            let bucket = objstore::load(path).context("--objstore.config-file")?;
            tracing::info!(bucket = bucket.description, "uploading blocks");
            Some(Arc::new(Shipper::new(bucket, Arc::clone(&metrics))))
        }
        None => None,
    };
    let max_concurrency = limits.write.global.max_concurrency;
    let ingester = Arc::new(Ingester::new(
        Arc::clone(&tsdb),
        Arc::clone(&metrics),
        limits,
    ));
    let ring = start_ring_sources(&args, &metrics).await?;
    let rf = args.replication_factor as usize;
    if ring.is_none() && rf > 1 {
        anyhow::bail!(
            "--receive.replication-factor={rf} needs a hashring (--receive.hashrings-file, --receive.hashrings-configmap or --receive.hashrings)"
        );
    }
    if args.grpc_compression == GrpcCompression::Snappy {
        tracing::debug!(
            "--receive.grpc-compression=snappy: forwards are sent uncompressed (tonic has no snappy codec)"
        );
    }
    let replicator = Arc::new(Replicator::new(
        Arc::clone(&ingester),
        ring,
        ReplicationConfig {
            replication_factor: rf,
            local_endpoint: args.local_endpoint.clone(),
            forward_timeout: args.forward_timeout,
            max_backoff: args.forward_max_backoff,
        },
    ));
    let app = Arc::new(
        App::new(
            Arc::clone(&replicator),
            &args.tenant_header,
            &args.replica_header,
            &args.default_tenant,
            max_concurrency,
        )
        .context("--receive.tenant-header / --receive.replica-header")?,
    );

    let rw_listener = TcpListener::bind(args.remote_write_address)
        .await
        .with_context(|| {
            format!(
                "listening on --remote-write.address={}",
                args.remote_write_address
            )
        })?;
    let ops_listener = TcpListener::bind(args.http_address)
        .await
        .with_context(|| format!("listening on --http-address={}", args.http_address))?;
    let grpc_listener = TcpListener::bind(args.grpc_address)
        .await
        .with_context(|| format!("listening on --grpc-address={}", args.grpc_address))?;
    tracing::info!(
        remote_write = %args.remote_write_address,
        http = %args.http_address,
        grpc = %args.grpc_address,
        tsdb_path = %args.tsdb_path.display(),
        "receiver listening"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    // Each port has its own connection cap, so exhausting one never starves another: the ops
    // port answers `/-/ready` and `/metrics` while the write port is flooded.
    let rw_server = tokio::spawn(listen::serve_http(
        rw_listener,
        remote_write_router(Arc::clone(&app)),
        caps.remote_write,
        stopped(stop_rx.clone()),
    ));
    let ops_server = tokio::spawn(listen::serve_http(
        ops_listener,
        ops_router(Arc::clone(&app)),
        caps.ops,
        stopped(stop_rx.clone()),
    ));
    let grpc_server = tokio::spawn(
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_service(WriteableStoreServer::new(Arc::clone(&replicator)))
            .serve_with_incoming_shutdown(
                listen::capped_incoming(grpc_listener, caps.grpc),
                stopped(stop_rx.clone()),
            ),
    );

    // A router-only receiver (a ring but no local endpoint) stores nothing and opens no TSDB.
    let router_only = replicator.ring.is_some() && args.local_endpoint.is_none();
    if router_only {
        tracing::info!("router-only mode: no --receive.local-endpoint, writes are only forwarded");
    }
    let replay = {
        let ingester = Arc::clone(&ingester);
        let default_tenant = args.default_tenant.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            if router_only {
                ingester.set_ready();
                return Ok(());
            }
            let stats = ingester.tsdb.open_existing()?;
            ingester.tsdb.tenant(&default_tenant)?;
            for (tenant, s) in stats {
                let t = Metrics::tenant(&tenant);
                let m = &ingester.metrics;
                m.replay_duration
                    .get_or_create(&t)
                    .set(s.duration.as_secs_f64());
                if s.replay.repaired {
                    m.wal_corruptions.get_or_create(&t).inc();
                    tracing::warn!(
                        tenant,
                        truncated_bytes = s.replay.truncated_bytes,
                        "repaired a torn WAL tail"
                    );
                }
                if let Some(db) = ingester.tsdb.get(&tenant) {
                    m.head_series
                        .get_or_create(&t)
                        .set(db.head.num_series() as i64);
                    m.wal_size.get_or_create(&t).set(db.wal_size() as i64);
                }
                tracing::info!(
                    tenant,
                    records = s.replay.records,
                    samples = s.samples,
                    duration_ms = s.duration.as_millis() as u64,
                    "WAL replayed"
                );
            }
            ingester.set_ready();
            Ok(())
        })
    };

    let fsync = {
        let tsdb = Arc::clone(&tsdb);
        let metrics = Arc::clone(&metrics);
        let interval = args.wal_fsync_interval;
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
                    metrics.wal_fsync_failures.inc();
                    tracing::error!(?result, "WAL fsync failed");
                }
            }
        })
    };

    let shipper_enabled = shipper.is_some();
    let compaction = {
        let tsdb = Arc::clone(&tsdb);
        let ingester = Arc::clone(&ingester);
        let (interval, retention) = (args.head_compaction_interval, args.tsdb_retention);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if !ingester.is_ready() {
                    continue;
                }
                let tsdb = Arc::clone(&tsdb);
                let shipping = shipper_enabled;
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
    };
    let shipping = shipper.clone().map(|shipper| {
        let tsdb = Arc::clone(&tsdb);
        let ingester = Arc::clone(&ingester);
        let interval = args.shipper_sync_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if ingester.is_ready() {
                    sync_all(&shipper, &tsdb).await;
                }
            }
        })
    });

    let mut replay = replay;
    tokio::select! {
        r = &mut replay => r.context("WAL replay task")??,
        _ = shutdown_signal() => {
            tracing::info!("shutdown requested during WAL replay");
        }
    }
    if ingester.is_ready() {
        tracing::info!("ready");
        shutdown_signal().await;
    }
    tracing::info!("shutting down: draining in-flight requests");
    let _ = stop_tx.send(true);
    let drain = async {
        let _ = rw_server.await;
        let _ = ops_server.await;
        let _ = grpc_server.await;
    };
    if tokio::time::timeout(Duration::from_secs(30), drain)
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within 30s");
    }
    fsync.abort();
    compaction.abort();
    if let Some(s) = shipping {
        s.abort();
    }
    // Cut the whole head into blocks so a receiver that is scaled down leaves everything on disk
    // in block form; the WAL keeps the data if this does not finish in time.
    if ingester.is_ready() {
        let tsdb_for_flush = Arc::clone(&tsdb);
        let flush = tokio::task::spawn_blocking(move || tsdb_for_flush.flush_all());
        match tokio::time::timeout(args.flush_timeout, flush).await {
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
    if let Some(shipper) = &shipper {
        // A scaled-down receiver must leave nothing behind: upload what the flush produced.
        if tokio::time::timeout(args.flush_timeout, sync_all(shipper, &tsdb))
            .await
            .is_err()
        {
            tracing::error!(
                "final upload did not finish within --tsdb.flush-timeout; blocks stay on disk"
            );
        }
    }
    let tsdb_for_sync = Arc::clone(&tsdb);
    tokio::task::spawn_blocking(move || tsdb_for_sync.sync_all())
        .await
        .context("final WAL sync task")??;
    tracing::info!("WAL synced; bye");
    Ok(())
}

/// Uploads pending blocks of every tenant.
async fn sync_all(shipper: &Shipper, tsdb: &MultiTsdb) {
    for db in tsdb.tenants() {
        // Errors are counted and logged by the shipper; the next sync retries oldest first.
        let _ = shipper.sync(&db).await;
    }
}

/// Loads the first ring and starts the sources that keep it current; `None` when no ring is configured.
async fn start_ring_sources(
    args: &Args,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Option<Arc<RingHolder>>> {
    if args.hashrings_file.is_none()
        && args.hashrings_configmap.is_none()
        && args.hashrings.is_none()
    {
        return Ok(None);
    }
    let holder = Arc::new(RingHolder::new(
        args.replication_factor as usize,
        args.hashrings_algorithm.into(),
        Arc::clone(metrics),
    ));
    let cm_delivered = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(cm) = &args.hashrings_configmap {
        let (namespace, name) = ring::configmap::parse_ref(cm)
            .map_err(|e| anyhow::anyhow!("--receive.hashrings-configmap: {e}"))?;
        let client = kube::Client::try_default().await.context(
            "--receive.hashrings-configmap: no Kubernetes client (in-cluster config or KUBECONFIG)",
        )?;
        tokio::spawn(ring::configmap::watch(
            client,
            namespace,
            name,
            Arc::clone(&holder),
            Arc::clone(&cm_delivered),
        ));
    }
    if let Some(path) = &args.hashrings_file {
        ring::file::load_once(path, &holder, metrics);
        tokio::spawn(ring::file::watch(
            path.clone(),
            args.hashrings_refresh_interval,
            Arc::clone(&holder),
            Arc::clone(metrics),
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
