//! A value built from files and rebuilt when they change on disk (cert-manager and the kubelet
//! replace Secret files atomically), checked at most once per second by whoever uses it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use super::TlsError;

/// Shortest time between two looks at the files.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What identifies a file's content cheaply: modification time, length and inode (a Secret
/// volume swaps a symlink, so the inode changes even when the time does not).
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &PathBuf) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

type Build<T> = Box<dyn Fn() -> Result<T, TlsError> + Send + Sync>;

struct State {
    stamps: Vec<Stamp>,
    checked: Instant,
}

/// A value (a rustls config) that follows its files: a rebuild that fails keeps the value in
/// force and is logged once per change, so a half-written rotation never breaks a listener.
pub struct Reloading<T> {
    what: String,
    files: Vec<PathBuf>,
    build: Build<T>,
    current: ArcSwap<T>,
    state: Mutex<State>,
}

impl<T> Reloading<T> {
    /// Builds the value once (an error here is a start-up error) and remembers the files.
    pub fn new(
        what: impl Into<String>,
        files: Vec<PathBuf>,
        build: impl Fn() -> Result<T, TlsError> + Send + Sync + 'static,
    ) -> Result<Self, TlsError> {
        let stamps = files.iter().map(stamp).collect();
        let value = build()?;
        Ok(Reloading {
            what: what.into(),
            files,
            build: Box::new(build),
            current: ArcSwap::from_pointee(value),
            state: Mutex::new(State {
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    /// The value in force, rebuilt first if a file changed since the last look.
    pub fn get(&self) -> Arc<T> {
        self.check(false);
        self.current.load_full()
    }

    /// Looks at the files now (or once a second when not `force`); returns whether the value
    /// was rebuilt.
    pub fn check(&self, force: bool) -> bool {
        let Some(mut state) = self.state.try_lock() else {
            // Someone else is looking right now.
            return false;
        };
        if !force && state.checked.elapsed() < CHECK_EVERY {
            return false;
        }
        state.checked = Instant::now();
        let stamps: Vec<Stamp> = self.files.iter().map(stamp).collect();
        if stamps == state.stamps {
            return false;
        }
        state.stamps = stamps;
        match (self.build)() {
            Ok(value) => {
                self.current.store(Arc::new(value));
                tracing::info!(what = %self.what, "TLS files changed: reloaded");
                true
            }
            Err(e) => {
                tracing::warn!(what = %self.what, error = %e, "TLS files changed but do not load; the previous ones stay in force");
                false
            }
        }
    }
}

impl<T> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("what", &self.what)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_its_file_and_keeps_the_last_good_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("value");
        std::fs::write(&path, "1").unwrap();
        let p = path.clone();
        let r = Reloading::new("test", vec![path.clone()], move || {
            let text = std::fs::read_to_string(&p).map_err(|e| TlsError::Option(e.to_string()))?;
            text.trim()
                .parse::<u32>()
                .map_err(|e| TlsError::Option(e.to_string()))
        })
        .unwrap();
        assert_eq!(*r.get(), 1);
        std::fs::write(&path, "22").unwrap();
        assert!(r.check(true));
        assert_eq!(*r.get(), 22);
        // A broken file keeps the value in force.
        std::fs::write(&path, "x").unwrap();
        assert!(!r.check(true));
        assert_eq!(*r.get(), 22);
        // Replaced by rename, as a Secret volume does.
        let tmp = dir.path().join("tmp");
        std::fs::write(&tmp, "333").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert!(r.check(true));
        assert_eq!(*r.get(), 333);
    }
}
