//! The peer-facing gRPC services: `drand.Protocol` (group members) and `drand.Public`
//! (clients, relays, syncing nodes).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use beacon_core::chain::Beacon;
use futures::Stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::client::PeerClients;
use super::listener::PeerInfo;
use super::proto::drand::protocol_server::Protocol;
use super::proto::drand::public_server::Public;
use super::proto::drand::{
    BeaconPacket, BeaconStatus, ChainInfoPacket, ChainInfoRequest, ChainStoreStatus, DkgStatus,
    Empty, IdentityRequest, IdentityResponse, ListBeaconIDsRequest, ListBeaconIDsResponse,
    Metadata, PartialBeaconPacket, PublicRandRequest, PublicRandResponse, StatusRequest,
    StatusResponse, SyncRequest,
};
use super::proto::health::health_check_response::ServingStatus;
use super::proto::health::health_client::HealthClient;
use super::proto::health::HealthCheckRequest;
use super::version::{self, Version};
use super::wire;
use crate::chain::runtime::ChainRuntime;
use crate::chain::source::{current, ChainSlot};
use crate::metrics::NodeMetrics;

/// This node's long-term identity as peers see it.
#[derive(Clone, Debug)]
pub struct NodeIdentity {
    pub address: String,
    pub key: Vec<u8>,
    pub signature: Vec<u8>,
    pub scheme: String,
}

/// State shared by the services. The chain is absent until the node has a group and share.
pub struct Services {
    pub version: Version,
    pub identity: NodeIdentity,
    pub chain: ChainSlot,
    pub metrics: Arc<NodeMetrics>,
    /// For `Status`'s connectivity check of other members.
    pub peers: Arc<PeerClients>,
}

/// How long a member has to answer the connectivity check of `Status` (drand: 3 s).
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

type BeaconStream = Pin<Box<dyn Stream<Item = Result<BeaconPacket, Status>> + Send>>;
type RandStream = Pin<Box<dyn Stream<Item = Result<PublicRandResponse, Status>> + Send>>;

fn peer_of<T>(req: &Request<T>) -> String {
    req.extensions()
        .get::<PeerInfo>()
        .map(|p| p.remote.to_string())
        .unwrap_or_else(|| "unknown".into())
}

impl Services {
    fn check_version(&self, peer: &str, md: Option<&Metadata>) -> Result<(), Status> {
        version::check(&self.version, md).map_err(|e| {
            self.metrics.version_refused(&e.theirs.to_string());
            tracing::warn!(peer, theirs = %e.theirs, ours = %e.ours, "refused request from incompatible node version");
            Status::permission_denied(e.to_string())
        })
    }

    fn chain(&self) -> Result<Arc<ChainRuntime>, Status> {
        current(&self.chain).ok_or_else(|| {
            Status::unavailable("no group setup: this node has not completed a DKG yet")
        })
    }

    fn metadata(&self, rt: Option<&ChainRuntime>) -> Metadata {
        Metadata {
            node_version: Some(self.version.to_proto()),
            beacon_id: rt.map(|r| r.info().beacon_id.clone()).unwrap_or_default(),
            chain_hash: rt.map(|r| r.info().hash().to_vec()).unwrap_or_default(),
        }
    }

    /// Whether the member at `address` answers the gRPC health check (over TLS), as drand's
    /// `Status` checks the addresses it is asked about.
    async fn reachable(&self, address: &str) -> bool {
        let Ok(channel) = self.peers.channel(address) else {
            return false;
        };
        let mut client = HealthClient::new(channel);
        let check = client.check(HealthCheckRequest {
            service: String::new(),
        });
        match tokio::time::timeout(HEALTH_TIMEOUT, check).await {
            Ok(Ok(r)) => r.into_inner().status == ServingStatus::Serving as i32,
            _ => {
                self.peers.reset(address);
                false
            }
        }
    }

    /// drand's `Status` connectivity check: the addresses asked about, or every other member
    /// when the list names only this node; never this node itself.
    async fn connections(
        &self,
        rt: Option<&ChainRuntime>,
        asked: &[String],
    ) -> std::collections::HashMap<String, bool> {
        let me = &self.identity.address;
        let mut targets: Vec<String> = asked.iter().filter(|a| !a.is_empty()).cloned().collect();
        if let (Some(rt), [only]) = (rt, targets.as_slice()) {
            if only == me {
                targets = rt.peers().map(|m| m.address.clone()).collect();
            }
        }
        targets.retain(|a| a != me);
        targets.sort();
        targets.dedup();
        let checks = targets.into_iter().map(|a| async move {
            let ok = self.reachable(&a).await;
            (a, ok)
        });
        futures::future::join_all(checks)
            .await
            .into_iter()
            .collect()
    }

    /// Stored beacons from `from`, then new ones as they are stored, until the receiver goes.
    fn follow(rt: Arc<ChainRuntime>, from: u64) -> mpsc::Receiver<Result<Beacon, Status>> {
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let mut next = from;
            let mut latest = rt.latest.subscribe();
            loop {
                // Everything stored from `next` on, in chunks.
                loop {
                    let chunk = match rt.store.range(next, 256) {
                        Ok(c) => c,
                        Err(e) => {
                            let _ = tx
                                .send(Err(Status::internal(format!("chain store: {e}"))))
                                .await;
                            return;
                        }
                    };
                    if chunk.is_empty() {
                        break;
                    }
                    for b in chunk {
                        next = b.round + 1;
                        if tx.send(Ok(b)).await.is_err() {
                            return;
                        }
                    }
                }
                if latest.changed().await.is_err() {
                    return;
                }
            }
        });
        rx
    }
}

#[tonic::async_trait]
impl Protocol for Arc<Services> {
    async fn get_identity(
        &self,
        req: Request<IdentityRequest>,
    ) -> Result<Response<IdentityResponse>, Status> {
        self.check_version(&peer_of(&req), req.get_ref().metadata.as_ref())?;
        let rt = current(&self.chain);
        Ok(Response::new(IdentityResponse {
            address: self.identity.address.clone(),
            key: self.identity.key.clone(),
            #[allow(deprecated)]
            tls: true,
            signature: self.identity.signature.clone(),
            metadata: Some(self.metadata(rt.as_deref())),
            scheme_name: self.identity.scheme.clone(),
        }))
    }

    async fn partial_beacon(
        &self,
        req: Request<PartialBeaconPacket>,
    ) -> Result<Response<Empty>, Status> {
        let peer = peer_of(&req);
        self.check_version(&peer, req.get_ref().metadata.as_ref())?;
        let rt = self.chain()?;
        let incoming =
            wire::partial_from_packet(&self.version, req.into_inner(), rt.current_round(), peer)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
        rt.partials.try_send(incoming).map_err(|_| {
            Status::resource_exhausted("partial queue full; the node is overloaded")
        })?;
        Ok(Response::new(Empty {
            metadata: Some(self.metadata(Some(&rt))),
        }))
    }

    type SyncChainStream = BeaconStream;

    async fn sync_chain(
        &self,
        req: Request<SyncRequest>,
    ) -> Result<Response<BeaconStream>, Status> {
        self.check_version(&peer_of(&req), req.get_ref().metadata.as_ref())?;
        let rt = self.chain()?;
        let from = req.get_ref().from_round;
        let last = rt.last_round();
        if from != 0 && last < from {
            return Err(Status::not_found(format!(
                "no beacon stored above requested round {from}: the last stored round is {last}"
            )));
        }
        let start = if from == 0 { last + 1 } else { from };
        let beacon_id = rt.info().beacon_id.clone();
        let rx = Services::follow(rt, start);
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let stream = futures::StreamExt::map(stream, move |r| {
            r.map(|b| BeaconPacket {
                previous_signature: b.previous_signature,
                round: b.round,
                signature: b.signature,
                metadata: Some(Metadata {
                    node_version: None,
                    beacon_id: beacon_id.clone(),
                    chain_hash: Vec::new(),
                }),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn status(
        &self,
        req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        self.check_version(&peer_of(&req), req.get_ref().metadata.as_ref())?;
        let rt = current(&self.chain);
        let asked: Vec<String> = req
            .get_ref()
            .check_conn
            .iter()
            .map(|a| a.address.clone())
            .collect();
        let connections = self.connections(rt.as_deref(), &asked).await;
        let store = rt.as_ref().map(|rt| ChainStoreStatus {
            is_empty: rt.last_round() == 0,
            last_stored: rt.last_round(),
            expected_last: rt.current_round(),
        });
        Ok(Response::new(StatusResponse {
            dkg: Some(DkgStatus {
                status: if rt.is_some() { 7 } else { 0 },
            }),
            epoch: 0,
            beacon: Some(BeaconStatus {
                status: 0,
                is_running: rt.is_some(),
                is_stopped: rt.is_none(),
                is_started: rt.is_some(),
                is_serving: rt.is_some(),
            }),
            chain_store: store,
            connections,
        }))
    }
}

fn rand_response(b: Beacon, metadata: Option<Metadata>) -> PublicRandResponse {
    let randomness = b.randomness().to_vec();
    #[allow(deprecated)] // drand's relays still read it
    PublicRandResponse {
        round: b.round,
        signature: b.signature,
        previous_signature: b.previous_signature,
        randomness,
        metadata,
    }
}

#[tonic::async_trait]
impl Public for Arc<Services> {
    async fn public_rand(
        &self,
        req: Request<PublicRandRequest>,
    ) -> Result<Response<PublicRandResponse>, Status> {
        self.check_version(&peer_of(&req), req.get_ref().metadata.as_ref())?;
        let rt = self.chain()?;
        let round = req.get_ref().round;
        let md = Some(self.metadata(Some(&rt)));
        let store_err =
            |e: crate::chain::store::StoreError| Status::internal(format!("chain store: {e}"));
        let last = rt.last_round();
        let beacon = if round == 0 {
            rt.store.get(last).map_err(store_err)?
        } else if round == last + 1 {
            // The next round: wait for it, up to one period and a second (as drand does).
            let wait = Duration::from_secs(u64::from(rt.group.period()) + 1);
            let mut latest = rt.latest.subscribe();
            let reached = tokio::time::timeout(wait, latest.wait_for(|r| *r >= round)).await;
            match reached {
                Ok(Ok(_)) => rt.store.get(round).map_err(store_err)?,
                _ => None,
            }
        } else {
            rt.store.get(round).map_err(store_err)?
        };
        match beacon {
            Some(b) if b.round > 0 => Ok(Response::new(rand_response(b, md))),
            _ => Err(Status::not_found(format!(
                "round {round} is not available on this node"
            ))),
        }
    }

    type PublicRandStreamStream = RandStream;

    async fn public_rand_stream(
        &self,
        req: Request<PublicRandRequest>,
    ) -> Result<Response<RandStream>, Status> {
        self.check_version(&peer_of(&req), req.get_ref().metadata.as_ref())?;
        let rt = self.chain()?;
        let from = req.get_ref().round;
        let start = if from == 0 { rt.last_round() + 1 } else { from };
        let md = self.metadata(Some(&rt));
        let rx = Services::follow(rt, start);
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let stream = futures::StreamExt::map(stream, move |r| {
            r.map(|b| rand_response(b, Some(md.clone())))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn chain_info(
        &self,
        req: Request<ChainInfoRequest>,
    ) -> Result<Response<ChainInfoPacket>, Status> {
        self.check_version(&peer_of(&req), req.get_ref().metadata.as_ref())?;
        let rt = self.chain()?;
        Ok(Response::new(wire::chain_info_packet(
            rt.info(),
            self.metadata(Some(&rt)),
        )))
    }

    async fn list_beacon_i_ds(
        &self,
        _req: Request<ListBeaconIDsRequest>,
    ) -> Result<Response<ListBeaconIDsResponse>, Status> {
        let rt = current(&self.chain);
        let (ids, metadatas) = match rt {
            Some(rt) => (
                vec![rt.info().beacon_id.clone()],
                vec![self.metadata(Some(&rt))],
            ),
            None => (Vec::new(), Vec::new()),
        };
        Ok(Response::new(ListBeaconIDsResponse { ids, metadatas }))
    }
}
