//! The peer network: drand v2's gRPC services over TLS, the version handshake, peer clients.

pub mod client;
pub mod health;
pub mod listener;
pub mod pki;
pub mod server;
pub mod tls;
pub mod version;
pub mod wire;

/// Code generated from `proto/` (drand's packages, names and field numbers).
pub mod proto {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    pub mod drand {
        tonic::include_proto!("drand");
    }
    pub mod dkg {
        tonic::include_proto!("dkg");
    }
    pub mod control {
        tonic::include_proto!("beacon.control");
    }
    pub mod health {
        tonic::include_proto!("grpc.health.v1");
    }
}
