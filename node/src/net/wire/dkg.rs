//! `dkg.*` protobuf messages <-> the ceremony's and the DKG's own types. The core types map the
//! messages field for field; this module only checks that required sub-messages are present,
//! naming the missing field, so that a malformed packet is refused before it reaches the
//! ceremony (and never panics: everything here is input from the network).

use beacon_core::dkg::bundles::{
    Bundle, Deal, DealBundle, Justification, JustificationBundle, Response, ResponseBundle,
};
use beacon_core::dkg::gossip::{
    GossipMetadata, GossipPacket, GossipPayload, ProposalTerms, RejectProposal, Timestamp,
};
use beacon_core::dkg::participants::Participant;

use crate::net::proto::dkg as pb;
use crate::net::proto::drand::Metadata;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("malformed DKG message: {0} is missing")]
    Missing(&'static str),
}

fn ts_from(t: Option<prost_types::Timestamp>, field: &'static str) -> Result<Timestamp, WireError> {
    let t = t.ok_or(WireError::Missing(field))?;
    Ok(Timestamp {
        seconds: t.seconds,
        nanos: t.nanos,
    })
}

fn ts_to(t: Timestamp) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: t.seconds,
        nanos: t.nanos,
    })
}

pub fn participant_from(p: pb::Participant) -> Participant {
    Participant {
        address: p.address,
        key: p.key,
        signature: p.signature,
    }
}

pub fn participant_to(p: &Participant) -> pb::Participant {
    pb::Participant {
        address: p.address.clone(),
        key: p.key.clone(),
        signature: p.signature.clone(),
    }
}

fn participants_from(list: Vec<pb::Participant>) -> Vec<Participant> {
    list.into_iter().map(participant_from).collect()
}

fn participants_to(list: &[Participant]) -> Vec<pb::Participant> {
    list.iter().map(participant_to).collect()
}

pub fn terms_from(t: pb::ProposalTerms) -> Result<ProposalTerms, WireError> {
    Ok(ProposalTerms {
        beacon_id: t.beacon_id,
        epoch: t.epoch,
        leader: participant_from(t.leader.ok_or(WireError::Missing("proposal.leader"))?),
        threshold: t.threshold,
        timeout: ts_from(t.timeout, "proposal.timeout")?,
        catchup_period_seconds: t.catchup_period_seconds,
        beacon_period_seconds: t.beacon_period_seconds,
        scheme_id: t.scheme_id,
        genesis_time: ts_from(t.genesis_time, "proposal.genesis_time")?,
        genesis_seed: t.genesis_seed,
        joining: participants_from(t.joining),
        remaining: participants_from(t.remaining),
        leaving: participants_from(t.leaving),
    })
}

pub fn terms_to(t: &ProposalTerms) -> pb::ProposalTerms {
    pb::ProposalTerms {
        beacon_id: t.beacon_id.clone(),
        epoch: t.epoch,
        leader: Some(participant_to(&t.leader)),
        threshold: t.threshold,
        timeout: ts_to(t.timeout),
        catchup_period_seconds: t.catchup_period_seconds,
        beacon_period_seconds: t.beacon_period_seconds,
        scheme_id: t.scheme_id.clone(),
        genesis_time: ts_to(t.genesis_time),
        genesis_seed: t.genesis_seed.clone(),
        joining: participants_to(&t.joining),
        remaining: participants_to(&t.remaining),
        leaving: participants_to(&t.leaving),
    }
}

pub fn bundle_from(p: pb::Packet) -> Result<Bundle, WireError> {
    use pb::packet::Bundle as B;
    Ok(match p.bundle.ok_or(WireError::Missing("packet.bundle"))? {
        B::Deal(d) => Bundle::Deal(DealBundle {
            dealer_index: d.dealer_index,
            commits: d.commits,
            deals: d
                .deals
                .into_iter()
                .map(|x| Deal {
                    share_index: x.share_index,
                    encrypted_share: x.encrypted_share,
                })
                .collect(),
            session_id: d.session_id,
            signature: d.signature,
        }),
        B::Response(r) => Bundle::Response(ResponseBundle {
            share_index: r.share_index,
            responses: r
                .responses
                .into_iter()
                .map(|x| Response {
                    dealer_index: x.dealer_index,
                    status: x.status,
                })
                .collect(),
            session_id: r.session_id,
            signature: r.signature,
        }),
        B::Justification(j) => Bundle::Justification(JustificationBundle {
            dealer_index: j.dealer_index,
            justifications: j
                .justifications
                .into_iter()
                .map(|x| Justification {
                    share_index: x.share_index,
                    share: x.share,
                })
                .collect(),
            session_id: j.session_id,
            signature: j.signature,
        }),
    })
}

pub fn bundle_to(b: &Bundle, metadata: Option<Metadata>) -> pb::Packet {
    use pb::packet::Bundle as B;
    let bundle = match b {
        Bundle::Deal(d) => B::Deal(pb::DealBundle {
            dealer_index: d.dealer_index,
            commits: d.commits.clone(),
            deals: d
                .deals
                .iter()
                .map(|x| pb::Deal {
                    share_index: x.share_index,
                    encrypted_share: x.encrypted_share.clone(),
                })
                .collect(),
            session_id: d.session_id.clone(),
            signature: d.signature.clone(),
        }),
        Bundle::Response(r) => B::Response(pb::ResponseBundle {
            share_index: r.share_index,
            responses: r
                .responses
                .iter()
                .map(|x| pb::Response {
                    dealer_index: x.dealer_index,
                    status: x.status,
                })
                .collect(),
            session_id: r.session_id.clone(),
            signature: r.signature.clone(),
        }),
        Bundle::Justification(j) => B::Justification(pb::JustificationBundle {
            dealer_index: j.dealer_index,
            justifications: j
                .justifications
                .iter()
                .map(|x| pb::Justification {
                    share_index: x.share_index,
                    share: x.share.clone(),
                })
                .collect(),
            session_id: j.session_id.clone(),
            signature: j.signature.clone(),
        }),
    };
    pb::Packet {
        bundle: Some(bundle),
        metadata,
    }
}

pub fn packet_from(p: pb::GossipPacket) -> Result<GossipPacket, WireError> {
    use pb::gossip_packet::Packet as P;
    let md = p.metadata.ok_or(WireError::Missing("gossip.metadata"))?;
    let payload = match p.packet.ok_or(WireError::Missing("gossip.packet"))? {
        P::Proposal(t) => GossipPayload::Proposal(terms_from(t)?),
        P::Accept(a) => GossipPayload::Accept {
            acceptor: participant_from(a.acceptor.ok_or(WireError::Missing("accept.acceptor"))?),
        },
        P::Reject(r) => GossipPayload::Reject(RejectProposal {
            rejector: participant_from(r.rejector.ok_or(WireError::Missing("reject.rejector"))?),
            reason: r.reason,
            secret: r.secret,
            previous_group_hash: r.previous_group_hash,
            proposal_hash: r.proposal_hash,
        }),
        P::Execute(e) => GossipPayload::Execute {
            time: ts_from(e.time, "execute.time")?,
        },
        P::Abort(a) => GossipPayload::Abort { reason: a.reason },
        P::Dkg(d) => {
            let packet = d.dkg.ok_or(WireError::Missing("dkg.dkg"))?;
            let beacon_id = packet
                .metadata
                .as_ref()
                .map(|m| m.beacon_id.clone())
                .unwrap_or_default();
            GossipPayload::Dkg {
                beacon_id,
                bundle: bundle_from(packet)?,
            }
        }
    };
    Ok(GossipPacket {
        metadata: GossipMetadata {
            beacon_id: md.beacon_id,
            address: md.address,
            signature: md.signature,
        },
        payload,
    })
}

pub fn packet_to(p: &GossipPacket) -> pb::GossipPacket {
    use pb::gossip_packet::Packet as P;
    let packet = match &p.payload {
        GossipPayload::Proposal(t) => P::Proposal(terms_to(t)),
        GossipPayload::Accept { acceptor } => P::Accept(pb::AcceptProposal {
            acceptor: Some(participant_to(acceptor)),
        }),
        GossipPayload::Reject(r) => P::Reject(pb::RejectProposal {
            rejector: Some(participant_to(&r.rejector)),
            reason: r.reason.clone(),
            secret: r.secret.clone(),
            previous_group_hash: r.previous_group_hash.clone(),
            proposal_hash: r.proposal_hash.clone(),
        }),
        GossipPayload::Execute { time } => P::Execute(pb::StartExecution { time: ts_to(*time) }),
        GossipPayload::Abort { reason } => P::Abort(pb::AbortDkg {
            reason: reason.clone(),
        }),
        GossipPayload::Dkg { beacon_id, bundle } => P::Dkg(pb::DkgPacket {
            dkg: Some(bundle_to(
                bundle,
                Some(Metadata {
                    node_version: None,
                    beacon_id: beacon_id.clone(),
                    chain_hash: Vec::new(),
                }),
            )),
        }),
    };
    pb::GossipPacket {
        metadata: Some(pb::GossipMetadata {
            beacon_id: p.metadata.beacon_id.clone(),
            address: p.metadata.address.clone(),
            signature: p.metadata.signature.clone(),
        }),
        packet: Some(packet),
    }
}
