//! TLS for every peer connection, in and out, from the files cert-manager writes into a Secret
//! (`tls.crt`, `tls.key`, `ca.crt`), reloaded when they change.
//!
//! There is no plaintext mode and no fallback: drand's February 2024 outage began with a hidden
//! TLS-to-plaintext fallback. A connection that fails TLS is refused and the refusal is logged
//! with the peer's address and the reason, and counted.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason} (the TLS folder must hold tls.crt, tls.key and ca.crt, as cert-manager writes them)")]
    Read { path: PathBuf, reason: String },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("peer address {address:?} has no host name or IP address usable for TLS")]
    ServerName { address: String },
}

/// Whether inbound peers must present a certificate from our CA (mutual TLS). Our own nodes
/// always do; drand's Go nodes present none, so a mixed network needs `Optional`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientAuth {
    Required,
    Optional,
}

/// The three files of a cert-manager Secret.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl TlsFiles {
    /// `tls.crt`, `tls.key` and `ca.crt` in `dir` (a mounted Secret).
    pub fn in_dir(dir: &Path) -> TlsFiles {
        TlsFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            ca: dir.join("ca.crt"),
        }
    }

    fn stamps(&self) -> Stamps {
        [&self.cert, &self.key, &self.ca]
            .iter()
            .map(|p| {
                std::fs::metadata(p)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())))
            })
            .collect()
    }
}

/// Server and client configurations built from one version of the files.
pub struct TlsConfigs {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

impl TlsConfigs {
    pub fn load(files: &TlsFiles, client_auth: ClientAuth) -> Result<TlsConfigs, TlsError> {
        let chain = certs(&files.cert)?;
        let key_pem = read(&files.key)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Invalid {
            path: files.key.clone(),
            reason: e.to_string(),
        })?;
        let mut roots = RootCertStore::empty();
        for ca in certs(&files.ca)? {
            roots.add(ca).map_err(|e| TlsError::Invalid {
                path: files.ca.clone(),
                reason: e.to_string(),
            })?;
        }
        let roots = Arc::new(roots);
        let provider = provider();

        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
        let verifier = match client_auth {
            ClientAuth::Required => verifier,
            ClientAuth::Optional => verifier.allow_unauthenticated(),
        }
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| TlsError::Invalid {
                path: files.key.clone(),
                reason: format!("does not match {}: {e}", files.cert.display()),
            })?;
        server.alpn_protocols = vec![b"h2".to_vec()];

        let mut client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| TlsError::Invalid {
                path: files.key.clone(),
                reason: e.to_string(),
            })?;
        client.alpn_protocols = vec![b"h2".to_vec()];
        Ok(TlsConfigs {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

/// Modification time and length of each TLS file, to notice renewals.
type Stamps = Vec<Option<(SystemTime, u64)>>;

/// The current TLS configuration, swapped in place when the files change on disk.
pub struct ReloadingTls {
    files: TlsFiles,
    client_auth: ClientAuth,
    current: RwLock<(Arc<TlsConfigs>, Stamps)>,
}

impl ReloadingTls {
    pub fn new(files: TlsFiles, client_auth: ClientAuth) -> Result<ReloadingTls, TlsError> {
        let stamps = files.stamps();
        let configs = TlsConfigs::load(&files, client_auth)?;
        Ok(ReloadingTls {
            files,
            client_auth,
            current: RwLock::new((Arc::new(configs), stamps)),
        })
    }

    pub fn current(&self) -> Arc<TlsConfigs> {
        match self.current.read() {
            Ok(guard) => guard.0.clone(),
            Err(poisoned) => poisoned.into_inner().0.clone(),
        }
    }

    /// Reloads if any file changed since the last load. A broken new version is reported and
    /// the previous configuration stays in use: a half-written renewal must not take the node
    /// off the network.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let stamps = self.files.stamps();
        let unchanged = match self.current.read() {
            Ok(g) => g.1 == stamps,
            Err(p) => p.into_inner().1 == stamps,
        };
        if unchanged {
            return Ok(false);
        }
        let configs = TlsConfigs::load(&self.files, self.client_auth)?;
        let mut guard = match self.current.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *guard = (Arc::new(configs), stamps);
        Ok(true)
    }

    /// Polls the files every `every` and reloads them when they change.
    pub fn spawn_watcher(
        self: &Arc<Self>,
        every: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                match me.reload_if_changed() {
                    Ok(true) => {
                        tracing::info!(cert = %me.files.cert.display(), "reloaded TLS certificate and CA from disk")
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "TLS files changed but cannot be loaded; keeping the previous certificate")
                    }
                }
            }
        })
    }
}

/// The TLS server name to expect from a peer at `address` ("host:port").
pub fn server_name(address: &str) -> Result<ServerName<'static>, TlsError> {
    let host = match address.rsplit_once(':') {
        Some((h, port)) if port.parse::<u16>().is_ok() => h,
        _ => address,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(|_| TlsError::ServerName {
        address: address.to_owned(),
    })
}

/// A short, stable name for why a TLS handshake failed: the label of the refusal metric.
pub fn refusal_reason(err: &std::io::Error) -> &'static str {
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidMessage(_)) => "not_tls",
        Some(rustls::Error::InvalidCertificate(_)) => "bad_certificate",
        Some(rustls::Error::NoCertificatesPresented) => "no_client_certificate",
        Some(rustls::Error::AlertReceived(_)) => "peer_alert",
        Some(rustls::Error::PeerIncompatible(_)) => "incompatible",
        Some(_) => "tls_error",
        None if err.kind() == std::io::ErrorKind::TimedOut => "timeout",
        None if err.kind() == std::io::ErrorKind::UnexpectedEof => "eof",
        None => "io_error",
    }
}

/// Human words for a refusal: what the peer most likely did.
pub fn refusal_explanation(reason: &str) -> &'static str {
    match reason {
        "not_tls" => {
            "the peer did not speak TLS (plaintext connection?); plaintext is never accepted"
        }
        "bad_certificate" => "the peer's certificate is not signed by our CA or is invalid",
        "no_client_certificate" => {
            "the peer presented no client certificate; peers must use mutual TLS"
        }
        "peer_alert" => "the peer aborted the handshake (it probably rejected our certificate)",
        "timeout" => "the TLS handshake did not complete in time",
        _ => "the TLS handshake failed",
    }
}
