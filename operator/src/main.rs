//! `thanos-receiver-operator`: runs the ThanosReceiver controller.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::events::{Recorder, Reporter};
use operator::build::MANAGER;
use operator::controller::{self, Context};
use operator::http::{self, Health};
use operator::lease::{LeaderElector, LeaseConfig};
use operator::metrics::Metrics;

/// Reconciles ThanosReceiver resources into receivers, Services and a live hashring ConfigMap.
#[derive(Debug, Parser)]
#[command(name = "thanos-receiver-operator", version)]
struct Args {
    /// DNS domain of the cluster, used in ring endpoints.
    #[arg(long, env = "CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
    /// Receiver image of ThanosReceivers that name none (`spec.image`).
    #[arg(long, env = "RECEIVER_IMAGE", default_value_t = operator::build::default_image())]
    receiver_image: String,
    /// Only watch this namespace (all namespaces when unset).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Kubeconfig file; in-cluster config or $KUBECONFIG when unset.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_address: SocketAddr,
    /// Elect a leader on a Lease, so that several replicas can run.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = MANAGER)]
    lease_name: String,
    /// This replica's identity in the Lease; the pod name in a cluster.
    #[arg(long, env = "POD_NAME")]
    lease_identity: Option<String>,
    /// Seconds a leader that stopped renewing keeps the Lease.
    #[arg(long, default_value_t = 15)]
    lease_duration_seconds: u64,
    /// Log level (`debug`, `info`, `warn`, `error`) or a full filter such as `info,kube=debug`;
    /// `RUST_LOG` overrides it.
    #[arg(long = "log.level", default_value = "info")]
    log_level: String,
    /// Log format.
    #[arg(long = "log.format", value_enum, default_value = "logfmt")]
    log_format: LogFormat,
    /// Without a subcommand the operator runs against the cluster.
    #[command(subcommand)]
    command: Option<Command>,
}

/// What to do instead of running the controller.
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Prints, as YAML, every object the operator would apply for a ThanosReceiver once all its
    /// receivers are Ready (for GitOps and review); no cluster is needed.
    Render {
        /// The ThanosReceiver manifest (`-` for standard input).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
    },
}

/// `render`: reads the manifest and prints the objects; errors name the file.
fn render(
    file: &std::path::Path,
    cluster_domain: &str,
    receiver_image: &str,
) -> anyhow::Result<()> {
    let text = if file == std::path::Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let tr: operator::crd::ThanosReceiver = serde_yaml::from_str(&text)
        .with_context(|| format!("{} is not a ThanosReceiver", file.display()))?;
    print!(
        "{}",
        operator::build::render(&tr, cluster_domain, receiver_image)?
    );
    Ok(())
}

/// Values of `--log.format`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    /// `key=value` lines, as the receiver and Thanos log.
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// Installs the global logger; the kube client's own chatter stays at `warn` unless asked for.
fn init_logging(level: &str, format: LogFormat) {
    use tracing_subscriber::prelude::*;
    let directives = if level.contains('=') {
        level.to_owned()
    } else {
        format!("{level},kube=warn")
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(directives));
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::Render { file }) = &args.command {
        return render(file, &args.cluster_domain, &args.receiver_image);
    }
    init_logging(&args.log_level, args.log_format);
    // A workspace build can enable both of rustls' crypto backends (other crates pull in
    // aws-lc-rs), and rustls then refuses to guess; kube is built for ring, so say so.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).context("reading --kubeconfig")?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    let client = kube::Client::try_from(config)?;
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health {
        metrics: metrics.clone(),
        ready: false.into(),
    });
    let server = tokio::spawn(http::serve(args.metrics_address, health.clone()));

    let namespace = args.namespace.as_deref();
    controller::check_crd(&client, namespace).await?;
    health.ready.store(true, Ordering::Release);

    let identity = args.lease_identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: Some(identity.clone()),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        cluster_domain: args.cluster_domain.clone(),
        receiver_image: args.receiver_image.clone(),
        metrics: metrics.clone(),
        recorder: Recorder::new(client.clone(), reporter.clone()),
        reporter,
    });
    if !args.leader_elect {
        controller::run(ctx, namespace).await;
        return Ok(());
    }
    let elector = LeaderElector::new(
        client,
        LeaseConfig {
            namespace: args.lease_namespace.clone(),
            name: args.lease_name.clone(),
            identity: identity.clone(),
            duration: Duration::from_secs(args.lease_duration_seconds),
        },
    );
    tracing::info!(%identity, "waiting for the leader Lease");
    tokio::select! {
        () = elector.acquire() => {}
        _ = tokio::signal::ctrl_c() => return Ok(()),
        r = server => anyhow::bail!("HTTP server stopped: {r:?}"),
    }
    tracing::info!(%identity, "leading");
    metrics.set_leader(true);
    tokio::select! {
        () = controller::run(ctx, namespace) => Ok(()),
        // Exiting (rather than carrying on) guarantees a replica that lost the Lease writes nothing more.
        lost = elector.hold() => Err(lost.into()),
    }
}
