//! The ceremony's group and share (`beacon_core::dkg::group`) <-> the key store's group and
//! share files (`keys::Group`, `keys::Share`), and the daemon's view of a group.

use std::time::Duration;

use beacon_core::crypto::{PriShare, PubPoly};
use beacon_core::dkg::group::{Group as CoreGroup, GroupNode as CoreNode, KeyShare};
use beacon_core::dkg::participants::Participant;

use crate::chain::runtime::{GroupParams, Member};
use crate::daemon::Membership;
use crate::keys::{Group, GroupNode, Share};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("the ceremony's group has a bad {what}: {reason}")]
    Bad { what: String, reason: String },
}

fn bad(what: impl Into<String>, reason: impl ToString) -> ConvertError {
    ConvertError::Bad {
        what: what.into(),
        reason: reason.to_string(),
    }
}

/// The group file for a group a ceremony produced.
pub fn group_file(g: &CoreGroup) -> Result<Group, ConvertError> {
    let nodes = g
        .nodes
        .iter()
        .map(|n| {
            let key = g
                .scheme
                .decode_public_key(&n.identity.key)
                .map_err(|e| bad(format!("key of {}", n.identity.address), e))?;
            let signature = g
                .scheme
                .decode_signature(&n.identity.signature)
                .map_err(|e| bad(format!("signature of {}", n.identity.address), e))?;
            Ok(GroupNode {
                index: n.index,
                address: n.identity.address.clone(),
                key,
                signature: Some(signature),
            })
        })
        .collect::<Result<Vec<_>, ConvertError>>()?;
    let public_key = PubPoly::decode(g.scheme.key_group(), &g.public_key)
        .map_err(|e| bad("public polynomial", e))?;
    Ok(Group {
        threshold: g.threshold,
        period: Duration::from_secs(u64::from(g.period_seconds)),
        catchup_period: Duration::from_secs(u64::from(g.catchup_period_seconds)),
        genesis_time: g.genesis_time,
        transition_time: g.transition_time,
        genesis_seed: g.genesis_seed.clone(),
        scheme: g.scheme,
        beacon_id: g.beacon_id.clone(),
        nodes,
        public_key,
    })
}

/// The share file for this node's share of `group`.
pub fn share_file(group: &Group, share: &KeyShare) -> Share {
    Share {
        share: PriShare {
            index: share.index,
            value: share.share,
        },
        commits: group.public_key.clone(),
        scheme: group.scheme,
    }
}

/// A group file as the ceremony's group (a joiner's previous group).
pub fn core_group(g: &Group) -> Result<CoreGroup, ConvertError> {
    let nodes = g
        .nodes
        .iter()
        .map(|n| {
            let signature = n.signature.as_ref().ok_or_else(|| {
                bad(
                    format!("node {}", n.address),
                    "no v2 identity signature in the group file; fetch the group from a member running this version",
                )
            })?;
            Ok(CoreNode {
                index: n.index,
                identity: Participant {
                    address: n.address.clone(),
                    key: n.key.to_bytes(),
                    signature: signature.to_bytes(),
                },
            })
        })
        .collect::<Result<Vec<_>, ConvertError>>()?;
    let seconds = |d: Duration, what: &str| {
        u32::try_from(d.as_secs()).map_err(|_| bad(what.to_owned(), "too long"))
    };
    Ok(CoreGroup {
        beacon_id: g.beacon_id.clone(),
        scheme: g.scheme,
        threshold: g.threshold,
        period_seconds: seconds(g.period, "period")?,
        catchup_period_seconds: seconds(g.catchup_period, "catchup period")?,
        genesis_time: g.genesis_time,
        transition_time: g.transition_time,
        genesis_seed: g.genesis_seed.clone(),
        nodes,
        public_key: g.public_key.to_bytes(),
    })
}

/// What the daemon needs to run the chain of `group` with `share`.
pub fn membership(group: &Group, share: &Share) -> Result<Membership, ConvertError> {
    let info = group.chain_info().map_err(|e| bad("group", e))?;
    let members = group
        .nodes
        .iter()
        .map(|n| {
            Ok(Member {
                index: u16::try_from(n.index)
                    .map_err(|_| bad(format!("index {}", n.index), "above 65535"))?,
                address: n.address.clone(),
            })
        })
        .collect::<Result<Vec<_>, ConvertError>>()?;
    Ok(Membership {
        group: GroupParams {
            info,
            public: group.public_key.clone(),
            threshold: group.threshold as usize,
            catchup_period: group.catchup_period,
            members,
        },
        share: share.share.clone(),
        transition_time: group.transition_time,
    })
}
