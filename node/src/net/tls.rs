//! TLS for every peer connection, in and out, from the files cert-manager writes into a Secret
//! (`tls.crt`, `tls.key`, `ca.crt`), reloaded when they change; and for the operator listener,
//! which presents the same certificate but accepts only clients of the operator's own CA.
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
    #[error("--operator-ca {operator_ca}: holds a certificate that is also in the peers' CA {peer_ca}; the operator listener must trust a CA that only the operator holds (with the peers' CA, every peer could run ceremony commands)")]
    SharedOperatorCa {
        operator_ca: PathBuf,
        peer_ca: PathBuf,
    },
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
}

/// What a listener's TLS is for.
#[derive(Clone, Debug)]
enum Purpose {
    /// Peers: client certificates from the peers' CA (`ca.crt`).
    Peer(ClientAuth),
    /// The operator listener: client certificates from this CA only, always required.
    Operator { ca: PathBuf },
}

impl Purpose {
    fn stamps(&self, files: &TlsFiles) -> Stamps {
        let mut paths = vec![&files.cert, &files.key, &files.ca];
        if let Purpose::Operator { ca } = self {
            paths.push(ca);
        }
        paths
            .into_iter()
            .map(|p| {
                std::fs::metadata(p)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())))
            })
            .collect()
    }

    fn load(&self, files: &TlsFiles) -> Result<TlsConfigs, TlsError> {
        match self {
            Purpose::Peer(auth) => TlsConfigs::load(files, *auth),
            Purpose::Operator { ca } => TlsConfigs::load_operator(files, ca),
        }
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

/// The certificates of PEM text; `origin` names it in errors (a file, or what a caller passed).
fn parse_certs(pem: &[u8], origin: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid {
            path: origin.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: origin.to_owned(),
        });
    }
    Ok(certs)
}

fn parse_key(pem: &[u8], origin: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Invalid {
        path: origin.to_owned(),
        reason: e.to_string(),
    })
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    parse_certs(&read(path)?, path)
}

fn root_store(
    certs: Vec<CertificateDer<'static>>,
    origin: &Path,
) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in certs {
        roots.add(ca).map_err(|e| TlsError::Invalid {
            path: origin.to_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    root_store(certs(path)?, path)
}

/// A client that trusts `roots` and presents `chain` (mutual TLS), speaking HTTP/2.
fn client_config(
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    key_origin: &Path,
) -> Result<ClientConfig, TlsError> {
    let mut client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| TlsError::Invalid {
            path: key_origin.to_owned(),
            reason: format!("does not match its certificate: {e}"),
        })?;
    client.alpn_protocols = vec![b"h2".to_vec()];
    Ok(client)
}

/// A client configuration from PEM text held in memory (the operator's, from Kubernetes
/// Secrets): trust the certificates of `ca_pem`, present `cert_pem` with `key_pem`.
pub fn client_config_from_pem(
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<ClientConfig, TlsError> {
    let ca_origin = Path::new("the server CA (PEM)");
    let roots = root_store(parse_certs(ca_pem, ca_origin)?, ca_origin)?;
    let chain = parse_certs(cert_pem, Path::new("the client certificate (PEM)"))?;
    let key_origin = Path::new("the client key (PEM)");
    let key = parse_key(key_pem, key_origin)?;
    client_config(Arc::new(roots), chain, key, key_origin)
}

impl TlsConfigs {
    pub fn load(files: &TlsFiles, client_auth: ClientAuth) -> Result<TlsConfigs, TlsError> {
        Self::build(files, roots(&files.ca)?, client_auth)
    }

    /// The operator listener's: our peer certificate, and only client certificates that chain to
    /// `operator_ca`, which must share no certificate with the peers' CA. Its client half trusts
    /// only the operator's CA, so nothing dialled with it could reach a peer.
    pub fn load_operator(files: &TlsFiles, operator_ca: &Path) -> Result<TlsConfigs, TlsError> {
        let peer_cas = certs(&files.ca)?;
        if certs(operator_ca)?.iter().any(|c| peer_cas.contains(c)) {
            return Err(TlsError::SharedOperatorCa {
                operator_ca: operator_ca.to_owned(),
                peer_ca: files.ca.clone(),
            });
        }
        Self::build(files, roots(operator_ca)?, ClientAuth::Required)
    }

    fn build(
        files: &TlsFiles,
        roots: RootCertStore,
        client_auth: ClientAuth,
    ) -> Result<TlsConfigs, TlsError> {
        let chain = certs(&files.cert)?;
        let key = parse_key(&read(&files.key)?, &files.key)?;
        let roots = Arc::new(roots);
        let provider = provider();

        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
        let verifier = match client_auth {
            ClientAuth::Required => verifier,
            ClientAuth::Optional => verifier.allow_unauthenticated(),
        }
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| TlsError::Invalid {
                path: files.key.clone(),
                reason: format!("does not match {}: {e}", files.cert.display()),
            })?;
        server.alpn_protocols = vec![b"h2".to_vec()];
        let client = client_config(roots, chain, key, &files.key)?;
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
    purpose: Purpose,
    current: RwLock<(Arc<TlsConfigs>, Stamps)>,
}

impl ReloadingTls {
    pub fn new(files: TlsFiles, client_auth: ClientAuth) -> Result<ReloadingTls, TlsError> {
        Self::with_purpose(files, Purpose::Peer(client_auth))
    }

    /// The operator listener's TLS (see [`TlsConfigs::load_operator`]), reloaded when the peer
    /// certificate or the operator's CA changes.
    pub fn operator(files: TlsFiles, operator_ca: PathBuf) -> Result<ReloadingTls, TlsError> {
        Self::with_purpose(files, Purpose::Operator { ca: operator_ca })
    }

    fn with_purpose(files: TlsFiles, purpose: Purpose) -> Result<ReloadingTls, TlsError> {
        let stamps = purpose.stamps(&files);
        let configs = purpose.load(&files)?;
        Ok(ReloadingTls {
            files,
            purpose,
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
        let stamps = self.purpose.stamps(&self.files);
        let unchanged = match self.current.read() {
            Ok(g) => g.1 == stamps,
            Err(p) => p.into_inner().1 == stamps,
        };
        if unchanged {
            return Ok(false);
        }
        let configs = self.purpose.load(&self.files)?;
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
        "bad_certificate" => {
            "the client's certificate is not signed by the CA this listener trusts, or is invalid"
        }
        "no_client_certificate" => {
            "the client presented no certificate; this listener requires mutual TLS"
        }
        "peer_alert" => "the peer aborted the handshake (it probably rejected our certificate)",
        "timeout" => "the TLS handshake did not complete in time",
        _ => "the TLS handshake failed",
    }
}
