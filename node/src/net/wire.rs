//! Checked conversions of the drand wire messages this node receives into its own types: what
//! a message from a peer must satisfy before the node acts on it. The gRPC server, the sync
//! manager and the store repair go through these, the ceremony's network side goes through
//! [`dkg`] (`dkg.*` gossip packets and DKG bundles), and `crate::fuzz::check_wire_message`
//! fuzzes both (decode, convert, and the invariants of what converts).
//!
//! Nothing here trusts a field: points are decoded and subgroup-checked, hashes recomputed,
//! signatures verified where the message carries one of its own.

pub mod dkg;

use beacon_core::chain::{Beacon, ChainInfo};
use beacon_core::crypto::{PointError, Scheme, SchemeError};

use super::proto::drand::{
    BeaconPacket, ChainInfoPacket, IdentityResponse, Metadata, PartialBeaconPacket,
};
use super::version::{self, Incompatible, Version};
use crate::chain::runtime::IncomingPartial;
use crate::keys::Identity;

/// Why a received message was refused. The text goes back to the peer (server side) or into
/// the log (client side), so it says what is wrong with the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error(transparent)]
    Version(#[from] Incompatible),
    #[error("partial for round {round} is too far ahead: the current round here is {current}; check the clocks")]
    TooFarAhead { round: u64, current: u64 },
    #[error("the message is for beacon ID {got:?}, not {expected:?}")]
    WrongBeaconId { got: String, expected: String },
    #[error("field `{field}`: {reason}")]
    Field { field: &'static str, reason: String },
    #[error("field `{field}`: {source}")]
    Point {
        field: &'static str,
        source: PointError,
    },
    #[error("field `{field}`: {source}")]
    Scheme {
        field: &'static str,
        source: SchemeError,
    },
    #[error("field `{field}` says the chain hash is {given} but the other fields hash to {computed}: the packet was altered or belongs to another chain")]
    ChainHashMismatch {
        field: &'static str,
        given: String,
        computed: String,
    },
    #[error("the identity's self-signature does not verify for key {key} under scheme {scheme}: the peer's key pair is not what it claims")]
    BadSelfSignature { key: String, scheme: Scheme },
}

/// A `PartialBeaconPacket` as the `PartialBeacon` server takes it: the sender's version must be
/// compatible and the round at most one ahead of ours (drand's rule for clock drift). The
/// partial itself is checked by the aggregator (index, membership, signature).
pub fn partial_from_packet(
    ours: &Version,
    packet: PartialBeaconPacket,
    current_round: u64,
    from: String,
) -> Result<IncomingPartial, WireError> {
    version::check(ours, packet.metadata.as_ref())?;
    if packet.round > current_round.saturating_add(1) {
        return Err(WireError::TooFarAhead {
            round: packet.round,
            current: current_round,
        });
    }
    Ok(IncomingPartial {
        round: packet.round,
        previous_signature: packet.previous_signature,
        partial: packet.partial_sig,
        from,
    })
}

/// A `BeaconPacket` of a `SyncChain` stream, for the chain `beacon_id`. Its signature is
/// verified by the caller, in batches.
pub fn beacon_from_packet(packet: BeaconPacket, beacon_id: &str) -> Result<Beacon, WireError> {
    if let Some(md) = &packet.metadata {
        if !md.beacon_id.is_empty() && md.beacon_id != beacon_id {
            return Err(WireError::WrongBeaconId {
                got: md.beacon_id.clone(),
                expected: beacon_id.to_owned(),
            });
        }
    }
    Ok(Beacon {
        round: packet.round,
        signature: packet.signature,
        previous_signature: packet.previous_signature,
    })
}

/// The `ChainInfoPacket` the `ChainInfo` server sends for `info`.
pub fn chain_info_packet(info: &ChainInfo, metadata: Metadata) -> ChainInfoPacket {
    ChainInfoPacket {
        public_key: info.public_key.to_bytes(),
        period: info.period,
        genesis_time: info.genesis_time,
        hash: info.hash().to_vec(),
        group_hash: info.genesis_seed.clone(),
        scheme_id: info.scheme.id().to_owned(),
        metadata: Some(metadata),
    }
}

/// A peer's `ChainInfoPacket` as chain info: every field checked, and the chain hash (in
/// `hash`, and in `metadata.chain_hash` where relays read it) recomputed and compared.
pub fn chain_info_from_packet(packet: &ChainInfoPacket) -> Result<ChainInfo, WireError> {
    let scheme =
        Scheme::from_id_or_default(&packet.scheme_id).map_err(|source| WireError::Scheme {
            field: "schemeID",
            source,
        })?;
    let public_key = scheme
        .decode_public_key(&packet.public_key)
        .map_err(|source| WireError::Point {
            field: "public_key",
            source,
        })?;
    if packet.period == 0 {
        return Err(WireError::Field {
            field: "period",
            reason: "must be at least one second".into(),
        });
    }
    if packet.group_hash.is_empty() {
        return Err(WireError::Field {
            field: "groupHash",
            reason: "the genesis seed is missing".into(),
        });
    }
    let beacon_id = packet
        .metadata
        .as_ref()
        .map(|m| m.beacon_id.as_str())
        .filter(|id| !id.is_empty())
        .unwrap_or("default");
    let info = ChainInfo {
        public_key,
        period: packet.period,
        genesis_time: packet.genesis_time,
        genesis_seed: packet.group_hash.clone(),
        scheme,
        beacon_id: beacon_id.to_owned(),
    };
    let computed = info.hash();
    let claimed = [
        ("hash", Some(&packet.hash)),
        (
            "metadata.chain_hash",
            packet.metadata.as_ref().map(|m| &m.chain_hash),
        ),
    ];
    for (field, given) in claimed {
        match given {
            Some(given) if !given.is_empty() && given[..] != computed[..] => {
                return Err(WireError::ChainHashMismatch {
                    field,
                    given: hex::encode(given),
                    computed: hex::encode(computed),
                })
            }
            _ => {}
        }
    }
    Ok(info)
}

/// A peer's `IdentityResponse` as an identity: address of the form HOST:PORT, key and
/// signature valid points of the scheme's groups, and the v2 self-signature verified.
pub fn identity_from_response(response: &IdentityResponse) -> Result<Identity, WireError> {
    crate::keys::validate_address(&response.address).map_err(|reason| WireError::Field {
        field: "address",
        reason,
    })?;
    let scheme =
        Scheme::from_id_or_default(&response.scheme_name).map_err(|source| WireError::Scheme {
            field: "schemeName",
            source,
        })?;
    let key = scheme
        .decode_public_key(&response.key)
        .map_err(|source| WireError::Point {
            field: "key",
            source,
        })?;
    let signature = scheme
        .decode_signature(&response.signature)
        .map_err(|source| WireError::Point {
            field: "signature",
            source,
        })?;
    let identity = Identity {
        address: response.address.clone(),
        key,
        signature,
        scheme,
    };
    if !identity.verifies() {
        return Err(WireError::BadSelfSignature {
            key: hex::encode(response.key.as_slice()),
            scheme,
        });
    }
    Ok(identity)
}
