//! The threads uploads run on: a runtime of their own at a lower CPU priority. Sending a block
//! costs CPU (reading it, hashing every byte a SigV4 request signs, the HTTP writes); on the
//! write path's worker threads that work would delay the requests queued behind it, while here
//! it takes what the write path leaves over.

use std::future::Future;

use tokio::runtime::{Builder, Runtime};
use tokio::task::JoinError;

/// Nice value of the upload threads: below the write path, above the read threads (19), so an
/// upload still moves while writes keep the CPUs busy.
pub const UPLOAD_NICE: i32 = 10;

/// One worker thread and its blocking pool (file reads), all at [`UPLOAD_NICE`] or lower.
pub struct UploadRuntime(Option<Runtime>);

impl UploadRuntime {
    /// Starts the runtime.
    pub fn new() -> std::io::Result<Self> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("upload")
            .enable_all()
            .on_thread_start(lower_priority)
            .build()?;
        Ok(UploadRuntime(Some(runtime)))
    }

    /// Runs `work` on the upload threads and waits for it; dropping the returned future (a
    /// timeout, an aborted task) cancels the work as dropping it in place would.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, JoinError> {
        let runtime = self.0.as_ref().expect("kept until dropped");
        let mut task = AbortOnDrop(runtime.spawn(work));
        (&mut task.0).await
    }
}

impl Drop for UploadRuntime {
    fn drop(&mut self) {
        // Dropping a runtime waits for its threads, which panics inside another runtime.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// On Linux a thread ID names one thread, so this leaves the write path's threads alone.
fn lower_priority() {
    let tid = Some(rustix::thread::gettid());
    if rustix::process::getpriority_process(tid).is_ok_and(|nice| nice >= UPLOAD_NICE) {
        return;
    }
    if let Err(e) = rustix::process::setpriority_process(tid, UPLOAD_NICE) {
        tracing::warn!(error = %e, "cannot lower the priority of an upload thread");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_nice() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
    }

    #[tokio::test]
    async fn work_runs_at_upload_priority_and_a_dropped_wait_cancels_it() {
        let before = own_nice();
        let uploads = UploadRuntime::new().unwrap();
        assert!(uploads.run(async { own_nice() }).await.unwrap() >= UPLOAD_NICE);
        let blocking = uploads
            .run(async { tokio::task::spawn_blocking(own_nice).await.unwrap() })
            .await
            .unwrap();
        assert!(blocking >= UPLOAD_NICE);
        // The caller's thread keeps its priority.
        assert_eq!(own_nice(), before);

        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let waiting = uploads.run(async move {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            drop(tx);
        });
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), waiting)
                .await
                .is_err()
        );
        // The aborted work dropped its sender long before its minute was up.
        tokio::time::timeout(std::time::Duration::from_secs(5), rx)
            .await
            .expect("work cancelled")
            .unwrap_err();
    }
}
