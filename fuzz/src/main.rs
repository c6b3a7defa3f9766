//! `thanos-fuzz`: runs the fuzz targets for a number of executions each and reports crashes,
//! executions per second and peak memory. Crashing inputs are written under `fuzz/crashes/`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use fuzz::{Target, fuzz};

#[derive(Parser)]
#[command(about = "Fuzz the receiver's decoders and config parsers on the stable toolchain")]
struct Args {
    /// Targets to run (all when none is given).
    #[arg(value_enum)]
    targets: Vec<Target>,
    /// Executions per target.
    #[arg(long, default_value_t = 1_000_000)]
    iterations: u64,
    /// Seed of the mutator, for reproducible runs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Directory holding `<target>/` seed files.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/corpus"))]
    corpus: PathBuf,
    /// Writes the built-in seeds into the corpus directory and exits.
    #[arg(long)]
    write_seeds: bool,
}

/// Peak resident memory of this process in MiB (`VmHWM`).
fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let targets = if args.targets.is_empty() {
        Target::ALL.to_vec()
    } else {
        args.targets.clone()
    };
    if args.write_seeds {
        for t in targets {
            let dir = args.corpus.join(t.name());
            std::fs::create_dir_all(&dir).expect("corpus directory");
            for (i, seed) in fuzz::builtin_seeds(t).iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i}")), seed).expect("seed file");
            }
        }
        return ExitCode::SUCCESS;
    }
    // Panics are expected findings: keep their default report off the terminal.
    std::panic::set_hook(Box::new(|_| {}));
    let mut crashed = false;
    println!("target\texecutions\tseconds\texec/s\tcrashes\tpeak_rss_mib");
    for t in targets {
        let start = Instant::now();
        let report = fuzz(t, args.iterations, args.seed, &args.corpus);
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{}\t{}\t{:.1}\t{:.0}\t{}\t{}",
            t.name(),
            report.executions,
            secs,
            report.executions as f64 / secs,
            report.crashes.len(),
            peak_rss_mib()
        );
        for (i, (input, message)) in report.crashes.iter().enumerate() {
            crashed = true;
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("crashes")
                .join(t.name());
            let _ = std::fs::create_dir_all(&dir);
            let path = dir.join(format!("crash-{i}"));
            let _ = std::fs::write(&path, input);
            eprintln!("{}: {message} (input in {})", t.name(), path.display());
        }
    }
    if crashed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
