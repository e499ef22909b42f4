//! Distributed key generation as drand v2 runs it, pure: the Pedersen / Joint-Feldman DKG and
//! resharing (`protocol`), its bundles (`bundles`), participants and indices (`participants`),
//! the ceremony state machine around it (`ceremony`), gossip packet signatures (`gossip`), and
//! the DKG store's state model (`store`). Everything is fed with messages and a clock value, so
//! the daemon, tests and simulations drive the same code.

pub mod bundles;
pub mod ceremony;
pub mod gossip;
pub mod group;
pub mod participants;
pub mod protocol;
pub mod store;

pub use bundles::{
    Bundle, BundleKind, Deal, DealBundle, Justification, JustificationBundle, Response,
    ResponseBundle,
};
pub use participants::{
    minimum_threshold, new_dkg_nodes, session_id, sorted_by_public_key, DkgNode, IdentityError,
    Participant,
};
pub use protocol::{
    BundleError, DkgConfig, DkgError, DkgProtocol, DkgResult, Eviction, Output, Phase,
    PreviousGroup,
};

/// serde helpers: byte strings as lowercase hex, as the rest of the crate writes them.
pub(crate) mod hex_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        hex::decode(s.as_ref()).map_err(|e| serde::de::Error::custom(format!("not hex: {e}")))
    }

    pub mod vec {
        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        pub fn serialize<S: Serializer>(items: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
            items
                .iter()
                .map(hex::encode)
                .collect::<Vec<_>>()
                .serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
            Vec::<String>::deserialize(d)?
                .iter()
                .map(|h| {
                    hex::decode(h).map_err(|e| serde::de::Error::custom(format!("not hex: {e}")))
                })
                .collect()
        }
    }
}
