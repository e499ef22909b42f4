//! Wires the node together: TLS, the chain store and runtime, the aggregation driver, the sync
//! manager, the peer gRPC services, the public HTTP API; and stops them cleanly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use beacon_core::crypto::PriShare;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use crate::chain::driver::Driver;
use crate::chain::repair::Repairer;
use crate::chain::runtime::{ChainRuntime, GroupParams};
use crate::chain::source::{ChainSlot, ChainSlotSource};
use crate::chain::store::StoreError;
use crate::chain::sync::SyncManager;
use crate::metrics::NodeMetrics;
use crate::net::client::PeerClients;
use crate::net::listener::{incoming, OnRefusal};
use crate::net::proto::drand::protocol_server::ProtocolServer;
use crate::net::proto::drand::public_server::PublicServer;
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
}

pub struct DaemonConfig {
    pub dir: PathBuf,
    pub peer_listen: SocketAddr,
    pub public_listen: Option<SocketAddr>,
    pub tls: TlsFiles,
    pub client_auth: ClientAuth,
    pub tls_reload_every: Duration,
    pub version: Version,
}

/// A group and this node's share in it.
pub struct Membership {
    pub group: GroupParams,
    pub share: PriShare,
}

/// A running node. Dropping it does not stop it; call [`Daemon::shutdown`].
pub struct Daemon {
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub peer_addr: SocketAddr,
    pub public_addr: Option<SocketAddr>,
    pub metrics: Arc<NodeMetrics>,
    pub chain: ChainSlot,
}

impl Daemon {
    pub async fn start(
        config: DaemonConfig,
        identity: NodeIdentity,
        membership: Option<Membership>,
    ) -> Result<Daemon, DaemonError> {
        let tls = Arc::new(ReloadingTls::new(config.tls.clone(), config.client_auth)?);
        let metrics = Arc::new(
            NodeMetrics::new(&config.version.to_string())
                .map_err(|e| DaemonError::Metrics(e.to_string()))?,
        );
        let peers = Arc::new(PeerClients::new(tls.clone()));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = vec![tls.spawn_watcher(config.tls_reload_every)];

        let chain: ChainSlot = Arc::new(std::sync::RwLock::new(None));
        let mut beacon_id = "default".to_owned();
        if let Some(m) = membership {
            beacon_id = m.group.info.beacon_id.clone();
            let rt = Self::start_chain(
                &config,
                &identity,
                m,
                &peers,
                &metrics,
                &shutdown_rx,
                &mut tasks,
            )?;
            if let Ok(mut slot) = chain.write() {
                *slot = Some(rt);
            }
        }

        let services = Arc::new(Services {
            version: config.version.clone(),
            identity,
            chain: chain.clone(),
            metrics: metrics.clone(),
        });
        let listener = TcpListener::bind(config.peer_listen)
            .await
            .map_err(|source| DaemonError::Bind {
                flag: "--peer-listen",
                addr: config.peer_listen,
                source,
            })?;
        let peer_addr = listener.local_addr().unwrap_or(config.peer_listen);
        let m = metrics.clone();
        let on_refusal: OnRefusal = Arc::new(move |_addr, reason, _err| m.tls_refused(reason));
        let stream = incoming(listener, tls.clone(), on_refusal);
        let mut stop = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .add_service(ProtocolServer::new(services.clone()))
                .add_service(PublicServer::new(services))
                .serve_with_incoming_shutdown(stream, async move {
                    let _ = stop.changed().await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "peer gRPC server stopped");
            }
        }));
        tracing::info!(peer = %peer_addr, "peer listener up (TLS only)");

        let public_addr = match config.public_listen {
            None => None,
            Some(addr) => {
                let listener =
                    TcpListener::bind(addr)
                        .await
                        .map_err(|source| DaemonError::Bind {
                            flag: "--public-listen",
                            addr,
                            source,
                        })?;
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
            peer_addr,
            public_addr,
            metrics,
            chain,
        })
    }

    fn start_chain(
        config: &DaemonConfig,
        identity: &NodeIdentity,
        m: Membership,
        peers: &Arc<PeerClients>,
        metrics: &Arc<NodeMetrics>,
        shutdown: &watch::Receiver<bool>,
        tasks: &mut Vec<tokio::task::JoinHandle<()>>,
    ) -> Result<Arc<ChainRuntime>, DaemonError> {
        let my_index = m
            .group
            .members
            .iter()
            .find(|mem| mem.address == identity.address)
            .map(|mem| mem.index)
            .ok_or_else(|| DaemonError::NotAMember {
                address: identity.address.clone(),
            })?;
        // Checked before anything is served: bad rounds are marked and then read as absent.
        let store = crate::chain::repair::open_and_check(&config.dir, &m.group.info, metrics)?;
        let last = store.last()?.map(|b| b.round).unwrap_or(0);
        let (latest, _) = watch::channel(last);
        let (partials_tx, partials_rx) = mpsc::channel(1024);
        let (sync_tx, sync_rx) = mpsc::channel(8);
        let id = m.group.info.beacon_id.clone();
        metrics.group(&id, m.group.members.len(), m.group.threshold);
        metrics.beacon_stored(&id, last, Duration::ZERO);
        let rt = Arc::new(ChainRuntime {
            group: m.group,
            share: m.share,
            my_index,
            my_address: identity.address.clone(),
            store: Arc::new(store),
            latest,
            partials: partials_tx,
            sync_requests: sync_tx,
        });
        let driver = Driver {
            rt: rt.clone(),
            peers: peers.clone(),
            metrics: metrics.clone(),
            version: config.version.clone(),
        };
        let sync = SyncManager {
            rt: rt.clone(),
            peers: peers.clone(),
            metrics: metrics.clone(),
            version: config.version.clone(),
        };
        let repairer = Repairer {
            rt: rt.clone(),
            peers: peers.clone(),
            metrics: metrics.clone(),
            version: config.version.clone(),
        };
        // Every new round builds on the last stored one: generation and sync start once it is
        // good (at once, unless the start-up check found it bad and it must be fetched again).
        let (tail_ok_tx, tail_ok) = oneshot::channel();
        tasks.push(tokio::spawn(repairer.run(tail_ok_tx, shutdown.clone())));
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            if tail_ok.await.is_ok() {
                tokio::join!(
                    driver.run(partials_rx, stop.clone()),
                    sync.run(sync_rx, stop)
                );
            }
        }));
        // The store's size for /metrics, every few periods (a file stat and a counter read).
        let (stats_rt, stats_metrics, mut stop_stats) =
            (rt.clone(), metrics.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
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
        // A restarted node catches up before anything else (drand's Catchup).
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
        Ok(rt)
    }

    /// Stops every task and waits for them.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
    }
}
