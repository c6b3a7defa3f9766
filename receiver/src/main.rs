//! `thanos-receiver`: the remote-write receiver binary.

use receiver::cli::Args;

fn main() -> std::process::ExitCode {
    let args = Args::parse_from_env();
    receiver::server::init_logging(args.log_level, args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    match runtime.block_on(receiver::server::run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "receiver failed");
            eprintln!("thanos-receiver: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
