//! The operator's calls to members' control listeners (`--operator-listen`), through the
//! node library's client: TLS with the operator's client certificate, the member's certificate
//! verified against the CA of its cert-manager Secret (`ca.crt`) and its Service's DNS name.
//! Never plaintext. One lazily connected client per endpoint, kept until it fails.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use beacon_node::control::client::{ControlClientConfig, ControlClientError, NodeControl};
use beacon_node::control::proto::command_request::Command as Cmd;
use beacon_node::control::proto::CommandReply;
use beacon_node::control::{NodeStatusDoc, StatusDoc};

use super::ca::ClientIdentity;

/// Where and how to reach one member's control listener.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// `host:port` (the member's Service name and the control port).
    pub address: String,
    /// The member's peer CA (PEM), which signed its serving certificate.
    pub server_ca_pem: String,
}

pub type ControlError = ControlClientError;

/// Whether the member refused the command (it is up and said no), as opposed to being
/// unreachable or slow.
pub fn is_refusal(e: &ControlError) -> bool {
    e.code().is_some_and(|c| {
        !matches!(
            c,
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown
        )
    })
}

/// Control clients for every member.
pub struct ControlClients {
    identity: ClientIdentity,
    clients: Mutex<HashMap<Endpoint, NodeControl>>,
}

impl ControlClients {
    pub fn new(identity: ClientIdentity) -> ControlClients {
        ControlClients {
            identity,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self, ep: &Endpoint) -> Result<NodeControl, ControlError> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(ep) {
            return Ok(c.clone());
        }
        let c = NodeControl::new(&ControlClientConfig::new(
            ep.address.clone(),
            ep.server_ca_pem.as_bytes().to_vec(),
            self.identity.cert_pem.as_bytes().to_vec(),
            self.identity.key_pem.as_bytes().to_vec(),
        ))?;
        clients.insert(ep.clone(), c.clone());
        Ok(c)
    }

    /// Drops the client after a failure other than a refusal, so the next call reconnects (a
    /// member restarted with a new certificate, say).
    fn after<T>(&self, ep: &Endpoint, r: Result<T, ControlError>) -> Result<T, ControlError> {
        if let Err(e) = &r {
            if !is_refusal(e) {
                self.clients
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(ep);
            }
        }
        r
    }

    /// One ceremony command on the member.
    pub async fn command(&self, ep: &Endpoint, command: Cmd) -> Result<CommandReply, ControlError> {
        let r = self.client(ep)?.command(command).await;
        self.after(ep, r)
    }

    /// The member's view of its ceremonies.
    pub async fn dkg_status(&self, ep: &Endpoint) -> Result<StatusDoc, ControlError> {
        let r = self.client(ep)?.dkg_status().await;
        self.after(ep, r)
    }

    /// The member's round, lag, version and peers.
    pub async fn node_status(&self, ep: &Endpoint) -> Result<NodeStatusDoc, ControlError> {
        let r = self.client(ep)?.node_status().await;
        self.after(ep, r)
    }

    /// The member's current group file (TOML), for joiners of a reshare.
    pub async fn group_file(&self, ep: &Endpoint) -> Result<String, ControlError> {
        let r = self.client(ep)?.group_file().await;
        self.after(ep, r)
    }
}

/// Shared handle.
pub type Clients = Arc<ControlClients>;
