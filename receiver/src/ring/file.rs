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

const POLL: Duration = Duration::from_millis(500);
/// Largest hashrings file read; a ring of thousands of endpoints is a few hundred KiB.
pub const MAX_FILE_SIZE: u64 = 4 << 20;

fn fingerprint(path: &PathBuf) -> Option<(u64, i64, i64, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.mtime(), m.mtime_nsec(), m.ino()))
}

/// Reads a regular file of at most [`MAX_FILE_SIZE`] bytes without blocking on what is not one
/// (a FIFO or a device at the ring path must not hang the watcher, nor `/dev/zero` fill memory).
fn read_capped(path: &PathBuf) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_FILE_SIZE} bytes"
        )));
    }
    Ok(bytes)
}

/// Reads the file once into the holder; an unreadable file counts as an error and keeps the ring.
/// Blocking: call it off the async workers.
pub fn load_once(path: &PathBuf, holder: &RingHolder) {
    holder.metrics().file_read();
    match read_capped(path) {
        Ok(bytes) => {
            let _ = holder.apply("file", &bytes);
        }
        Err(e) => {
            holder.metrics().unreadable();
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
    superseded: Arc<AtomicBool>,
) {
    let mut seen = fingerprint(&path);
    let mut last_full = Instant::now();
    loop {
        tokio::time::sleep(POLL).await;
        if superseded.load(Ordering::Relaxed) {
            return;
        }
        let p = path.clone();
        let now = tokio::task::spawn_blocking(move || fingerprint(&p))
            .await
            .ok()
            .flatten();
        if now != seen || last_full.elapsed() >= refresh {
            seen = now;
            last_full = Instant::now();
            let (p, h) = (path.clone(), Arc::clone(&holder));
            let _ = tokio::task::spawn_blocking(move || load_once(&p, &h)).await;
        }
    }
}
