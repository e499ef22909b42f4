//! Ceremony participants: identities as drand's `Participant` message carries them, their v2
//! self-signatures, drand's ordering and index rule, and the DKG session id.
//!
//! drand sorts remainers and joiners by the raw bytes of their public keys and gives each its
//! position as index (`util.SortedByPublicKey` + `util.ToNode`), so a node's index can change from
//! one epoch to the next. The session id (kyber's nonce) is `sha256(u32_be(epoch))`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::crypto::identity::verify_self_signature;
use crate::crypto::{Point, PointError, Scheme};

use super::hex_serde;

/// One node's identity as carried in proposals (`dkg.Participant`): address, compressed public
/// key, and the v2 self-signature. drand compares participants on all three fields
/// (`util.EqualParticipant`), and so does the derived `PartialEq`.
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Participant {
    pub address: String,
    #[serde(with = "hex_serde")]
    pub key: Vec<u8>,
    #[serde(with = "hex_serde")]
    pub signature: Vec<u8>,
}

impl std::fmt::Debug for Participant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = |b: &[u8]| hex::encode(&b[..b.len().min(6)]);
        write!(
            f,
            "Participant({}, key {}…, sig {}…)",
            self.address,
            short(&self.key),
            short(&self.signature)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("participant {address}: its key is not a {scheme} public key: {source}; check that the node runs the same scheme as the proposal")]
    Key {
        address: String,
        scheme: Scheme,
        source: PointError,
    },
    #[error("participant {address}: its self-signature is not a valid signature point: {source}")]
    SignatureEncoding { address: String, source: PointError },
    #[error("participant {address}: its self-signature does not verify as a v2 {scheme} identity; a key from drand v1 must be re-signed (v2 signs the scheme name with the key hash)")]
    Signature { address: String, scheme: Scheme },
}

impl Participant {
    /// The decoded public key on the scheme's key group.
    pub fn public_key(&self, scheme: Scheme) -> Result<Point, IdentityError> {
        scheme
            .decode_public_key(&self.key)
            .map_err(|source| IdentityError::Key {
                address: self.address.clone(),
                scheme,
                source,
            })
    }

    /// Checks the v2 self-signature: BLS on the signature group over
    /// `ascii(scheme) ‖ blake2b256(key)`.
    pub fn verify_identity(&self, scheme: Scheme) -> Result<Point, IdentityError> {
        let public = self.public_key(scheme)?;
        let signature = scheme.decode_signature(&self.signature).map_err(|source| {
            IdentityError::SignatureEncoding {
                address: self.address.clone(),
                source,
            }
        })?;
        if verify_self_signature(scheme, &public, &signature) {
            Ok(public)
        } else {
            Err(IdentityError::Signature {
                address: self.address.clone(),
                scheme,
            })
        }
    }
}

/// A DKG node: index and public key (kyber's `dkg.Node`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DkgNode {
    pub index: u32,
    pub public: Point,
}

/// `participants` sorted by the raw bytes of their keys, as drand orders the DKG's new nodes.
/// The sort is stable, like Go's `sort.Slice` on distinct keys (equal keys cannot both verify).
pub fn sorted_by_public_key(participants: &[Participant]) -> Vec<Participant> {
    let mut out = participants.to_vec();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// The new nodes of an execution: remainers and joiners sorted by key, indexed by position.
pub fn new_dkg_nodes(
    scheme: Scheme,
    remaining: &[Participant],
    joining: &[Participant],
) -> Result<(Vec<Participant>, Vec<DkgNode>), IdentityError> {
    let mut all = remaining.to_vec();
    all.extend_from_slice(joining);
    let sorted = sorted_by_public_key(&all);
    let nodes = sorted
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Ok(DkgNode {
                // The protobuf and kyber both carry indices as uint32.
                index: u32::try_from(i).unwrap_or(u32::MAX),
                public: p.public_key(scheme)?,
            })
        })
        .collect::<Result<Vec<_>, IdentityError>>()?;
    Ok((sorted, nodes))
}

/// The DKG session id of an epoch (kyber's `Nonce`): sha256(u32_be(epoch)).
pub fn session_id(epoch: u32) -> [u8; 32] {
    Sha256::digest(epoch.to_be_bytes()).into()
}

/// drand's minimum threshold for n nodes (kyber `MinimumT`): floor(n/2) + 1.
pub const fn minimum_threshold(n: usize) -> usize {
    n / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_is_sha256_of_big_endian_epoch() {
        // sha256(00 00 00 01)
        assert_eq!(
            hex::encode(session_id(1)),
            "b40711a88c7039756fb8a73827eabe2c0fe5a0346ca7e0a104adc0fc764f528d"
        );
        assert_ne!(session_id(1), session_id(2));
    }

    #[test]
    fn order_is_by_raw_key_bytes_not_address() {
        let p = |addr: &str, key: &[u8]| Participant {
            address: addr.into(),
            key: key.to_vec(),
            signature: vec![],
        };
        let sorted = sorted_by_public_key(&[p("a", &[3, 0]), p("b", &[1, 9]), p("c", &[2])]);
        let order: Vec<&str> = sorted.iter().map(|p| p.address.as_str()).collect();
        assert_eq!(order, ["b", "c", "a"]);
    }

    #[test]
    fn minimum_threshold_matches_kyber() {
        assert_eq!(minimum_threshold(1), 1);
        assert_eq!(minimum_threshold(4), 3);
        assert_eq!(minimum_threshold(7), 4);
        assert_eq!(minimum_threshold(64), 33);
    }
}
