//! `thanos-receiver`: the remote-write receiver binary.

use receiver::cli::Args;

/// jemalloc rather than glibc malloc: it returns freed pages to the system (see `.cargo/config.toml`),
/// where glibc keeps a freed chunk wave's pages and a heap per thread.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    // kube links rustls' ring backend and object_store its aws-lc-rs one; with both present rustls
    // needs the process-wide choice made explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse_from_env();
    receiver::server::init_logging(args.log_level, args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    let result = runtime.block_on(receiver::server::run(args));
    // A flush that overran --tsdb.flush-timeout is still running on a blocking thread; the WAL
    // holds its data, so exit now instead of waiting for it.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "receiver failed");
            eprintln!("thanos-receiver: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
