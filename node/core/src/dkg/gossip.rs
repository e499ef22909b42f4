//! Ceremony gossip packets (`dkg.GossipPacket` and the messages it carries) and their
//! signatures, byte for byte as drand v2 computes them (`internal/dkg/actions_signing.go`).
//!
//! The signed message is drand's `messageForSigning(beaconID, packet, terms)`, where `terms` are
//! rebuilt from the *state after applying the packet*, not taken from the packet; the signature
//! is BLS on the scheme's signature group with the node's long-term key, over the raw message
//! (hash-to-curve with the scheme's DST, no pre-hash). Nothing in the message depends on who
//! relays the packet or on any local encoding, so a packet verifies after any number of
//! re-gossips — the failure that aborted drand's February 2024 ceremony.

use serde::{Deserialize, Serialize};

use crate::crypto::{Scalar, Scheme, SchemeError};

use super::bundles::Bundle;
use super::hex_serde;
use super::participants::Participant;

/// Seconds between year 1 and 1970 in Go's time (`unixToInternal`).
const GO_UNIX_TO_INTERNAL: i64 = 62_135_596_800;
const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// A point in time, UTC, as `google.protobuf.Timestamp` carries it. Timeouts carry
/// nanoseconds (drand sets them from `time.Now()`), and the nanoseconds are signed, so they
/// must survive every round trip exactly.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp {
    pub seconds: i64,
    pub nanos: i32,
}

impl Timestamp {
    pub const fn from_unix(seconds: i64) -> Timestamp {
        Timestamp { seconds, nanos: 0 }
    }

    /// Brings nanos into 0..1e9 (Go's `time.Unix` does the same when the protobuf value is
    /// turned into a time), so that comparisons and encodings agree with Go's.
    pub fn normalized(self) -> Timestamp {
        let total =
            i128::from(self.seconds) * i128::from(NANOS_PER_SECOND) + i128::from(self.nanos);
        let nanos = total.rem_euclid(i128::from(NANOS_PER_SECOND));
        let seconds = total.div_euclid(i128::from(NANOS_PER_SECOND));
        Timestamp {
            seconds: i64::try_from(seconds).unwrap_or(i64::MAX),
            nanos: i32::try_from(nanos).unwrap_or(0),
        }
    }

    /// This time plus whole seconds (saturating).
    pub fn plus_seconds(self, seconds: i64) -> Timestamp {
        Timestamp {
            seconds: self.seconds.saturating_add(seconds),
            nanos: self.nanos,
        }
        .normalized()
    }

    /// Go's `time.Time.MarshalBinary()` of this instant in UTC:
    /// `0x01 ‖ i64_be(unix_seconds + 62135596800) ‖ i32_be(nanos) ‖ 0xFFFF`.
    pub fn go_time_binary(self) -> [u8; 15] {
        let t = self.normalized();
        let mut out = [0u8; 15];
        out[0] = 1; // timeBinaryVersionV1: the UTC offset is a whole number of minutes
        out[1..9].copy_from_slice(&t.seconds.wrapping_add(GO_UNIX_TO_INTERNAL).to_be_bytes());
        out[9..13].copy_from_slice(&t.nanos.to_be_bytes());
        // offset in minutes = -1: Go's marker for UTC
        out[13] = 0xff;
        out[14] = 0xff;
        out
    }
}

/// `dkg.ProposalTerms`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalTerms {
    pub beacon_id: String,
    pub epoch: u32,
    pub leader: Participant,
    pub threshold: u32,
    pub timeout: Timestamp,
    pub catchup_period_seconds: u32,
    pub beacon_period_seconds: u32,
    pub scheme_id: String,
    pub genesis_time: Timestamp,
    #[serde(with = "hex_serde")]
    pub genesis_seed: Vec<u8>,
    pub joining: Vec<Participant>,
    pub remaining: Vec<Participant>,
    pub leaving: Vec<Participant>,
}

/// `dkg.GossipMetadata`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipMetadata {
    pub beacon_id: String,
    pub address: String,
    #[serde(with = "hex_serde")]
    pub signature: Vec<u8>,
}

/// `dkg.RejectProposal` (drand defines `secret`, `previous_group_hash` and `proposal_hash`
/// but never sets or checks them; they are carried for a 1:1 mapping).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectProposal {
    pub rejector: Participant,
    pub reason: String,
    #[serde(with = "hex_serde")]
    pub secret: Vec<u8>,
    #[serde(with = "hex_serde")]
    pub previous_group_hash: Vec<u8>,
    #[serde(with = "hex_serde")]
    pub proposal_hash: Vec<u8>,
}

/// The oneof of `dkg.GossipPacket`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GossipPayload {
    Proposal(ProposalTerms),
    Accept {
        acceptor: Participant,
    },
    Reject(RejectProposal),
    Execute {
        time: Timestamp,
    },
    Abort {
        reason: String,
    },
    /// A DKG bundle inside gossip (`dkg.DKGPacket`); drand hands it to the execution's echo
    /// broadcaster without applying it to the ceremony state.
    Dkg {
        beacon_id: String,
        bundle: Bundle,
    },
}

impl GossipPayload {
    pub fn name(&self) -> &'static str {
        match self {
            GossipPayload::Proposal(_) => "proposal",
            GossipPayload::Accept { .. } => "accept",
            GossipPayload::Reject(_) => "reject",
            GossipPayload::Execute { .. } => "execute",
            GossipPayload::Abort { .. } => "abort",
            GossipPayload::Dkg { .. } => "dkg",
        }
    }
}

/// `dkg.GossipPacket`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipPacket {
    pub metadata: GossipMetadata,
    pub payload: GossipPayload,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GossipError {
    #[error("invalid packet signature from {address}: no such participant (the sender is neither remaining nor joining in the proposal)")]
    NoSuchParticipant { address: String },
    #[error("invalid packet signature from {address}: its key in the proposal is not a {scheme} public key")]
    BadKey { address: String, scheme: Scheme },
    #[error("invalid packet signature from {address}: the {packet} packet's signature does not verify against the proposal terms (was it signed over different terms, or altered?)")]
    BadSignature {
        address: String,
        packet: &'static str,
    },
    #[error("cannot sign the gossip packet: {0}")]
    Sign(#[from] SchemeError),
}

/// drand's `messageForSigning`, byte for byte (§6.4 of the reference).
pub fn message_for_signing(
    beacon_id: &str,
    payload: &GossipPayload,
    terms: &ProposalTerms,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(512);
    m.extend_from_slice(b"beaconID:");
    m.extend_from_slice(beacon_id.as_bytes());
    m.push(b'\n');
    match payload {
        GossipPayload::Proposal(p) => {
            m.extend_from_slice(b"Proposal:");
            m.extend_from_slice(p.beacon_id.as_bytes());
            m.push(b'\n');
            m.extend_from_slice(&p.epoch.to_le_bytes());
            m.extend_from_slice(b"\nLeader:");
            m.extend_from_slice(p.leader.address.as_bytes());
            m.push(b'\n');
            m.extend_from_slice(&p.leader.signature);
        }
        GossipPayload::Accept { acceptor } => {
            m.extend_from_slice(b"Accepted:");
            m.extend_from_slice(acceptor.address.as_bytes());
            m.push(b'\n');
        }
        GossipPayload::Reject(r) => {
            m.extend_from_slice(b"Rejected:");
            m.extend_from_slice(r.rejector.address.as_bytes());
            m.push(b'\n');
        }
        GossipPayload::Abort { reason } => {
            m.extend_from_slice(b"Aborted:");
            m.extend_from_slice(reason.as_bytes());
            m.push(b'\n');
        }
        GossipPayload::Execute { time } => {
            m.extend_from_slice(b"Execute:");
            m.extend_from_slice(&time.go_time_binary());
        }
        GossipPayload::Dkg { .. } => m.extend_from_slice(b"Gossip packet"),
    }
    m.extend_from_slice(b"Proposal:\n");
    m.extend_from_slice(terms.beacon_id.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(&terms.epoch.to_le_bytes());
    m.extend_from_slice(b"\nLeader:");
    m.extend_from_slice(terms.leader.address.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(&terms.leader.signature);
    m.extend_from_slice(&terms.threshold.to_le_bytes());
    m.extend_from_slice(&terms.timeout.go_time_binary());
    m.extend_from_slice(&terms.catchup_period_seconds.to_le_bytes());
    m.extend_from_slice(&terms.beacon_period_seconds.to_le_bytes());
    m.extend_from_slice(b"\nScheme: ");
    m.extend_from_slice(terms.scheme_id.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(&terms.genesis_time.go_time_binary());
    for (label, list) in [
        (&b"\nJoiner:"[..], &terms.joining),
        (&b"\nRemainer:"[..], &terms.remaining),
        (&b"\nLeaver:"[..], &terms.leaving),
    ] {
        for p in list {
            m.extend_from_slice(label);
            m.extend_from_slice(p.address.as_bytes());
            m.extend_from_slice(b"\nSig:");
            m.extend_from_slice(&p.signature);
        }
    }
    m
}

/// Signs a packet as `address` with the long-term `secret`, over `terms` (the terms of the
/// state after applying the packet).
pub fn sign_packet(
    scheme: Scheme,
    secret: &Scalar,
    beacon_id: &str,
    address: &str,
    payload: GossipPayload,
    terms: &ProposalTerms,
) -> Result<GossipPacket, GossipError> {
    let msg = message_for_signing(beacon_id, &payload, terms);
    let signature = scheme.sign(secret, &msg)?.to_bytes();
    Ok(GossipPacket {
        metadata: GossipMetadata {
            beacon_id: beacon_id.to_owned(),
            address: address.to_owned(),
            signature,
        },
        payload,
    })
}

/// Verifies a packet against `terms`: the signer is looked up by `metadata.address` among the
/// remainers and joiners of the terms (drand's `verifyMessage`); errors name the sender.
pub fn verify_packet(
    scheme: Scheme,
    packet: &GossipPacket,
    terms: &ProposalTerms,
) -> Result<(), GossipError> {
    let address = &packet.metadata.address;
    let signer = terms
        .remaining
        .iter()
        .chain(&terms.joining)
        .find(|p| &p.address == address)
        .ok_or_else(|| GossipError::NoSuchParticipant {
            address: address.clone(),
        })?;
    let key = scheme
        .decode_public_key(&signer.key)
        .map_err(|_| GossipError::BadKey {
            address: address.clone(),
            scheme,
        })?;
    let bad = || GossipError::BadSignature {
        address: address.clone(),
        packet: packet.payload.name(),
    };
    let signature = scheme
        .decode_signature(&packet.metadata.signature)
        .map_err(|_| bad())?;
    let msg = message_for_signing(&packet.metadata.beacon_id, &packet.payload, terms);
    if scheme.verify(&key, &msg, &signature) {
        Ok(())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// §9.7: captured from a Go v2.1.0 run (`storswiftlabs/drand-rs` `enc_timeout`).
    #[test]
    fn go_time_marshal_binary_vectors() {
        let vectors = [
            (1741744764, 594379669, "010000000edf62e17c236d8395ffff"),
            (1741745624, 86180161, "010000000edf62e4d805230141ffff"),
            (1741745738, 467268517, "010000000edf62e54a1bd9f3a5ffff"),
            (1741745868, 483295650, "010000000edf62e5cc1cce81a2ffff"),
            (1741745941, 752070485, "010000000edf62e6152cd3af55ffff"),
            (1741746194, 656876372, "010000000edf62e71227272354ffff"),
        ];
        for (seconds, nanos, hex_enc) in vectors {
            let t = Timestamp { seconds, nanos };
            assert_eq!(
                hex::encode(t.go_time_binary()),
                hex_enc,
                "{seconds}.{nanos}"
            );
        }
    }

    #[test]
    fn unnormalized_timestamps_encode_like_go() {
        // protobuf's AsTime() goes through time.Unix, which carries excess nanoseconds over.
        let a = Timestamp {
            seconds: 10,
            nanos: 1_500_000_000,
        };
        let b = Timestamp {
            seconds: 11,
            nanos: 500_000_000,
        };
        assert_eq!(a.go_time_binary(), b.go_time_binary());
        let neg = Timestamp {
            seconds: 10,
            nanos: -1,
        };
        assert_eq!(
            neg.normalized(),
            Timestamp {
                seconds: 9,
                nanos: 999_999_999
            }
        );
        // The zero protobuf timestamp (what a nil Timestamp becomes) is 1970 in Go.
        assert_eq!(
            hex::encode(Timestamp::default().go_time_binary()),
            "010000000e7791f70000000000ffff"
        );
    }

    #[test]
    fn message_layout_for_an_accept() {
        let p = |a: &str, s: &[u8]| Participant {
            address: a.into(),
            key: vec![],
            signature: s.to_vec(),
        };
        let terms = ProposalTerms {
            beacon_id: "default".into(),
            epoch: 2,
            leader: p("l:1", &[0xaa]),
            threshold: 3,
            timeout: Timestamp {
                seconds: 1741744764,
                nanos: 594379669,
            },
            catchup_period_seconds: 1,
            beacon_period_seconds: 3,
            scheme_id: "pedersen-bls-chained".into(),
            genesis_time: Timestamp::from_unix(0),
            genesis_seed: vec![1, 2],
            joining: vec![p("j:1", &[1])],
            remaining: vec![p("l:1", &[0xaa]), p("r:2", &[2])],
            leaving: vec![p("x:3", &[3])],
        };
        let msg = message_for_signing(
            "default",
            &GossipPayload::Accept {
                acceptor: p("r:2", &[2]),
            },
            &terms,
        );
        let mut expected = b"beaconID:default\nAccepted:r:2\nProposal:\ndefault\n".to_vec();
        expected.extend_from_slice(&[2, 0, 0, 0]);
        expected.extend_from_slice(b"\nLeader:l:1\n\xaa");
        expected.extend_from_slice(&[3, 0, 0, 0]);
        expected.extend_from_slice(&hex::decode("010000000edf62e17c236d8395ffff").unwrap());
        expected.extend_from_slice(&[1, 0, 0, 0, 3, 0, 0, 0]);
        expected.extend_from_slice(b"\nScheme: pedersen-bls-chained\n");
        expected.extend_from_slice(&hex::decode("010000000e7791f70000000000ffff").unwrap());
        expected.extend_from_slice(b"\nJoiner:j:1\nSig:\x01");
        expected.extend_from_slice(b"\nRemainer:l:1\nSig:\xaa\nRemainer:r:2\nSig:\x02");
        expected.extend_from_slice(b"\nLeaver:x:3\nSig:\x03");
        assert_eq!(msg, expected);
    }
}
