//! The group a ceremony produces (drand's `key.Group`) and this node's share of it
//! (`key.Share`), with drand's group hash, which is the genesis seed of a new chain.

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use serde::{Deserialize, Serialize};

use crate::crypto::{PriShare, PubPoly, Scalar, Scheme, ThresholdError};

use super::hex_serde;
use super::participants::Participant;

type Blake2b256 = Blake2b<U32>;

/// One member of a group, with the index its share is evaluated at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupNode {
    pub index: u32,
    pub identity: Participant,
}

/// A group after a ceremony: members, threshold, timing and the distributed public key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub beacon_id: String,
    pub scheme: Scheme,
    pub threshold: u32,
    pub period_seconds: u32,
    pub catchup_period_seconds: u32,
    pub genesis_time: i64,
    /// When this group takes over (the genesis time for the first group).
    pub transition_time: i64,
    #[serde(with = "hex_serde")]
    pub genesis_seed: Vec<u8>,
    /// Ascending by index; indices may have gaps (nodes outside QUAL are left out).
    pub nodes: Vec<GroupNode>,
    /// The public polynomial's coefficients, compressed; the first is the group key.
    #[serde(with = "hex_serde::vec")]
    pub public_key: Vec<Vec<u8>>,
}

impl Group {
    /// drand's `Group.Hash()` (§2.4 of the reference), blake2b-256:
    /// node hashes (blake2b(u32_le(index) ‖ key)) by ascending index ‖ u32_le(threshold) ‖
    /// u64_le(genesis) ‖ i64_le(transition) if non-zero ‖ blake2b(commits) if any ‖ the
    /// beacon id unless empty or "default".
    pub fn hash(&self) -> [u8; 32] {
        let mut nodes: Vec<&GroupNode> = self.nodes.iter().collect();
        nodes.sort_by_key(|n| n.index);
        let mut h = Blake2b256::new();
        for n in nodes {
            let mut nh = Blake2b256::new();
            nh.update(n.index.to_le_bytes());
            nh.update(&n.identity.key);
            h.update(nh.finalize());
        }
        h.update(self.threshold.to_le_bytes());
        // drand writes the genesis time as a uint64.
        h.update((self.genesis_time as u64).to_le_bytes());
        if self.transition_time != 0 {
            h.update(self.transition_time.to_le_bytes());
        }
        if !self.public_key.is_empty() {
            let mut ph = Blake2b256::new();
            for c in &self.public_key {
                ph.update(c);
            }
            h.update(ph.finalize());
        }
        if !self.beacon_id.is_empty() && self.beacon_id != "default" {
            h.update(self.beacon_id.as_bytes());
        }
        h.finalize().into()
    }

    /// The decoded public polynomial.
    pub fn public_poly(&self) -> Result<PubPoly, ThresholdError> {
        PubPoly::decode(self.scheme.key_group(), &self.public_key)
    }

    pub fn identities(&self) -> Vec<Participant> {
        self.nodes.iter().map(|n| n.identity.clone()).collect()
    }
}

/// This node's share of the group key (drand's `key.Share`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyShare {
    pub index: u32,
    #[serde(with = "scalar_hex")]
    pub share: Scalar,
    #[serde(with = "hex_serde::vec")]
    pub commits: Vec<Vec<u8>>,
}

impl std::fmt::Debug for KeyShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyShare {{ index: {}, share: <secret> }}", self.index)
    }
}

impl KeyShare {
    pub fn pri_share(&self) -> PriShare {
        PriShare {
            index: self.index,
            value: self.share,
        }
    }
}

/// Scalars as 32-byte big-endian hex, as drand's TOML files write them.
mod scalar_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::crypto::Scalar;

    pub fn serialize<S: Serializer>(s: &Scalar, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&hex::encode(s.to_bytes_be()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let bytes = hex::decode(text.as_ref()).map_err(serde::de::Error::custom)?;
        let raw: [u8; 32] = bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("a share is 32 bytes"))?;
        Option::<Scalar>::from(Scalar::from_bytes_be(&raw))
            .ok_or_else(|| serde::de::Error::custom("the share is not below the group order"))
    }
}
