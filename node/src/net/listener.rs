//! The peer listener: TCP accept, TLS handshake (ours, so that refusals are logged with the
//! peer's address and reason, and certificates reload), then gRPC over the TLS stream.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use super::tls::{refusal_explanation, refusal_reason, ReloadingTls};

/// How long a peer has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a request handler knows about the connection it came on.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub remote: SocketAddr,
}

/// An accepted, authenticated TLS connection from a peer.
pub struct PeerConn {
    inner: TlsStream<TcpStream>,
    remote: SocketAddr,
}

impl Connected for PeerConn {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        PeerInfo {
            remote: self.remote,
        }
    }
}

impl AsyncRead for PeerConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Called for every refused connection with the peer's address, a short reason (the metric
/// label) and the full error.
pub type OnRefusal = Arc<dyn Fn(SocketAddr, &'static str, &io::Error) + Send + Sync>;

/// Accepts connections on `listener` and yields those that complete TLS. Everything else is
/// refused, logged with the peer's address, the reason and which listener (`name`: "peer",
/// "operator control"), and reported to `on_refusal`.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<ReloadingTls>,
    name: &'static str,
    on_refusal: OnRefusal,
) -> ReceiverStream<Result<PeerConn, io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, listener = name, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            if tx.is_closed() {
                return;
            }
            let acceptor = TlsAcceptor::from(tls.current().server.clone());
            let tx = tx.clone();
            let on_refusal = on_refusal.clone();
            tokio::spawn(async move {
                let result = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                    .await
                    .unwrap_or_else(|_| {
                        Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "TLS handshake timed out",
                        ))
                    });
                match result {
                    Ok(inner) => {
                        let _ = tx.send(Ok(PeerConn { inner, remote })).await;
                    }
                    Err(e) => {
                        let reason = refusal_reason(&e);
                        tracing::warn!(
                            peer = %remote,
                            reason,
                            error = %e,
                            "refused {name} connection: {}",
                            refusal_explanation(reason)
                        );
                        on_refusal(remote, reason, &e);
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
