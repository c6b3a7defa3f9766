//! Listeners that stay up under abuse: a connection cap per port (so one port's exhaustion never
//! takes another's descriptors), handshake, header and idle timeouts, and the process
//! descriptor limit; TLS when the port has it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::tls::{ClientIdentity, ServerTls};

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

/// Time a client has to complete a TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` over HTTP/1 on `listener` (over TLS when `tls` is set) with at most
/// `max_connections` connections open, until `shutdown` resolves; then lets in-flight requests
/// finish. Over TLS, each request carries the client certificate's [`ClientIdentity`].
pub async fn serve_http(
    listener: TcpListener,
    router: Router,
    max_connections: usize,
    tls: Option<Arc<ServerTls>>,
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
        let router = router.clone();
        let watcher = graceful.watcher();
        let acceptor = tls.as_ref().map(|t| t.acceptor());
        tokio::spawn(async move {
            let _permit = permit;
            let Some(acceptor) = acceptor else {
                let _ = watcher.watch(http1(stream, router, None)).await;
                return;
            };
            let stream =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake timed out");
                        return;
                    }
                };
            let identity = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|cert| ClientIdentity::from_der(cert));
            let _ = watcher.watch(http1(stream, router, identity)).await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// One HTTP/1 connection serving `router`, each request carrying `identity`.
fn http1<S>(
    stream: S,
    router: Router,
    identity: Option<ClientIdentity>,
) -> impl hyper_util::server::graceful::GracefulConnection
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let inner = TowerToHyperService::new(router);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        if let Some(id) = &identity {
            request.extensions_mut().insert(id.clone());
        }
        inner.call(request)
    });
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
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

/// A connection, plain or TLS, that holds one of its port's connection slots until it closes.
pub struct CappedStream {
    io: Io,
    _permit: OwnedSemaphorePermit,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// Accepted connections of `listener` (TLS-handshaken when `tls` is set), at most
/// `max_connections` open at once, for tonic. Handshakes run concurrently, so a slow client
/// never holds up the others.
pub fn capped_incoming(
    listener: TcpListener,
    max_connections: usize,
    tls: Option<Arc<ServerTls>>,
) -> impl futures::Stream<Item = std::io::Result<CappedStream>> {
    let permits = Arc::new(Semaphore::new(max_connections));
    let (tx, rx) = tokio::sync::mpsc::channel::<CappedStream>(64);
    tokio::spawn(async move {
        loop {
            // The server dropped the stream: stop accepting (and release the port).
            let (stream, permit) = tokio::select! {
                accepted = accept(&listener, &permits) => accepted,
                () = tx.closed() => return,
            };
            let Some(tls) = &tls else {
                let capped = CappedStream {
                    io: Io::Plain(stream),
                    _permit: permit,
                };
                if tx.send(capped).await.is_err() {
                    return;
                }
                continue;
            };
            let acceptor = tls.acceptor();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let capped = CappedStream {
                            io: Io::Tls(Box::new(stream)),
                            _permit: permit,
                        };
                        let _ = tx.send(capped).await;
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "gRPC TLS handshake failed"),
                    Err(_) => tracing::debug!("gRPC TLS handshake timed out"),
                }
            });
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        let stream = rx.recv().await?;
        Some((Ok(stream), rx))
    })
}

/// Delegates an I/O call to the plain or TLS stream.
macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match &mut $self.io {
            Io::Plain($s) => {
                let $s = Pin::new($s);
                $call
            }
            Io::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $call
            }
        }
    };
}

impl AsyncRead for CappedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for CappedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}

impl tonic::transport::server::Connected for CappedStream {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        match &self.io {
            Io::Plain(s) => s.connect_info(),
            Io::Tls(s) => s.get_ref().0.connect_info(),
        }
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
