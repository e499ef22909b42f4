//! Wires the node together: TLS, the chain store and runtime, the aggregation driver, the sync
//! manager, the peer gRPC services, the public HTTP API; and stops them cleanly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use beacon_core::crypto::PriShare;
use beacon_core::dkg::ceremony::Identity;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use crate::chain::driver::Driver;
use crate::chain::repair::Repairer;
use crate::chain::runtime::{ChainRuntime, GroupParams};
use crate::chain::source::{ChainSlot, ChainSlotSource};
use crate::chain::store::{ChainStore, StoreError};
use crate::chain::sync::SyncManager;
use crate::dkg::control::{ControlService, Origin};
use crate::dkg::public::DkgPublicService;
use crate::dkg::runner::{DkgHandle, GroupInstaller, Runner, RunnerConfig, RunnerError};
use crate::metrics::NodeMetrics;
use crate::net::client::PeerClients;
use crate::net::listener::{incoming, OnRefusal};
use crate::net::proto::control::control_server::ControlServer;
use crate::net::proto::dkg::dkg_public_server::DkgPublicServer;
use crate::net::proto::drand::protocol_server::ProtocolServer;
use crate::net::proto::drand::public_server::PublicServer;
use crate::net::proto::health::health_server::HealthServer;
use crate::net::server::{NodeIdentity, Services};
use crate::net::tls::{ClientAuth, ReloadingTls, TlsError, TlsFiles};
use crate::net::version::Version;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr} ({flag}): {source}; is another process using the port?")]
    Bind {
        flag: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("chain store: {0}")]
    Store(#[from] StoreError),
    #[error("metrics: {0}")]
    Metrics(String),
    #[error("our identity (address {address}) is not in the group file; this node is not a member of that group")]
    NotAMember { address: String },
    #[error("ceremony: {0}")]
    Ceremony(#[from] RunnerError),
    #[error("{0}")]
    Control(String),
    #[error("operator control listener (--operator-ca {ca}, with the certificate of the TLS folder): {source}")]
    OperatorTls { ca: PathBuf, source: TlsError },
}

pub struct DaemonConfig {
    pub dir: PathBuf,
    pub peer_listen: SocketAddr,
    pub public_listen: Option<SocketAddr>,
    pub tls: TlsFiles,
    pub client_auth: ClientAuth,
    pub tls_reload_every: Duration,
    pub version: Version,
    /// The local-only control listener (ceremony commands, status); must be a loopback address.
    pub control_listen: Option<SocketAddr>,
    /// The operator's listener for the control API (another pod reaches it): TLS with our peer
    /// certificate, client certificates from the operator's own CA only.
    pub operator_listen: Option<OperatorListen>,
    /// The long-term key, for the ceremonies.
    pub longterm: Identity,
}

/// Where the operator control listener listens and whose client certificates it accepts.
#[derive(Clone, Debug)]
pub struct OperatorListen {
    pub addr: SocketAddr,
    /// A PEM file of the CA that issues the operator's client certificates; it must not be (or
    /// share a certificate with) the peers' CA.
    pub ca: PathBuf,
}

impl OperatorListen {
    /// The operator listener never shares the peer port: the control API must not be reachable
    /// through the address every peer and relay talks to.
    pub fn check(&self, peer_listen: SocketAddr) -> Result<(), String> {
        let (a, p) = (self.addr.ip(), peer_listen.ip());
        let overlap = a == p || a.is_unspecified() || p.is_unspecified();
        if self.addr.port() == peer_listen.port() && overlap {
            return Err(format!(
                "--operator-listen {}: the same port as --peer-listen {peer_listen}; the control API never goes on the peer port, give it its own (8443 in the operator's pods)",
                self.addr
            ));
        }
        Ok(())
    }
}

/// A group and this node's share in it.
pub struct Membership {
    pub group: GroupParams,
    pub share: PriShare,
    /// When this group takes over the chain (unix seconds; the genesis for the first group).
    pub transition_time: i64,
}

/// A running node. Dropping it does not stop it; call [`Daemon::shutdown`].
pub struct Daemon {
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    manager: Arc<ChainManager>,
    pub peer_addr: SocketAddr,
    pub public_addr: Option<SocketAddr>,
    pub control_addr: Option<SocketAddr>,
    pub operator_addr: Option<SocketAddr>,
    pub metrics: Arc<NodeMetrics>,
    pub chain: ChainSlot,
    pub dkg: DkgHandle,
}

/// Runs the chain of the current group, and takes a new group in when a ceremony completes:
/// at once for the first group, at the transition time for a reshared one (the old group keeps
/// producing beacons until then, and the store carries over).
pub struct ChainManager {
    dir: PathBuf,
    address: String,
    version: Version,
    peers: Arc<PeerClients>,
    metrics: Arc<NodeMetrics>,
    shutdown: watch::Receiver<bool>,
    slot: ChainSlot,
    running: std::sync::Mutex<Option<RunningChain>>,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

struct RunningChain {
    stop: watch::Sender<bool>,
    store: Arc<ChainStore>,
}

impl ChainManager {
    fn push_task(&self, t: tokio::task::JoinHandle<()>) {
        match self.tasks.lock() {
            Ok(mut g) => g.push(t),
            Err(p) => p.into_inner().push(t),
        }
    }

    /// Starts producing beacons with `m`, stopping the previous group's tasks first.
    fn start_chain(&self, m: Membership) -> Result<(), DaemonError> {
        let my_index = m
            .group
            .members
            .iter()
            .find(|mem| mem.address == self.address)
            .map(|mem| mem.index)
            .ok_or_else(|| DaemonError::NotAMember {
                address: self.address.clone(),
            })?;
        let mut running = match self.running.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let store = match running.take() {
            Some(old) => {
                let _ = old.stop.send(true);
                old.store
            }
            // Checked before anything is served: bad rounds are marked and then read as absent.
            None => Arc::new(crate::chain::repair::open_and_check(
                &self.dir,
                &m.group.info,
                &self.metrics,
            )?),
        };
        let (stop, stop_rx) = watch::channel(false);
        // The chain's tasks stop with the daemon as well.
        let mut global = self.shutdown.clone();
        let forward = stop.clone();
        self.push_task(tokio::spawn(async move {
            let _ = global.changed().await;
            let _ = forward.send(true);
        }));
        let last = store.last()?.map(|b| b.round).unwrap_or(0);
        let (latest, _) = watch::channel(last);
        let (partials_tx, partials_rx) = mpsc::channel(1024);
        let (sync_tx, sync_rx) = mpsc::channel(8);
        let id = m.group.info.beacon_id.clone();
        self.metrics
            .group(&id, m.group.members.len(), m.group.threshold);
        self.metrics.beacon_stored(&id, last, Duration::ZERO);
        let rt = Arc::new(ChainRuntime {
            group: m.group,
            share: m.share,
            my_index,
            my_address: self.address.clone(),
            store: store.clone(),
            latest,
            partials: partials_tx,
            sync_requests: sync_tx,
        });
        let driver = Driver {
            rt: rt.clone(),
            peers: self.peers.clone(),
            metrics: self.metrics.clone(),
            version: self.version.clone(),
        };
        let sync = SyncManager {
            rt: rt.clone(),
            peers: self.peers.clone(),
            metrics: self.metrics.clone(),
            version: self.version.clone(),
        };
        let repairer = Repairer {
            rt: rt.clone(),
            peers: self.peers.clone(),
            metrics: self.metrics.clone(),
            version: self.version.clone(),
        };
        // Every new round builds on the last stored one: generation and sync start once it is
        // good (at once, unless the start-up check found it bad and it must be fetched again).
        let (tail_ok_tx, tail_ok) = oneshot::channel();
        self.push_task(tokio::spawn(repairer.run(tail_ok_tx, stop_rx.clone())));
        let chain_stop = stop_rx.clone();
        self.push_task(tokio::spawn(async move {
            if tail_ok.await.is_ok() {
                tokio::join!(
                    driver.run(partials_rx, chain_stop.clone()),
                    sync.run(sync_rx, chain_stop)
                );
            }
        }));
        // The store's size for /metrics, every few periods (a file stat and a counter read).
        let (stats_rt, stats_metrics, mut stop_stats) = (rt.clone(), self.metrics.clone(), stop_rx);
        self.push_task(tokio::spawn(async move {
            let every = Duration::from_secs(u64::from(stats_rt.group.period()).clamp(1, 10));
            loop {
                if let (Ok(bytes), Ok(rounds)) =
                    (stats_rt.store.size_on_disk(), stats_rt.store.len())
                {
                    // The count includes round 0, the genesis seed, which is not a beacon.
                    stats_metrics.store_size(
                        &stats_rt.info().beacon_id,
                        bytes,
                        rounds.saturating_sub(1),
                    );
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop_stats.changed() => return,
                }
            }
        }));
        // A restarted node, or a joiner, catches up before anything else (drand's Catchup).
        if rt.last_round() + 1 < rt.current_round() {
            let _ = rt.sync_requests.try_send(0);
        }
        tracing::info!(
            chain = %rt.info().hash_hex(),
            index = my_index,
            last_round = last,
            threshold = rt.group.threshold,
            members = rt.group.members.len(),
            "beacon chain loaded"
        );
        if let Ok(mut slot) = self.slot.write() {
            *slot = Some(rt);
        }
        *running = Some(RunningChain { stop, store });
        Ok(())
    }
}

impl GroupInstaller for Arc<ChainManager> {
    fn install(&self, m: Membership) {
        let has_chain = self.running.lock().map(|g| g.is_some()).unwrap_or(false);
        if !has_chain {
            if let Err(e) = self.start_chain(m) {
                tracing::error!(error = %e, "cannot start the chain of the new group");
            }
            return;
        }
        // A resharing: the old group signs until the transition round's time.
        let wait = m.transition_time - crate::chain::runtime::now_secs();
        tracing::info!(
            transition_time = m.transition_time,
            in_seconds = wait,
            "the new group takes over at the transition time"
        );
        let manager = self.clone();
        let mut stop = self.shutdown.clone();
        self.push_task(tokio::spawn(async move {
            let delay = Duration::from_secs(u64::try_from(wait.max(0)).unwrap_or(0));
            tokio::select! {
                _ = tokio::time::sleep(delay) => {
                    if let Err(e) = manager.start_chain(m) {
                        tracing::error!(error = %e, "cannot hand the chain over to the new group");
                    }
                }
                _ = stop.changed() => {}
            }
        }));
    }

    fn retire(&self, at: i64) {
        let wait = at - crate::chain::runtime::now_secs();
        let manager = self.clone();
        let mut stop = self.shutdown.clone();
        self.push_task(tokio::spawn(async move {
            let delay = Duration::from_secs(u64::try_from(wait.max(0)).unwrap_or(0));
            tokio::select! {
                _ = tokio::time::sleep(delay) => manager.stop_chain(),
                _ = stop.changed() => {}
            }
        }));
    }
}

impl ChainManager {
    fn stop_chain(&self) {
        let running = match self.running.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(r) = running {
            let _ = r.stop.send(true);
            tracing::info!("this node left the group: it no longer produces beacons (stored beacons are still served)");
        }
    }
}

impl Daemon {
    pub async fn start(
        config: DaemonConfig,
        identity: NodeIdentity,
        membership: Option<Membership>,
    ) -> Result<Daemon, DaemonError> {
        let tls = Arc::new(ReloadingTls::new(config.tls.clone(), config.client_auth)?);
        let operator_tls = match &config.operator_listen {
            None => None,
            Some(op) => {
                op.check(config.peer_listen).map_err(DaemonError::Control)?;
                let tls = ReloadingTls::operator(config.tls.clone(), op.ca.clone()).map_err(
                    |source| DaemonError::OperatorTls {
                        ca: op.ca.clone(),
                        source,
                    },
                )?;
                Some((op.addr, Arc::new(tls)))
            }
        };
        let metrics = Arc::new(
            NodeMetrics::new(&config.version.to_string())
                .map_err(|e| DaemonError::Metrics(e.to_string()))?,
        );
        let peers = Arc::new(PeerClients::new(tls.clone()));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = vec![tls.spawn_watcher(config.tls_reload_every)];

        let chain: ChainSlot = Arc::new(std::sync::RwLock::new(None));
        let manager = Arc::new(ChainManager {
            dir: config.dir.clone(),
            address: identity.address.clone(),
            version: config.version.clone(),
            peers: peers.clone(),
            metrics: metrics.clone(),
            shutdown: shutdown_rx.clone(),
            slot: chain.clone(),
            running: std::sync::Mutex::new(None),
            tasks: std::sync::Mutex::new(Vec::new()),
        });
        let mut beacon_id = "default".to_owned();
        if let Some(m) = membership {
            beacon_id = m.group.info.beacon_id.clone();
            manager.start_chain(m)?;
        }

        let (dkg, dkg_task) = Runner::start(
            RunnerConfig {
                dir: config.dir.clone(),
                identity: config.longterm.clone(),
                beacon_id: beacon_id.clone(),
                peers: peers.clone(),
                version: config.version.clone(),
                installer: Arc::new(manager.clone()),
            },
            shutdown_rx.clone(),
        )?;
        tasks.push(dkg_task);

        let services = Arc::new(Services {
            version: config.version.clone(),
            identity,
            chain: chain.clone(),
            metrics: metrics.clone(),
            peers: peers.clone(),
        });
        let dkg_public = DkgPublicService {
            handle: dkg.clone(),
            version: config.version.clone(),
            metrics: metrics.clone(),
        };
        let listener = bind("--peer-listen", config.peer_listen).await?;
        let peer_addr = listener.local_addr().unwrap_or(config.peer_listen);
        let m = metrics.clone();
        let on_refusal: OnRefusal = Arc::new(move |_addr, reason, _err| m.tls_refused(reason));
        let stream = incoming(listener, tls.clone(), "peer", on_refusal);
        let mut stop = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .add_service(ProtocolServer::new(services.clone()))
                .add_service(PublicServer::new(services))
                .add_service(DkgPublicServer::new(dkg_public).max_decoding_message_size(16 << 20))
                .add_service(HealthServer::new(crate::net::health::HealthService))
                .serve_with_incoming_shutdown(stream, async move {
                    let _ = stop.changed().await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "peer gRPC server stopped");
            }
        }));
        tracing::info!(peer = %peer_addr, "peer listener up (TLS only)");

        let control = |origin| ControlService {
            handle: dkg.clone(),
            origin,
            peers: peers.clone(),
            version: config.version.clone(),
            scheme: config.longterm.scheme,
            chain: chain.clone(),
            dir: config.dir.clone(),
        };
        let control_addr = match config.control_listen {
            None => None,
            Some(addr) => {
                crate::dkg::control::check_local(addr).map_err(DaemonError::Control)?;
                let listener = bind("--control-listen", addr).await?;
                let local = listener.local_addr().unwrap_or(addr);
                let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
                tasks.push(serve_control(
                    control(Origin::Local),
                    incoming,
                    shutdown_rx.clone(),
                ));
                tracing::info!(control = %local, "control listener up (local only)");
                Some(local)
            }
        };

        let operator_addr = match operator_tls {
            None => None,
            Some((addr, op_tls)) => {
                let listener = bind("--operator-listen", addr).await?;
                let local = listener.local_addr().unwrap_or(addr);
                tasks.push(op_tls.spawn_watcher(config.tls_reload_every));
                let m = metrics.clone();
                let on_refusal: OnRefusal =
                    Arc::new(move |_addr, reason, _err| m.control_tls_refused(reason));
                let incoming = incoming(listener, op_tls, "operator control", on_refusal);
                tasks.push(serve_control(
                    control(Origin::Operator),
                    incoming,
                    shutdown_rx.clone(),
                ));
                tracing::info!(operator = %local, "operator control listener up (TLS, client certificates from the operator CA only)");
                Some(local)
            }
        };

        let public_addr = match config.public_listen {
            None => None,
            Some(addr) => {
                let listener = bind("--public-listen", addr).await?;
                let local = listener.local_addr().unwrap_or(addr);
                let source = Arc::new(ChainSlotSource::new(chain.clone(), &beacon_id));
                let router = crate::http::router(
                    vec![source],
                    crate::http::system_clock(),
                    Some(metrics.clone()),
                );
                let mut stop = shutdown_rx.clone();
                tasks.push(tokio::spawn(async move {
                    let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                        let _ = stop.changed().await;
                    });
                    if let Err(e) = serve.await {
                        tracing::error!(error = %e, "public HTTP server stopped");
                    }
                }));
                tracing::info!(http = %local, "public HTTP API up");
                Some(local)
            }
        };

        Ok(Daemon {
            shutdown,
            tasks,
            manager,
            peer_addr,
            public_addr,
            control_addr,
            operator_addr,
            metrics,
            chain,
            dkg,
        })
    }

    /// Stops every task and waits for them.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let chain_tasks = match self.manager.tasks.lock() {
            Ok(mut g) => std::mem::take(&mut *g),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        for t in self.tasks.into_iter().chain(chain_tasks) {
            t.abort();
            let _ = t.await;
        }
    }
}

async fn bind(flag: &'static str, addr: SocketAddr) -> Result<TcpListener, DaemonError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Bind { flag, addr, source })
}

/// Serves the control API on `incoming` until the daemon stops.
fn serve_control<S, IO, E>(
    control: ControlService,
    incoming: S,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()>
where
    S: futures::Stream<Item = Result<IO, E>> + Send + 'static,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    tokio::spawn(async move {
        let origin = control.origin;
        let result = tonic::transport::Server::builder()
            .add_service(ControlServer::new(control))
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop.changed().await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, ?origin, "control server stopped");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::OperatorListen;

    fn op(addr: &str) -> OperatorListen {
        OperatorListen {
            addr: addr.parse().expect("addr"),
            ca: "ca.crt".into(),
        }
    }

    #[test]
    fn the_operator_listener_never_shares_the_peer_port() {
        let peer = "0.0.0.0:4444".parse().expect("addr");
        assert!(op("0.0.0.0:8443").check(peer).is_ok());
        for same in ["0.0.0.0:4444", "10.1.2.3:4444"] {
            let e = op(same).check(peer).expect_err(same);
            assert!(e.contains("--peer-listen"), "{e}");
        }
        let peer = "10.1.2.3:4444".parse().expect("addr");
        assert!(op("127.0.0.1:4444").check(peer).is_ok());
    }
}
