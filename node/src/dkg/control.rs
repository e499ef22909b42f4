//! The control service (`beacon.control.Control`), served only on the local-only control
//! listener: ceremony commands, the ceremony status, and the node status.
//!
//! Members are named by peer address. Before a proposal goes out, the node fetches every
//! member's identity over TLS and checks its self-signature and scheme (the preflight): a member
//! that cannot be reached or answers with a bad identity is named in the error and nothing is
//! proposed. Leavers are taken from the last complete group and never contacted here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use beacon_core::crypto::Scheme;
use beacon_core::dkg::ceremony::{Command, FirstProposal, ReshareProposal};
use beacon_core::dkg::participants::Participant;
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};

use super::runner::{self, DkgHandle, Known, RunnerError};
use crate::chain::source::{current, ChainSlot};
use crate::net::client::{PeerClients, CALL_TIMEOUT};
use crate::net::proto::control::command_request::Command as Cmd;
use crate::net::proto::control::control_server::Control;
use crate::net::proto::control::{
    CommandReply, CommandRequest, GroupFileReply, Join, JsonReply, StatusRequest,
};
use crate::net::proto::drand::{IdentityRequest, Metadata};
use crate::net::version::Version;

pub struct ControlService {
    pub handle: DkgHandle,
    /// Which listener this instance serves: what a caller may name on the node's machine
    /// depends on it.
    pub origin: Origin,
    pub peers: Arc<PeerClients>,
    pub version: Version,
    pub scheme: Scheme,
    pub chain: ChainSlot,
    /// The node's folder (its group file).
    pub dir: std::path::PathBuf,
}

/// The listener a control request came on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The loopback listener: the CLI on the node's own machine (or pod).
    Local,
    /// The operator listener: TLS with a client certificate from the operator's CA.
    Operator,
}

/// The previous group a joiner of a resharing is given: a group.toml path (local callers only:
/// a remote caller has no business naming files on the node's machine) or the file's content,
/// parsed and checked the same way. Neither: a joiner of a first ceremony.
pub fn previous_group(
    j: &Join,
    origin: Origin,
) -> Result<Option<beacon_core::dkg::group::Group>, Status> {
    let group = match (j.previous_group_file.is_empty(), j.previous_group_toml.is_empty()) {
        (true, true) => return Ok(None),
        (false, false) => {
            return Err(Status::invalid_argument(
                "join: previous_group_file and previous_group_toml are both set; give the previous group once, as a path (local CLI) or as its content",
            ))
        }
        (false, true) => {
            if origin == Origin::Operator {
                return Err(Status::invalid_argument(
                    "join: previous_group_file names a file on the node's machine, which only the local control listener accepts; send the group.toml content in previous_group_toml",
                ));
            }
            crate::keys::load_group_file(std::path::Path::new(&j.previous_group_file))
                .map_err(|e| Status::invalid_argument(format!("join: previous_group_file: {e}")))?
                .value
        }
        (true, false) => crate::keys::parse_group_text("previous_group_toml", &j.previous_group_toml)
            .map_err(|e| Status::invalid_argument(format!("join: {e}")))?
            .value,
    };
    super::convert::core_group(&group)
        .map(Some)
        .map_err(|e| Status::invalid_argument(format!("join: previous group: {e}")))
}

/// `beacon-node status --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatusDoc {
    pub address: String,
    /// The protocol version it speaks to peers (drand's, for the compatibility window).
    pub version: String,
    /// The version of this build of beacon-node (what an upgrade changes). Empty from a node
    /// that predates the field.
    #[serde(default)]
    pub build: String,
    pub beacon_id: Option<String>,
    pub chain_hash: Option<String>,
    pub last_round: Option<u64>,
    pub expected_round: Option<u64>,
    /// Expected minus last stored round.
    pub lag: Option<u64>,
    pub threshold: Option<usize>,
    pub peers: Vec<PeerDoc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerDoc {
    pub address: String,
    pub index: u16,
    pub reachable: bool,
    pub version: Option<String>,
    pub error: Option<String>,
}

fn refused(e: RunnerError) -> Status {
    match e {
        RunnerError::Ceremony(c) => Status::failed_precondition(c.to_string()),
        RunnerError::Stopped => Status::unavailable(e.to_string()),
        other => Status::internal(other.to_string()),
    }
}

impl ControlService {
    /// Fetches and checks the identity a member's node presents.
    async fn identity(&self, address: &str) -> Result<Participant, Status> {
        let mut client = self
            .peers
            .protocol(address)
            .map_err(|e| Status::invalid_argument(format!("member {address}: {e}")))?;
        let request = identity_request(&self.version);
        let answer = tokio::time::timeout(CALL_TIMEOUT, client.get_identity(request)).await;
        let identity = match answer {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => {
                self.peers.reset(address);
                return Err(Status::unavailable(format!(
                    "preflight: member {address} refused the identity request: {}; nothing was proposed",
                    status.message()
                )));
            }
            Err(_) => {
                self.peers.reset(address);
                return Err(Status::unavailable(format!(
                    "preflight: member {address} did not answer within {CALL_TIMEOUT:?} (is its node running and reachable over TLS?); nothing was proposed"
                )));
            }
        };
        if identity.address != address {
            return Err(Status::failed_precondition(format!(
                "preflight: the node at {address} says its address is {}; use the address it was set up with",
                identity.address
            )));
        }
        if identity.scheme_name != self.scheme.id() {
            return Err(Status::failed_precondition(format!(
                "preflight: member {address} has a key for scheme {} but this network uses {}",
                identity.scheme_name,
                self.scheme.id()
            )));
        }
        let p = Participant {
            address: identity.address,
            key: identity.key,
            signature: identity.signature,
        };
        p.verify_identity(self.scheme)
            .map_err(|e| Status::failed_precondition(format!("preflight: {e}")))?;
        Ok(p)
    }

    async fn resolve_all(
        &self,
        known: &Known,
        addresses: &[String],
    ) -> Result<Vec<Participant>, Status> {
        let mut out = Vec::with_capacity(addresses.len());
        for a in addresses {
            if a == &known.me.address {
                out.push(known.me.clone());
            } else {
                out.push(self.identity(a).await?);
            }
        }
        Ok(out)
    }

    async fn to_command(&self, cmd: Cmd) -> Result<Option<Command>, Status> {
        let now = runner::now();
        Ok(Some(match cmd {
            Cmd::Initial(p) => {
                if p.joining.is_empty() {
                    return Err(Status::invalid_argument(
                        "joining: list every member of the new network (this node included)",
                    ));
                }
                if p.window_seconds == 0 {
                    return Err(Status::invalid_argument(
                        "window: must be at least 1 second",
                    ));
                }
                let scheme = if p.scheme.is_empty() {
                    self.scheme
                } else {
                    Scheme::from_id_or_default(&p.scheme)
                        .map_err(|e| Status::invalid_argument(format!("scheme: {e}")))?
                };
                if scheme != self.scheme {
                    return Err(Status::invalid_argument(format!(
                        "scheme: {} differs from this node's key scheme {}",
                        scheme.id(),
                        self.scheme.id()
                    )));
                }
                let known = self.handle.known().await.map_err(refused)?;
                let joining = self.resolve_all(&known, &p.joining).await?;
                Command::Initial(FirstProposal {
                    timeout: now.plus_seconds(i64::from(p.window_seconds)),
                    threshold: p.threshold,
                    period_seconds: p.period_seconds,
                    scheme: scheme.id().to_owned(),
                    catchup_period_seconds: p.catchup_period_seconds,
                    genesis_time: now.plus_seconds(i64::from(p.genesis_delay_seconds)),
                    joining,
                })
            }
            Cmd::Reshare(p) => {
                if p.window_seconds == 0 {
                    return Err(Status::invalid_argument(
                        "window: must be at least 1 second",
                    ));
                }
                let known = self.handle.known().await.map_err(refused)?;
                let from_group = |field: &str, addresses: &[String]| {
                    addresses
                        .iter()
                        .map(|a| {
                            known
                                .group
                                .iter()
                                .find(|p| &p.address == a)
                                .cloned()
                                .ok_or_else(|| {
                                    Status::invalid_argument(format!(
                                        "{field}: {a} is not a member of the current group"
                                    ))
                                })
                        })
                        .collect::<Result<Vec<_>, Status>>()
                };
                let remaining = from_group("remaining", &p.remaining)?;
                let leaving = from_group("leaving", &p.leaving)?;
                let joining = self.resolve_all(&known, &p.joining).await?;
                Command::Reshare(ReshareProposal {
                    timeout: now.plus_seconds(i64::from(p.window_seconds)),
                    threshold: p.threshold,
                    catchup_period_seconds: p.catchup_period_seconds,
                    joining,
                    remaining,
                    leaving,
                })
            }
            Cmd::Join(j) => Command::Join {
                previous_group: previous_group(&j, self.origin)?,
            },
            Cmd::Accept(_) => Command::Accept,
            Cmd::Reject(r) => Command::Reject { reason: r.reason },
            Cmd::Execute(_) => Command::Execute,
            Cmd::Abort(a) => Command::Abort { reason: a.reason },
            Cmd::Leave(_) => Command::Leave,
            Cmd::Nuke(_) => return Ok(None),
        }))
    }

    async fn node_status(&self) -> NodeStatusDoc {
        let known = self.handle.known().await.ok();
        let address = known.map(|k| k.me.address).unwrap_or_default();
        let Some(rt) = current(&self.chain) else {
            return NodeStatusDoc {
                address,
                version: self.version.to_string(),
                build: crate::build_version(),
                beacon_id: None,
                chain_hash: None,
                last_round: None,
                expected_round: None,
                lag: None,
                threshold: None,
                peers: Vec::new(),
            };
        };
        let mut tasks = Vec::new();
        for m in rt.group.members.iter().filter(|m| m.address != address) {
            let peers = self.peers.clone();
            let version = self.version.clone();
            let (addr, index) = (m.address.clone(), m.index);
            tasks.push(tokio::spawn(async move {
                probe(&peers, &version, addr, index).await
            }));
        }
        let mut peers = Vec::new();
        for t in tasks {
            if let Ok(p) = t.await {
                peers.push(p);
            }
        }
        let (last, expected) = (rt.last_round(), rt.current_round());
        NodeStatusDoc {
            address,
            version: self.version.to_string(),
            build: crate::build_version(),
            beacon_id: Some(rt.info().beacon_id.clone()),
            chain_hash: Some(rt.info().hash_hex()),
            last_round: Some(last),
            expected_round: Some(expected),
            lag: Some(expected.saturating_sub(last)),
            threshold: Some(rt.group.threshold),
            peers,
        }
    }
}

/// An identity request carrying our version (the peer refuses incompatible ones).
fn identity_request(version: &Version) -> IdentityRequest {
    IdentityRequest {
        metadata: Some(Metadata {
            node_version: Some(version.to_proto()),
            beacon_id: String::new(),
            chain_hash: Vec::new(),
        }),
    }
}

/// Asks a member for its identity: reachable over TLS, and which version it runs.
async fn probe(peers: &PeerClients, version: &Version, address: String, index: u16) -> PeerDoc {
    let request = identity_request(version);
    let result = match peers.protocol(&address) {
        Err(e) => Err(e.to_string()),
        Ok(mut c) => {
            match tokio::time::timeout(Duration::from_secs(2), c.get_identity(request)).await {
                Ok(Ok(r)) => Ok(r.into_inner()),
                Ok(Err(s)) => Err(s.message().to_owned()),
                Err(_) => Err("no answer within 2s".to_owned()),
            }
        }
    };
    match result {
        Ok(r) => PeerDoc {
            address,
            index,
            reachable: true,
            version: r
                .metadata
                .and_then(|m| m.node_version)
                .map(|v| Version::from_proto(&v).to_string()),
            error: None,
        },
        Err(e) => {
            peers.reset(&address);
            PeerDoc {
                address,
                index,
                reachable: false,
                version: None,
                error: Some(e),
            }
        }
    }
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn command(
        &self,
        req: Request<CommandRequest>,
    ) -> Result<Response<CommandReply>, Status> {
        let cmd = req
            .into_inner()
            .command
            .ok_or_else(|| Status::invalid_argument("command: missing"))?;
        let outcome = match self.to_command(cmd).await? {
            Some(command) => self.handle.command(command).await,
            None => self.handle.nuke().await,
        }
        .map_err(refused)?;
        Ok(Response::new(CommandReply {
            state: outcome.state.to_string(),
            epoch: outcome.epoch,
            message: String::new(),
        }))
    }

    async fn dkg_status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<JsonReply>, Status> {
        let doc = self.handle.status().await.map_err(refused)?;
        let json =
            serde_json::to_string_pretty(&doc).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(JsonReply { json }))
    }

    async fn node_status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<JsonReply>, Status> {
        let doc = self.node_status().await;
        let json =
            serde_json::to_string_pretty(&doc).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(JsonReply { json }))
    }

    async fn group_file(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<GroupFileReply>, Status> {
        let keys = crate::keys::KeyStore::new(&self.dir);
        if !keys.group_path().exists() {
            return Err(Status::not_found(
                "no group file: this node has no complete ceremony yet",
            ));
        }
        // Loaded and checked (migrated if old) before it is handed out, then written in the
        // current format.
        let group = keys
            .load_group()
            .map_err(|e| Status::internal(e.to_string()))?
            .value;
        let toml = group
            .to_toml()
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(GroupFileReply { toml }))
    }
}

/// The control listener's address must be a loopback one: the control API is for the node's
/// own machine (or pod) only.
pub fn check_local(addr: SocketAddr) -> Result<(), String> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!(
            "--control-listen {addr}: the control API only listens on a loopback address (127.0.0.1 or ::1); it is never exposed to the network"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(file: &str, toml: &str) -> Join {
        Join {
            previous_group_file: file.into(),
            previous_group_toml: toml.into(),
        }
    }

    #[test]
    fn the_previous_group_comes_once_and_a_path_only_from_the_local_listener() {
        assert!(matches!(
            previous_group(&join("", ""), Origin::Operator),
            Ok(None)
        ));
        let both = previous_group(&join("/g.toml", "Threshold = 2"), Origin::Local)
            .expect_err("both fields");
        assert_eq!(both.code(), tonic::Code::InvalidArgument);
        assert!(
            both.message().contains("previous_group_file")
                && both.message().contains("previous_group_toml"),
            "{}",
            both.message()
        );
        let path = previous_group(&join("/etc/passwd", ""), Origin::Operator)
            .expect_err("a path from the operator");
        assert!(
            path.message().contains("previous_group_toml"),
            "{}",
            path.message()
        );
        let bad = previous_group(&join("", "Threshold = \"x\""), Origin::Operator)
            .expect_err("not a group");
        assert!(
            bad.message().contains("previous_group_toml"),
            "{}",
            bad.message()
        );
    }
}
