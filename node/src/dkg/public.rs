//! `dkg.DKGPublic` on the peer listener (TLS only): ceremony gossip and DKG bundles from the
//! other participants, handed to the runner.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::runner::DkgHandle;
use crate::metrics::NodeMetrics;
use crate::net::proto::dkg::dkg_public_server::DkgPublic;
use crate::net::proto::dkg::{DkgPacket, EmptyDkgResponse, GossipPacket};
use crate::net::version::{self, Version};
use crate::net::wire::dkg as wire;

pub struct DkgPublicService {
    pub handle: DkgHandle,
    pub version: Version,
    pub metrics: Arc<NodeMetrics>,
}

#[tonic::async_trait]
impl DkgPublic for DkgPublicService {
    async fn packet(
        &self,
        req: Request<GossipPacket>,
    ) -> Result<Response<EmptyDkgResponse>, Status> {
        let packet = wire::packet_from(req.into_inner())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        match self.handle.packet(packet).await {
            Ok(Ok(())) => Ok(Response::new(EmptyDkgResponse {})),
            Ok(Err(e)) => Err(Status::failed_precondition(e.to_string())),
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }

    async fn broadcast_dkg(
        &self,
        req: Request<DkgPacket>,
    ) -> Result<Response<EmptyDkgResponse>, Status> {
        let packet = req
            .into_inner()
            .dkg
            .ok_or_else(|| Status::invalid_argument("malformed DKG packet: dkg is missing"))?;
        version::check(&self.version, packet.metadata.as_ref()).map_err(|e| {
            self.metrics.version_refused(&e.theirs.to_string());
            Status::permission_denied(e.to_string())
        })?;
        let bundle =
            wire::bundle_from(packet).map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.handle
            .bundle(bundle)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(EmptyDkgResponse {}))
    }
}
