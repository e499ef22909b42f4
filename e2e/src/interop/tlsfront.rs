//! The TLS terminator in front of a drand node's private listener.
//!
//! drand v2.1 serves its node-to-node gRPC (`drand.Protocol`, `drand.Public`,
//! `dkg.DKGPublic`) on plaintext HTTP/2 only (`internal/net/listener.go`,
//! `NewGRPCListenerForPrivate`: "assuming the node is behind a reverse proxy doing TLS
//! termination"), while every connection it opens to a peer is TLS >= 1.2 verified against
//! the system roots (`internal/net/conn_tls.go`; plaintext dialing exists only behind the
//! `conn_insecure` build tag, which we do not set). drand's deployment guide puts nginx in
//! front; here that job is done by this terminator, so drand nodes appear on the network
//! exactly as in production: a TLS endpoint whose certificate comes from the network's CA.
//!
//! It accepts TLS only (a plaintext client fails the handshake and is counted), offers ALPN
//! `h2` (grpc-go refuses a TLS server that does not), asks for no client certificate (as
//! nginx in drand's guide; drand presents none), and copies bytes both ways between the
//! decrypted stream and drand's plaintext listener on loopback.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::error::{Error, Result};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Counters of one terminator.
#[derive(Debug, Default)]
pub struct FrontStats {
    /// Connections that completed TLS and were forwarded.
    pub forwarded: AtomicU64,
    /// Connections refused: not TLS, a failed handshake, or a timeout.
    pub refused: AtomicU64,
    /// TLS connections whose backend (the drand node) could not be reached.
    pub backend_down: AtomicU64,
}

/// A running terminator; stops accepting when dropped (open connections end with it).
pub struct TlsFront {
    listen: SocketAddr,
    backend: SocketAddr,
    stats: Arc<FrontStats>,
    task: tokio::task::JoinHandle<()>,
}

fn server_config(cert_pem: &str, key_pem: &str) -> Result<Arc<ServerConfig>> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        Error::Invalid(format!("TLS terminator: {what}: {e}"))
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad("certificate PEM", &e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| bad("key PEM", &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("protocol versions", &e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| bad("certificate and key", &e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

impl TlsFront {
    /// Listens on `listen` (bound before this returns) and forwards to `backend`. Runs on
    /// `runtime`.
    pub fn start(
        runtime: &tokio::runtime::Handle,
        listen: SocketAddr,
        backend: SocketAddr,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<TlsFront> {
        let config = server_config(cert_pem, key_pem)?;
        let std_listener = std::net::TcpListener::bind(listen).map_err(|e| {
            Error::Invalid(format!(
                "TLS terminator: cannot listen on {listen}: {e} (is the port taken?)"
            ))
        })?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| Error::Invalid(format!("TLS terminator on {listen}: {e}")))?;
        let stats = Arc::new(FrontStats::default());
        let task = {
            let _guard = runtime.enter();
            let listener = TcpListener::from_std(std_listener)
                .map_err(|e| Error::Invalid(format!("TLS terminator on {listen}: {e}")))?;
            runtime.spawn(accept_loop(
                listener,
                TlsAcceptor::from(config),
                backend,
                stats.clone(),
            ))
        };
        Ok(TlsFront {
            listen,
            backend,
            stats,
            task,
        })
    }

    /// The TLS address: the node's address in group files.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    pub fn backend(&self) -> SocketAddr {
        self.backend
    }

    pub fn stats(&self) -> &FrontStats {
        &self.stats
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    backend: SocketAddr,
    stats: Arc<FrontStats>,
) {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(x) => x,
            Err(_) => {
                // Out of descriptors and the like: wait instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                _ => {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            let Ok(mut upstream) = TcpStream::connect(backend).await else {
                stats.backend_down.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let _ = upstream.set_nodelay(true);
            stats.forwarded.fetch_add(1, Ordering::Relaxed);
            let mut tls = tls;
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A TLS client (trusting the test CA, offering h2) reaches the backend through the
    /// terminator and the bytes arrive unchanged both ways; a plaintext client is refused.
    #[test]
    fn forwards_tls_and_refuses_plaintext() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let ca = beacon_node::net::pki::TestCa::new("front test CA").expect("CA");
            let issued = ca.issue(&["127.0.0.1".to_owned()]).expect("cert");
            let backend = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let backend_addr = backend.local_addr().expect("addr");
            tokio::spawn(async move {
                while let Ok((mut s, _)) = backend.accept().await {
                    tokio::spawn(async move {
                        let mut buf = [0u8; 5];
                        if s.read_exact(&mut buf).await.is_ok() {
                            buf.reverse();
                            let _ = s.write_all(&buf).await;
                        }
                    });
                }
            });
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port");
            let front = TlsFront::start(
                &tokio::runtime::Handle::current(),
                port,
                backend_addr,
                &issued.cert_pem,
                &issued.key_pem,
            )
            .expect("front");

            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca.ca_pem().as_bytes()) {
                roots.add(c.expect("ca pem")).expect("root");
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut client = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            client.alpn_protocols = vec![b"h2".to_vec()];
            let tcp = TcpStream::connect(front.listen()).await.expect("connect");
            let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name");
            let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
                .connect(name, tcp)
                .await
                .expect("TLS through the front");
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
            tls.write_all(b"hello").await.expect("write");
            let mut back = [0u8; 5];
            tls.read_exact(&mut back).await.expect("read");
            assert_eq!(&back, b"olleh");

            let mut plain = TcpStream::connect(front.listen()).await.expect("connect");
            let _ = plain.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
            let mut sink = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut sink)).await;
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while front.stats().refused.load(Ordering::Relaxed) == 0
                && std::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(front.stats().refused.load(Ordering::Relaxed), 1);
            assert_eq!(front.stats().forwarded.load(Ordering::Relaxed), 1);
        });
    }
}
