//! Outgoing peer connections: always TLS (our CA, our client certificate), never plaintext.
//! The connector below is the only way this node dials a peer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

use super::proto::dkg::dkg_public_client::DkgPublicClient;
use super::proto::drand::protocol_client::ProtocolClient;
use super::proto::drand::public_client::PublicClient;
use super::tls::{server_name, ReloadingTls, TlsError};

/// Per-call timeout for peer requests (drand: 5 s).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A lazily-connected TLS channel per peer address, reused across calls.
pub struct PeerClients {
    tls: Arc<ReloadingTls>,
    channels: Mutex<HashMap<String, Channel>>,
}

impl PeerClients {
    pub fn new(tls: Arc<ReloadingTls>) -> PeerClients {
        PeerClients {
            tls,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// The channel to `address` ("host:port"), TLS-verified against our CA.
    pub fn channel(&self, address: &str) -> Result<Channel, TlsError> {
        let mut channels = match self.channels.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(ch) = channels.get(address) {
            return Ok(ch.clone());
        }
        let ch = connect_lazy(self.tls.clone(), address)?;
        channels.insert(address.to_owned(), ch.clone());
        Ok(ch)
    }

    /// Forgets the channel to `address`, so that the next call reconnects (after a peer restarts
    /// with a new certificate, for instance).
    pub fn reset(&self, address: &str) {
        if let Ok(mut g) = self.channels.lock() {
            g.remove(address);
        }
    }

    pub fn protocol(&self, address: &str) -> Result<ProtocolClient<Channel>, TlsError> {
        Ok(ProtocolClient::new(self.channel(address)?).max_decoding_message_size(16 << 20))
    }

    pub fn public(&self, address: &str) -> Result<PublicClient<Channel>, TlsError> {
        Ok(PublicClient::new(self.channel(address)?))
    }

    pub fn dkg(&self, address: &str) -> Result<DkgPublicClient<Channel>, TlsError> {
        Ok(DkgPublicClient::new(self.channel(address)?).max_decoding_message_size(16 << 20))
    }
}

/// A channel to a peer whose every connection is TCP + TLS with the node's current certificate
/// and CA (reloaded ones included).
pub fn connect_lazy(tls: Arc<ReloadingTls>, address: &str) -> Result<Channel, TlsError> {
    let name = server_name(address)?;
    tls_channel(
        address,
        name,
        move || tls.current().client.clone(),
        CONNECT_TIMEOUT,
    )
}

/// A channel whose every connection is TCP + TLS to `address`, verified as `name`, with the
/// client configuration `config` gives at that moment. The `http://` in the endpoint only tells
/// tonic to speak HTTP/2 directly over the stream our connector returns, which is always a TLS
/// stream. No I/O happens until the first call.
pub fn tls_channel<F>(
    address: &str,
    name: ServerName<'static>,
    config: F,
    connect_timeout: Duration,
) -> Result<Channel, TlsError>
where
    F: Fn() -> Arc<ClientConfig> + Clone + Send + Sync + 'static,
{
    let target = address.to_owned();
    let connector = tower::service_fn(move |_uri: tonic::transport::Uri| {
        let config = config.clone();
        let target = target.clone();
        let name = name.clone();
        async move {
            let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect(&target))
                .await
                .map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("connecting to {target} timed out"),
                    )
                })??;
            let _ = tcp.set_nodelay(true);
            let stream = TlsConnector::from(config())
                .connect(name, tcp)
                .await
                .map_err(|e| {
                    tracing::warn!(peer = %target, error = %e, "TLS handshake failed; not retrying in plaintext (there is no plaintext mode)");
                    e
                })?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    let endpoint =
        Endpoint::from_shared(format!("http://{address}")).map_err(|_| TlsError::ServerName {
            address: address.to_owned(),
        })?;
    Ok(endpoint
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect_with_connector_lazy(connector))
}
