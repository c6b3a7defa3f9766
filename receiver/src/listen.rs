//! Listeners that stay up under abuse: a connection cap per port (so one port's exhaustion never
//! takes another's descriptors), header and idle timeouts, and the process descriptor limit.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Time a client has to send a request's headers; also how long an idle keep-alive connection
/// is kept, since the wait for the next request's headers starts when the last one ends.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Time a client has to send a request body.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Most connections the operational port (`/metrics`, probes, status) accepts at once.
pub const OPS_MAX_CONNECTIONS: usize = 64;

/// How many connections each port may hold, from the process' descriptor limit: half for
/// remote write, a quarter for gRPC, an eighth (at most 64) for the ops port, and the rest for
/// WAL segments, blocks, peers and the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCaps {
    /// Remote-write HTTP port.
    pub remote_write: usize,
    /// gRPC port.
    pub grpc: usize,
    /// Operational HTTP port.
    pub ops: usize,
}

impl ConnectionCaps {
    /// Caps for a process that may hold `nofile` descriptors.
    pub fn for_limit(nofile: u64) -> Self {
        let n = usize::try_from(nofile).unwrap_or(usize::MAX);
        ConnectionCaps {
            remote_write: (n / 2).max(4),
            grpc: (n / 4).max(4),
            ops: (n / 8).clamp(4, OPS_MAX_CONNECTIONS),
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as Go does for Thanos; returns the soft
/// limit now in force.
#[allow(
    unsafe_code,
    reason = "getrlimit/setrlimit have no safe wrapper in std"
)]
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

/// Serves `router` over HTTP/1 on `listener` with at most `max_connections` connections open,
/// until `shutdown` resolves; then lets in-flight requests finish.
pub async fn serve_http(
    listener: TcpListener,
    router: Router,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = accept(&listener, &permits) => accepted,
            () = &mut shutdown => break,
        };
        let (stream, permit) = accepted;
        let service = TowerToHyperService::new(router.clone());
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _permit = permit;
            let _ = conn.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Waits for a free connection slot, then for a connection. Accept errors (such as running out
/// of descriptors) are logged and retried after a pause instead of spinning.
async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> (TcpStream, OwnedSemaphorePermit) {
    let permit = Arc::clone(permits)
        .acquire_owned()
        .await
        .expect("the semaphore is never closed");
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                return (stream, permit);
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A TCP connection that holds one of its port's connection slots until it closes.
pub struct CappedStream {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

/// Accepted connections of `listener`, at most `max_connections` open at once, for tonic.
pub fn capped_incoming(
    listener: TcpListener,
    max_connections: usize,
) -> impl futures::Stream<Item = std::io::Result<CappedStream>> {
    let permits = Arc::new(Semaphore::new(max_connections));
    futures::stream::unfold((listener, permits), |(listener, permits)| async move {
        let (stream, permit) = accept(&listener, &permits).await;
        let capped = CappedStream {
            stream,
            _permit: permit,
        };
        Some((Ok(capped), (listener, permits)))
    })
}

impl AsyncRead for CappedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CappedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for CappedStream {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_follow_the_descriptor_limit() {
        let caps = ConnectionCaps::for_limit(1024);
        assert_eq!((caps.remote_write, caps.grpc, caps.ops), (512, 256, 64));
        assert!(caps.remote_write + caps.grpc + caps.ops < 1024);
        let low = ConnectionCaps::for_limit(160);
        assert_eq!((low.remote_write, low.grpc, low.ops), (80, 40, 20));
        let tiny = ConnectionCaps::for_limit(8);
        assert_eq!((tiny.remote_write, tiny.grpc, tiny.ops), (4, 4, 4));
    }
}
