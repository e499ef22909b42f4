//! The group file (`group.toml`, drand's `GroupTOML`) and the share file (`share.private`,
//! drand's `ShareTOML`), their format migrations and their checks.

use std::path::Path;
use std::time::Duration;

use beacon_core::chain::ChainInfo;
use beacon_core::crypto::identity::{verify_self_signature, verify_v1_self_signature};
use beacon_core::crypto::{Point, PriShare, PubPoly, Scalar, Scheme};
use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use serde::{Deserialize, Serialize};

use super::duration::{format_go_duration, parse_go_duration};
use super::fsutil::read_text;
use super::{detect_version, hex_field, parse_toml, KeyError, Loaded, CURRENT_FORMAT};

type Blake2b256 = Blake2b<U32>;

const GROUP_HINT: &str = "the group file is written when a DKG ceremony completes; to move a drand node here, copy its groups/drand_group.toml to this name";
const SHARE_HINT: &str = "the share file is written when a DKG ceremony completes; to move a drand node here, copy its groups/dist_key.private to this name";

/// Something wrong with a group or a share, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {reason}")]
pub struct GroupError {
    pub field: String,
    pub reason: String,
}

fn gerr(field: impl Into<String>, reason: impl Into<String>) -> GroupError {
    GroupError {
        field: field.into(),
        reason: reason.into(),
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct GroupToml {
    #[serde(rename = "Threshold")]
    threshold: i64,
    #[serde(rename = "Period")]
    period: String,
    #[serde(
        rename = "CatchupPeriod",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    catchup_period: Option<String>,
    #[serde(rename = "GenesisTime")]
    genesis_time: i64,
    #[serde(
        rename = "TransitionTime",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    transition_time: Option<i64>,
    #[serde(
        rename = "GenesisSeed",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    genesis_seed: Option<String>,
    #[serde(rename = "SchemeID", default, skip_serializing_if = "Option::is_none")]
    scheme_id: Option<String>,
    #[serde(rename = "ID", default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(
        rename = "FormatVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    format_version: Option<i64>,
    #[serde(rename = "Nodes", default)]
    nodes: Vec<NodeToml>,
    #[serde(rename = "PublicKey", default, skip_serializing_if = "Option::is_none")]
    public_key: Option<DistPublicToml>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct NodeToml {
    #[serde(rename = "Address")]
    address: String,
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "TLS", default, skip_serializing_if = "Option::is_none")]
    tls: Option<bool>,
    #[serde(rename = "Signature", default, skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
    #[serde(
        rename = "SchemeName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    scheme_name: Option<String>,
    #[serde(rename = "Index")]
    index: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct DistPublicToml {
    #[serde(rename = "Coefficients", default)]
    coefficients: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ShareToml {
    #[serde(rename = "Index")]
    index: i64,
    #[serde(rename = "Share")]
    share: String,
    #[serde(rename = "Commits", default)]
    commits: Vec<String>,
    /// Written by some drand versions, never used (drand ignores it too).
    #[serde(rename = "PrivatePoly", default, skip_serializing)]
    _private_poly: Option<Vec<String>>,
    #[serde(
        rename = "SchemeName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    scheme_name: Option<String>,
    #[serde(
        rename = "FormatVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    format_version: Option<i64>,
}

/// One member of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupNode {
    /// The member's index: its share is the polynomial at index + 1.
    pub index: u32,
    pub address: String,
    pub key: Point,
    /// The member's v2 self-signature; `None` when only a drand v1 signature was known (the
    /// identity must then be fetched from the member again before the next ceremony, as drand
    /// does after its v1 → v2 migration).
    pub signature: Option<Point>,
}

/// A group: its members, threshold, timing, scheme and distributed public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub threshold: u32,
    pub period: Duration,
    pub catchup_period: Duration,
    pub genesis_time: i64,
    /// When this group took over the chain (its first round's time); 0 when never set.
    pub transition_time: i64,
    /// The chain's genesis seed (the group hash of the first group, kept across resharings).
    pub genesis_seed: Vec<u8>,
    pub scheme: Scheme,
    pub beacon_id: String,
    /// Sorted by index.
    pub nodes: Vec<GroupNode>,
    /// The distributed public key: one commitment per threshold member; `commits[0]` is the
    /// group's public key.
    pub public_key: PubPoly,
}

/// floor(n/2) + 1: the smallest threshold drand accepts for n members.
pub fn minimum_threshold(n: usize) -> usize {
    n / 2 + 1
}

impl Group {
    /// The group's public key (commits[0] of the distributed key).
    pub fn public_key(&self) -> Point {
        self.public_key.public_key()
    }

    pub fn node(&self, index: u32) -> Option<&GroupNode> {
        self.nodes.iter().find(|n| n.index == index)
    }

    pub fn node_with_key(&self, key: &Point) -> Option<&GroupNode> {
        self.nodes.iter().find(|n| n.key == *key)
    }

    /// drand's `Group.Hash()`: blake2b-256 over each node's hash (by index), the threshold,
    /// the genesis time, the transition time (when set), the hash of the distributed key and the
    /// beacon ID (unless default). The genesis seed of a new chain is this hash of its first
    /// group.
    pub fn hash(&self) -> [u8; 32] {
        let mut nodes: Vec<&GroupNode> = self.nodes.iter().collect();
        nodes.sort_by_key(|n| n.index);
        let mut h = Blake2b256::new();
        for n in nodes {
            let mut nh = Blake2b256::new();
            nh.update(n.index.to_le_bytes());
            nh.update(n.key.to_bytes());
            h.update(nh.finalize());
        }
        h.update(self.threshold.to_le_bytes());
        h.update((self.genesis_time as u64).to_le_bytes());
        if self.transition_time != 0 {
            h.update(self.transition_time.to_le_bytes());
        }
        let mut dh = Blake2b256::new();
        for c in self.public_key.commits() {
            dh.update(c.to_bytes());
        }
        h.update(dh.finalize());
        if !self.beacon_id.is_empty() && self.beacon_id != "default" {
            h.update(self.beacon_id.as_bytes());
        }
        h.finalize().into()
    }

    /// The chain info this group produces: group key, period, genesis time and seed, scheme
    /// and beacon ID.
    pub fn chain_info(&self) -> Result<ChainInfo, GroupError> {
        Ok(ChainInfo {
            public_key: self.public_key(),
            period: whole_seconds(self.period)?,
            genesis_time: self.genesis_time,
            genesis_seed: if self.genesis_seed.is_empty() {
                self.hash().to_vec()
            } else {
                self.genesis_seed.clone()
            },
            scheme: self.scheme,
            beacon_id: if self.beacon_id.is_empty() {
                "default".into()
            } else {
                self.beacon_id.clone()
            },
        })
    }

    /// The checks every loaded or saved group passes.
    pub fn validate(&self) -> Result<(), GroupError> {
        let n = self.nodes.len();
        if n == 0 {
            return Err(gerr("Nodes", "the group has no members"));
        }
        let t = self.threshold as usize;
        let min = minimum_threshold(n);
        if t < min || t > n {
            return Err(gerr(
                "Threshold",
                format!(
                    "{t} is outside {min}..={n} for {n} members (drand requires floor(n/2)+1 <= threshold <= n)"
                ),
            ));
        }
        whole_seconds(self.period)?;
        let key_group = self.scheme.key_group();
        for (i, node) in self.nodes.iter().enumerate() {
            let field = |f: &str| format!("Nodes[{i}].{f}");
            if node.index > u32::from(u16::MAX) {
                return Err(gerr(
                    field("Index"),
                    format!(
                        "{} does not fit the 16-bit index of partial signatures",
                        node.index
                    ),
                ));
            }
            if self.nodes[..i].iter().any(|m| m.index == node.index) {
                return Err(gerr(
                    field("Index"),
                    format!("index {} is used by two members", node.index),
                ));
            }
            if self.nodes[..i].iter().any(|m| m.key == node.key) {
                return Err(gerr(field("Key"), "the same key is listed for two members"));
            }
            if node.address.trim().is_empty() {
                return Err(gerr(field("Address"), "empty"));
            }
            if node.key.group() != key_group {
                return Err(gerr(
                    field("Key"),
                    format!("not a {key_group} key, as {} requires", self.scheme),
                ));
            }
            if let Some(sig) = &node.signature {
                if !verify_self_signature(self.scheme, &node.key, sig) {
                    return Err(gerr(
                        field("Signature"),
                        format!(
                            "the member's self-signature does not verify under {} (member at {})",
                            self.scheme, node.address
                        ),
                    ));
                }
            }
        }
        if self.public_key.group() != key_group {
            return Err(gerr(
                "PublicKey.Coefficients",
                format!(
                    "the distributed key is not on {key_group}, as {} requires",
                    self.scheme
                ),
            ));
        }
        if self.public_key.threshold() != t {
            return Err(gerr(
                "PublicKey.Coefficients",
                format!(
                    "{} coefficients, but the threshold is {t}: the distributed key has one per threshold member",
                    self.public_key.threshold()
                ),
            ));
        }
        if self.public_key.public_key().is_identity() {
            return Err(gerr(
                "PublicKey.Coefficients",
                "the group key (first coefficient) is the identity",
            ));
        }
        Ok(())
    }

    /// The group in the current file format (drand's GroupTOML with `FormatVersion`).
    pub fn to_toml(&self) -> Result<String, KeyError> {
        let mut nodes: Vec<&GroupNode> = self.nodes.iter().collect();
        nodes.sort_by_key(|n| n.index);
        let toml = GroupToml {
            threshold: i64::from(self.threshold),
            period: format_go_duration(self.period),
            catchup_period: Some(format_go_duration(self.catchup_period)),
            genesis_time: self.genesis_time,
            transition_time: (self.transition_time != 0).then_some(self.transition_time),
            genesis_seed: (!self.genesis_seed.is_empty()).then(|| hex::encode(&self.genesis_seed)),
            scheme_id: Some(self.scheme.id().to_owned()),
            id: Some(self.beacon_id.clone()),
            format_version: Some(i64::from(CURRENT_FORMAT)),
            nodes: nodes
                .into_iter()
                .map(|n| NodeToml {
                    address: n.address.clone(),
                    key: hex::encode(n.key.to_bytes()),
                    tls: None,
                    signature: n.signature.map(|s| hex::encode(s.to_bytes())),
                    scheme_name: Some(self.scheme.id().to_owned()),
                    index: i64::from(n.index),
                })
                .collect(),
            public_key: Some(DistPublicToml {
                coefficients: self.public_key.to_bytes().iter().map(hex::encode).collect(),
            }),
        };
        toml::to_string(&toml).map_err(|e| KeyError::Invalid {
            reason: format!("cannot encode the group as TOML: {e}"),
        })
    }
}

fn whole_seconds(period: Duration) -> Result<u32, GroupError> {
    if period.subsec_nanos() != 0 || period.as_secs() == 0 {
        return Err(gerr(
            "Period",
            format!(
                "{} is not a whole number of seconds above 0, as drand's round arithmetic requires",
                format_go_duration(period)
            ),
        ));
    }
    u32::try_from(period.as_secs()).map_err(|_| gerr("Period", "too long"))
}

/// A member's share of the group secret with the group's commitments.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Share {
    pub share: PriShare,
    pub commits: PubPoly,
    pub scheme: Scheme,
}

impl Share {
    pub fn index(&self) -> u32 {
        self.share.index
    }

    /// The group public key these commitments commit to (commits[0]).
    pub fn public_key(&self) -> Point {
        self.commits.public_key()
    }

    /// The share matches its commitment: share·G == PubPoly.eval(index).
    pub fn validate(&self) -> Result<(), GroupError> {
        if self.commits.group() != self.scheme.key_group() {
            return Err(gerr(
                "Commits",
                format!(
                    "the commitments are not on {}, as {} requires",
                    self.scheme.key_group(),
                    self.scheme
                ),
            ));
        }
        if self.scheme.public_key(&self.share.value) != self.commits.eval(self.share.index) {
            return Err(gerr(
                "Share",
                format!(
                    "the share of index {} does not match the commitments (share·G != the public polynomial at index + 1): the share or `Commits` were altered",
                    self.share.index
                ),
            ));
        }
        Ok(())
    }

    /// The share belongs to `group`: same scheme, the same commitments as the group's
    /// distributed key (so the group key is commits[0]), and its index is a member's.
    pub fn check_against(&self, group: &Group) -> Result<(), GroupError> {
        if self.scheme != group.scheme {
            return Err(gerr(
                "SchemeName",
                format!("{} but the group is {}", self.scheme, group.scheme),
            ));
        }
        if self.commits.public_key() != group.public_key() {
            return Err(gerr(
                "Commits",
                "Commits[0] is not the group's public key (PublicKey.Coefficients[0]): this share is of another group or another epoch",
            ));
        }
        if self.commits != group.public_key {
            return Err(gerr(
                "Commits",
                "the commitments differ from the group's PublicKey.Coefficients",
            ));
        }
        if group.node(self.share.index).is_none() {
            return Err(gerr(
                "Index",
                format!("no member of the group has index {}", self.share.index),
            ));
        }
        Ok(())
    }

    pub fn to_toml(&self) -> Result<String, KeyError> {
        toml::to_string(&ShareToml {
            index: i64::from(self.share.index),
            share: hex::encode(self.share.value.to_bytes_be()),
            commits: self.commits.to_bytes().iter().map(hex::encode).collect(),
            _private_poly: None,
            scheme_name: Some(self.scheme.id().to_owned()),
            format_version: Some(i64::from(CURRENT_FORMAT)),
        })
        .map_err(|e| KeyError::Invalid {
            reason: format!("cannot encode the share as TOML: {e}"),
        })
    }
}

fn field_err(path: &Path, field: impl Into<String>, reason: impl Into<String>) -> KeyError {
    KeyError::Field {
        path: path.to_path_buf(),
        field: field.into(),
        reason: reason.into(),
    }
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn parse_scheme(path: &Path, field: &str, name: &str) -> Result<Scheme, KeyError> {
    name.parse()
        .map_err(|e: beacon_core::crypto::SchemeError| field_err(path, field, e.to_string()))
}

/// A member as parsed, before migrations decide what its signature is worth.
struct RawNode {
    node: GroupNode,
    /// Whether the signature (if any) verifies only as a drand v1 self-signature.
    v1_signature: bool,
}

pub(super) fn load_group(path: &Path) -> Result<Loaded<Group>, KeyError> {
    parse_group(path, &read_text(path, GROUP_HINT)?)
}

/// Parses and validates a group file's text; `path` names where it came from in errors (a
/// file, or the request field that carried it).
pub(super) fn parse_group(path: &Path, text: &str) -> Result<Loaded<Group>, KeyError> {
    let toml: GroupToml = parse_toml(path, text)?;
    let all_named = !toml.nodes.is_empty()
        && toml
            .nodes
            .iter()
            .all(|n| non_empty(&n.scheme_name).is_some());
    let found = detect_version(path, toml.format_version, all_named)?;
    // v0 (drand v1) files may lack SchemeID: the default scheme, as drand reads them.
    let scheme = match non_empty(&toml.scheme_id) {
        Some(name) => parse_scheme(path, "SchemeID", name)?,
        None if found == 0 => Scheme::DEFAULT,
        None => {
            return Err(field_err(
                path,
                "SchemeID",
                "missing: name the group's scheme",
            ))
        }
    };
    let threshold = u32::try_from(toml.threshold).map_err(|_| {
        field_err(
            path,
            "Threshold",
            format!("{} is not a threshold", toml.threshold),
        )
    })?;
    let period = parse_go_duration(&toml.period).map_err(|e| field_err(path, "Period", e))?;
    let catchup_period = match non_empty(&toml.catchup_period) {
        Some(text) => parse_go_duration(text).map_err(|e| field_err(path, "CatchupPeriod", e))?,
        None => Duration::ZERO,
    };
    let genesis_seed = match non_empty(&toml.genesis_seed) {
        Some(text) => hex_field(path, "GenesisSeed", text)?,
        None => Vec::new(),
    };
    let mut raw_nodes = Vec::with_capacity(toml.nodes.len());
    for (i, n) in toml.nodes.iter().enumerate() {
        let field = |f: &str| format!("Nodes[{i}].{f}");
        if let Some(name) = non_empty(&n.scheme_name) {
            let named = parse_scheme(path, &field("SchemeName"), name)?;
            if named != scheme {
                return Err(field_err(
                    path,
                    field("SchemeName"),
                    format!("{named} but the group's SchemeID is {scheme}"),
                ));
            }
        }
        let index = u32::try_from(n.index)
            .map_err(|_| field_err(path, field("Index"), format!("{} is not an index", n.index)))?;
        let key_bytes = hex_field(path, &field("Key"), &n.key)?;
        let key = scheme.decode_public_key(&key_bytes).map_err(|e| {
            field_err(
                path,
                field("Key"),
                format!("not a {scheme} public key: {e}"),
            )
        })?;
        let mut v1_signature = false;
        let signature = match non_empty(&n.signature) {
            None => None,
            Some(text) => {
                let bytes = hex_field(path, &field("Signature"), text)?;
                let sig = scheme.decode_signature(&bytes).map_err(|e| {
                    field_err(
                        path,
                        field("Signature"),
                        format!("not a {scheme} signature: {e}"),
                    )
                })?;
                if !verify_self_signature(scheme, &key, &sig) {
                    if found == 0 && verify_v1_self_signature(scheme, &key, &sig) {
                        v1_signature = true;
                    } else {
                        return Err(field_err(
                            path,
                            field("Signature"),
                            format!("the member's self-signature does not verify under {scheme}: the file was altered; fetch the group again"),
                        ));
                    }
                }
                Some(sig)
            }
        };
        raw_nodes.push(RawNode {
            node: GroupNode {
                index,
                address: n.address.clone(),
                key,
                signature,
            },
            v1_signature,
        });
    }
    let coefficients = toml
        .public_key
        .as_ref()
        .map(|p| p.coefficients.as_slice())
        .unwrap_or_default();
    if coefficients.is_empty() {
        return Err(field_err(
            path,
            "PublicKey.Coefficients",
            "missing: the group file lacks the distributed key, which a completed DKG writes",
        ));
    }
    let commits = coefficients
        .iter()
        .enumerate()
        .map(|(i, c)| hex_field(path, &format!("PublicKey.Coefficients[{i}]"), c))
        .collect::<Result<Vec<_>, _>>()?;
    let public_key = PubPoly::decode(scheme.key_group(), &commits)
        .map_err(|e| field_err(path, "PublicKey.Coefficients", e.to_string()))?;

    // Migrations, one per version step.
    let mut version = found;
    while version < CURRENT_FORMAT {
        if version == 0 {
            // 0 → 1: drand v1 members signed their identity without the scheme prefix; that
            // signature proves nothing to a v2 node, so it is dropped (and fetched again from
            // the member before the next ceremony, as drand's migration does).
            for raw in &mut raw_nodes {
                if raw.v1_signature {
                    raw.node.signature = None;
                }
            }
        }
        // 1 → 2: only `FormatVersion` is added.
        version += 1;
    }
    let mut nodes: Vec<GroupNode> = raw_nodes.into_iter().map(|r| r.node).collect();
    nodes.sort_by_key(|n| n.index);
    let beacon_id = non_empty(&toml.id).unwrap_or("default").to_owned();
    let mut group = Group {
        threshold,
        period,
        catchup_period,
        genesis_time: toml.genesis_time,
        transition_time: toml.transition_time.unwrap_or(0),
        genesis_seed,
        scheme,
        beacon_id,
        nodes,
        public_key,
    };
    group.validate().map_err(|source| KeyError::Group {
        path: path.to_path_buf(),
        source,
    })?;
    // drand's GetGenesisSeed: the stored seed, else the group's own hash.
    if group.genesis_seed.is_empty() {
        group.genesis_seed = group.hash().to_vec();
    }
    Ok(Loaded {
        value: group,
        format_version: found,
    })
}

pub(super) fn load_share(path: &Path, group: &Group) -> Result<Loaded<Share>, KeyError> {
    let toml: ShareToml = parse_toml(path, &read_text(path, SHARE_HINT)?)?;
    let named = match non_empty(&toml.scheme_name) {
        Some(name) => Some(parse_scheme(path, "SchemeName", name)?),
        None => None,
    };
    let found = detect_version(path, toml.format_version, named.is_some())?;
    // 0 → 1: a drand v1 share names no scheme; it is the group's (the share is only ever used
    // with its group, which is checked below).
    let scheme = named.unwrap_or(group.scheme);
    let index = u32::try_from(toml.index)
        .map_err(|_| field_err(path, "Index", format!("{} is not an index", toml.index)))?;
    let bytes = hex_field(path, "Share", &toml.share)?;
    let raw: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        field_err(
            path,
            "Share",
            format!(
                "a share is 32 bytes (64 hex digits), got {} bytes",
                bytes.len()
            ),
        )
    })?;
    let value = Option::<Scalar>::from(Scalar::from_bytes_be(&raw)).ok_or_else(|| {
        field_err(
            path,
            "Share",
            "not a scalar: the number is not below the BLS12-381 group order",
        )
    })?;
    if toml.commits.is_empty() {
        return Err(field_err(
            path,
            "Commits",
            "missing: the share's commitments are required",
        ));
    }
    let commits = toml
        .commits
        .iter()
        .enumerate()
        .map(|(i, c)| hex_field(path, &format!("Commits[{i}]"), c))
        .collect::<Result<Vec<_>, _>>()?;
    let commits = PubPoly::decode(scheme.key_group(), &commits)
        .map_err(|e| field_err(path, "Commits", e.to_string()))?;
    let share = Share {
        share: PriShare { index, value },
        commits,
        scheme,
    };
    share
        .validate()
        .and_then(|()| share.check_against(group))
        .map_err(|source| KeyError::Group {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(Loaded {
        value: share,
        format_version: found,
    })
}
