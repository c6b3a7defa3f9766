//! The `--receive.hashrings-file` source.
//!
//! The file is checked every 500 ms (size, modification time and inode of the resolved path, so
//! the kubelet's `..data` symlink swap is seen) and re-read when any of them changes, plus a full
//! re-read every `--receive.hashrings-file-refresh-interval`.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::RingHolder;
use crate::metrics::Metrics;

const POLL: Duration = Duration::from_millis(500);

fn fingerprint(path: &PathBuf) -> Option<(u64, i64, i64, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.mtime(), m.mtime_nsec(), m.ino()))
}

/// Reads the file once into the holder; an unreadable file counts as an error and keeps the ring.
pub fn load_once(path: &PathBuf, holder: &RingHolder, metrics: &Metrics) {
    metrics.ring_refreshes.inc();
    match std::fs::read(path) {
        Ok(bytes) => {
            let _ = holder.apply("file", &bytes);
        }
        Err(e) => {
            metrics.ring_errors.inc();
            tracing::error!(path = %path.display(), error = %e, "cannot read hashrings file; keeping the ring in force");
        }
    }
}

/// Watches the file until the process ends; stops applying once `superseded` is set (a ConfigMap
/// watch delivered, and the kubelet's copy of the same ConfigMap can only be older).
pub async fn watch(
    path: PathBuf,
    refresh: Duration,
    holder: Arc<RingHolder>,
    metrics: Arc<Metrics>,
    superseded: Arc<AtomicBool>,
) {
    let mut seen = fingerprint(&path);
    let mut last_full = Instant::now();
    loop {
        tokio::time::sleep(POLL).await;
        if superseded.load(Ordering::Relaxed) {
            return;
        }
        let now = fingerprint(&path);
        if now != seen || last_full.elapsed() >= refresh {
            seen = now;
            last_full = Instant::now();
            load_once(&path, &holder, &metrics);
        }
    }
}
