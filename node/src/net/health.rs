//! `grpc.health.v1.Health` on the peer listener. drand serves it there and its tools rely on
//! it: `drand util check ADDR` and the connectivity part of `drand util status` report a peer
//! without it as down ("Unimplemented"), and drand's HTTP relays probe nodes with it. As in
//! drand, it says whether the listener serves, not whether the chain is healthy (that is
//! `/health` on the HTTP API).

use std::pin::Pin;

use futures::Stream;
use tonic::{Request, Response, Status};

use super::proto::health::health_check_response::ServingStatus;
use super::proto::health::health_server::Health;
use super::proto::health::{HealthCheckRequest, HealthCheckResponse};

/// The services this listener serves, by their fully qualified names.
pub const PEER_SERVICES: [&str; 3] = ["drand.Protocol", "drand.Public", "dkg.DKGPublic"];

pub struct HealthService;

fn status_of(service: &str) -> Option<ServingStatus> {
    (service.is_empty() || PEER_SERVICES.contains(&service)).then_some(ServingStatus::Serving)
}

fn response(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status as i32,
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        req: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = &req.get_ref().service;
        match status_of(service) {
            Some(s) => Ok(Response::new(response(s))),
            // What the health protocol prescribes for a service the server does not know.
            None => Err(Status::not_found(format!(
                "unknown service {service:?}; this listener serves {}",
                PEER_SERVICES.join(", ")
            ))),
        }
    }

    type WatchStream = WatchStream;

    /// The current status, then nothing until the client goes: the status of a running
    /// listener does not change (it ends with the process).
    async fn watch(
        &self,
        req: Request<HealthCheckRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let status = status_of(&req.get_ref().service).unwrap_or(ServingStatus::ServiceUnknown);
        let first = futures::stream::once(async move { Ok(response(status)) });
        Ok(Response::new(Box::pin(futures::StreamExt::chain(
            first,
            futures::stream::pending(),
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(service: &str) -> Result<i32, tonic::Code> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(HealthService.check(Request::new(HealthCheckRequest {
            service: service.into(),
        })))
        .map(|r| r.into_inner().status)
        .map_err(|s| s.code())
    }

    #[test]
    fn serving_for_the_server_and_its_services_not_found_for_others() {
        let serving = ServingStatus::Serving as i32;
        assert_eq!(check(""), Ok(serving));
        for s in PEER_SERVICES {
            assert_eq!(check(s), Ok(serving), "{s}");
        }
        assert_eq!(check("beacon.control.Control"), Err(tonic::Code::NotFound));
    }
}
