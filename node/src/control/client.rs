//! A client of a node's operator control listener (`--operator-listen`): TLS only, verifying the
//! node's certificate against the member's CA and name, presenting a client certificate from the
//! operator's CA. Every call has a deadline, so a hung node never blocks its caller.

use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Channel;

use super::proto::command_request::Command;
use super::proto::control_client::ControlClient;
use super::proto::{CommandReply, CommandRequest, StatusRequest};
use super::{NodeStatusDoc, StatusDoc};
use crate::net::client::tls_channel;
use crate::net::tls::{client_config_from_pem, server_name, TlsError};

/// How to reach one node's operator listener.
#[derive(Clone, Debug)]
pub struct ControlClientConfig {
    /// `host:port` of the listener (port 8443 in the operator's pods).
    pub address: String,
    /// The name the node's certificate must carry; the host of `address` when absent. Set it
    /// when dialling an IP address of a node whose certificate names its DNS name.
    pub server_name: Option<String>,
    /// The CA of the node's certificate (the `ca.crt` of its TLS Secret), PEM.
    pub server_ca_pem: Vec<u8>,
    /// The operator's client certificate (from its own control CA) and key, PEM.
    pub client_cert_pem: Vec<u8>,
    pub client_key_pem: Vec<u8>,
    /// TCP connect and TLS handshake.
    pub connect_timeout: Duration,
    /// One whole call, connection included. A proposal fetches every member's identity first
    /// (up to 5 s for each that does not answer), so leave it room.
    pub call_timeout: Duration,
}

impl ControlClientConfig {
    /// Defaults: the certificate's name is the address's host; 5 s to connect, 30 s per call.
    pub fn new(
        address: impl Into<String>,
        server_ca_pem: impl Into<Vec<u8>>,
        client_cert_pem: impl Into<Vec<u8>>,
        client_key_pem: impl Into<Vec<u8>>,
    ) -> ControlClientConfig {
        ControlClientConfig {
            address: address.into(),
            server_name: None,
            server_ca_pem: server_ca_pem.into(),
            client_cert_pem: client_cert_pem.into(),
            client_key_pem: client_key_pem.into(),
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlClientError {
    #[error("control client for {address}: made outside a Tokio runtime; create it from async code (or inside Runtime::enter)")]
    NoRuntime { address: String },
    #[error("control client for {address}: {source}")]
    Tls { address: String, source: TlsError },
    #[error("node {address}: cannot reach its operator control listener: {reason} (is the node started with --operator-listen, does its certificate name {server_name} and chain to the given CA, and is the client certificate from the CA of its --operator-ca?)")]
    Unavailable {
        address: String,
        server_name: String,
        reason: String,
    },
    #[error("node {address}: no answer to {call} within {after:?}")]
    Timeout {
        address: String,
        call: &'static str,
        after: Duration,
    },
    #[error("node {address} refused {call}: {message} ({code:?})")]
    Refused {
        address: String,
        call: &'static str,
        code: tonic::Code,
        message: String,
    },
    #[error("node {address}: unreadable {call} document: {reason}; is it a beacon-node of another version?")]
    BadReply {
        address: String,
        call: &'static str,
        reason: String,
    },
}

impl ControlClientError {
    /// The gRPC code of a refusal (`FailedPrecondition`: the ceremony's state does not allow
    /// the command; `InvalidArgument`: a field is wrong), `None` for other errors.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ControlClientError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A lazily connected client of one node; cheap to clone (one HTTP/2 connection, shared).
#[derive(Clone)]
pub struct NodeControl {
    address: String,
    server_name: String,
    call_timeout: Duration,
    client: ControlClient<Channel>,
}

impl NodeControl {
    /// Checks the PEM inputs and the address; connects at the first call. Needs a Tokio
    /// runtime (the connection runs on it).
    pub fn new(config: &ControlClientConfig) -> Result<NodeControl, ControlClientError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ControlClientError::NoRuntime {
                address: config.address.clone(),
            });
        }
        let tls_err = |source| ControlClientError::Tls {
            address: config.address.clone(),
            source,
        };
        let name_source = config.server_name.as_deref().unwrap_or(&config.address);
        let name = server_name(name_source).map_err(tls_err)?;
        let tls = Arc::new(
            client_config_from_pem(
                &config.server_ca_pem,
                &config.client_cert_pem,
                &config.client_key_pem,
            )
            .map_err(tls_err)?,
        );
        let channel = tls_channel(
            &config.address,
            name.clone(),
            move || tls.clone(),
            config.connect_timeout,
        )
        .map_err(tls_err)?;
        Ok(NodeControl {
            address: config.address.clone(),
            server_name: name.to_str().into_owned(),
            call_timeout: config.call_timeout,
            client: ControlClient::new(channel),
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// A ceremony command; the reply names the ceremony's state after it.
    pub async fn command(&self, command: Command) -> Result<CommandReply, ControlClientError> {
        let mut c = self.client.clone();
        let request = CommandRequest {
            command: Some(command),
        };
        self.call("command", c.command(request)).await
    }

    /// The node's view of the ceremony (what `dkg status --json` prints).
    pub async fn dkg_status(&self) -> Result<StatusDoc, ControlClientError> {
        let mut c = self.client.clone();
        let reply = self
            .call("dkg status", c.dkg_status(StatusRequest {}))
            .await?;
        self.parse("dkg status", &reply.json)
    }

    /// The node's round, lag, peers and their versions (what `status --json` prints).
    pub async fn node_status(&self) -> Result<NodeStatusDoc, ControlClientError> {
        let mut c = self.client.clone();
        let reply = self
            .call("node status", c.node_status(StatusRequest {}))
            .await?;
        self.parse("node status", &reply.json)
    }

    /// The node's group file of its last complete epoch (TOML), for joiners of a reshare.
    pub async fn group_file(&self) -> Result<String, ControlClientError> {
        let mut c = self.client.clone();
        let reply = self
            .call("group file", c.group_file(StatusRequest {}))
            .await?;
        Ok(reply.toml)
    }

    async fn call<T>(
        &self,
        call: &'static str,
        f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, ControlClientError> {
        match tokio::time::timeout(self.call_timeout, f).await {
            Err(_) => Err(ControlClientError::Timeout {
                address: self.address.clone(),
                call,
                after: self.call_timeout,
            }),
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => Err(self.status_error(call, status)),
        }
    }

    /// A failed connection (TCP, TLS, a connection the node closed) comes back as a status
    /// carrying the transport error as its source, or as `Cancelled` (the node never answers
    /// with that code itself); everything else is the node's answer.
    fn status_error(&self, call: &'static str, status: tonic::Status) -> ControlClientError {
        use std::error::Error as _;
        if status.source().is_some() || status.code() == tonic::Code::Cancelled {
            let mut reason = status.message().to_owned();
            let mut next = status.source();
            while let Some(e) = next {
                let text = e.to_string();
                if !reason.contains(&text) {
                    reason.push_str(": ");
                    reason.push_str(&text);
                }
                next = e.source();
            }
            return ControlClientError::Unavailable {
                address: self.address.clone(),
                server_name: self.server_name.clone(),
                reason,
            };
        }
        ControlClientError::Refused {
            address: self.address.clone(),
            call,
            code: status.code(),
            message: status.message().to_owned(),
        }
    }

    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        call: &'static str,
        json: &str,
    ) -> Result<T, ControlClientError> {
        serde_json::from_str(json).map_err(|e| ControlClientError::BadReply {
            address: self.address.clone(),
            call,
            reason: e.to_string(),
        })
    }
}
