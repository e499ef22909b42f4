//! Pure validation of the custom resources: every error names the field and says what to do.
//!
//! Two lines of defence: the CRD's schema and CEL rules reject most bad objects at the API
//! server, and these functions repeat those checks (an object may predate a CRD upgrade, or
//! come from an API server that skipped a rule) and add what CEL cannot see: the parse of a
//! duration or quantity beyond its pattern, an external address's port, a public key's hex,
//! and the relation between a ceremony and its network.

use std::collections::{BTreeMap, BTreeSet};

use crate::ceremony::{BeaconCeremony, BeaconCeremonySpec, CeremonyKind};
use crate::duration::{Duration, DurationError};
use crate::network::{
    BeaconNetwork, BeaconNetworkSpec, Scheme, MAX_MEMBERS, MAX_MEMBER_OBJECT_NAME,
};

/// All the problems of one object, displayed one after the other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", join(.0))]
pub struct Invalid<E: std::fmt::Display>(pub Vec<E>);

fn join<E: std::fmt::Display>(errors: &[E]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A problem in a BeaconNetwork.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error("metadata.name: missing; a BeaconNetwork read from the API server always has one")]
    NoName,
    #[error("metadata.name {0:?}: must be a DNS-1035 label (lower-case letters, digits and '-', starting with a letter, at most 63): it prefixes the members' Service names; rename the network")]
    NetworkName(String),
    #[error("spec.beaconId {0:?}: must be 1-63 lower-case letters, digits, '-' or '_', starting and ending with a letter or digit")]
    BeaconId(String),
    #[error("spec.{field} {value:?}: {source}")]
    Duration {
        field: &'static str,
        value: String,
        source: DurationError,
    },
    #[error("spec.period is 0s: a chain needs a period of at least 1s")]
    PeriodZero,
    #[error("spec.catchupPeriod {catchup:?} is not shorter than spec.period {period:?}: a stalled network would never catch up; use a shorter catchupPeriod (\"0s\" catches up as fast as the members can)")]
    CatchupNotBelowPeriod { catchup: String, period: String },
    #[error("spec.upgrade.progressDeadline is 0s: every member change would halt at once; give it at least the time a node needs to start and catch up (e.g. \"10m\")")]
    ProgressDeadlineZero,
    #[error("spec.upgrade.progressDeadline {deadline:?} is not longer than a member's soak (spec.upgrade.soakRounds {soak_rounds} x spec.period {period:?} = {soak_seconds}s): every member change would halt before its soak ends; raise progressDeadline or lower soakRounds")]
    DeadlineShorterThanSoak {
        deadline: String,
        soak_rounds: u32,
        period: String,
        soak_seconds: u64,
    },
    #[error("spec.image: empty; set the beacon-node image every member runs, or remove spec.image to use the operator's default node image")]
    NoImage,
    #[error("spec.members: empty; list at least one member")]
    NoMembers,
    #[error("spec.members: {0} members, above the limit of {MAX_MEMBERS}")]
    TooManyMembers(usize),
    #[error("spec.members[{index}].name {name:?}: must be a DNS-1035 label of at most 50 characters (lower-case letters, digits and '-', starting with a letter); rename the member")]
    MemberName { index: usize, name: String },
    #[error("spec.members[{index}].name {name:?}: '{network}-{name}' names the member's StatefulSet and has {len} characters, above {MAX_MEMBER_OBJECT_NAME}; shorten the network or member name")]
    MemberObjectName {
        index: usize,
        name: String,
        network: String,
        len: usize,
    },
    #[error("spec.members[{index}].name {name:?}: already used by spec.members[{first}]; give every member its own name")]
    DuplicateMember {
        index: usize,
        first: usize,
        name: String,
    },
    #[error("spec.members[{index}] ({name}): an external member runs elsewhere, so {field} cannot apply to it; remove {field} or remove external")]
    ExternalOverride {
        index: usize,
        name: String,
        field: &'static str,
    },
    #[error("spec.members[{index}].image: empty; remove it to use spec.image, or name an image")]
    EmptyMemberImage { index: usize },
    #[error("spec.members[{index}].external.address {address:?}: {reason}; write host:port, e.g. node1.example.org:4444")]
    ExternalAddress {
        index: usize,
        address: String,
        reason: &'static str,
    },
    #[error("spec.members[{index}].external.publicKey: {reason}; a {scheme} public key is the hex of a compressed point of {bytes} bytes ({} hex digits)", bytes * 2)]
    ExternalKey {
        index: usize,
        scheme: Scheme,
        bytes: usize,
        reason: String,
    },
    #[error("spec.threshold {threshold} is above the number of members ({members}): lower spec.threshold or add members")]
    ThresholdAboveMembers { threshold: u32, members: usize },
    #[error("spec.threshold {threshold} is below a majority of the {members} members: it must be at least {minimum} (floor(n/2)+1), or fewer than half the members could sign alone")]
    ThresholdBelowMajority {
        threshold: u32,
        members: usize,
        minimum: usize,
    },
    #[error("spec.upgrade.minHealthyMargin {margin} plus spec.threshold {threshold} exceeds the {members} members: no disruption or upgrade could ever be allowed; lower the margin or add members")]
    MarginTooLarge {
        margin: u32,
        threshold: u32,
        members: usize,
    },
    #[error("spec.tls.issuerRef.name: empty; name the cert-manager Issuer or ClusterIssuer of the members' certificates")]
    NoIssuer,
    #[error("spec.storage.size {0:?}: not a positive quantity; write e.g. \"10Gi\" or \"500Mi\"")]
    StorageSize(String),
}

/// The smallest threshold for `n` members: floor(n/2) + 1 (drand's rule).
pub fn minimum_threshold(n: usize) -> usize {
    n / 2 + 1
}

/// Checks a BeaconNetwork (metadata name and spec).
pub fn validate_network(network: &BeaconNetwork) -> Result<(), Invalid<NetworkError>> {
    let mut errors = Vec::new();
    match network.metadata.name.as_deref() {
        None => errors.push(NetworkError::NoName),
        Some(name) => check_network_spec(name, &network.spec, &mut errors),
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Invalid(errors))
    }
}

/// Checks a spec for a network called `name`.
pub fn validate_network_spec(
    name: &str,
    spec: &BeaconNetworkSpec,
) -> Result<(), Invalid<NetworkError>> {
    let mut errors = Vec::new();
    check_network_spec(name, spec, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Invalid(errors))
    }
}

fn check_network_spec(name: &str, spec: &BeaconNetworkSpec, errors: &mut Vec<NetworkError>) {
    if !is_dns1035_label(name, 63) {
        errors.push(NetworkError::NetworkName(name.to_owned()));
    }
    if !is_beacon_id(&spec.beacon_id) {
        errors.push(NetworkError::BeaconId(spec.beacon_id.clone()));
    }

    let period = duration(errors, "period", &spec.period);
    if period == Some(0) {
        errors.push(NetworkError::PeriodZero);
    }
    let catchup = duration(errors, "catchupPeriod", &spec.catchup_period);
    if let (Some(p), Some(c)) = (period, catchup) {
        if p > 0 && c >= p {
            errors.push(NetworkError::CatchupNotBelowPeriod {
                catchup: spec.catchup_period.0.clone(),
                period: spec.period.0.clone(),
            });
        }
    }
    let deadline = duration(
        errors,
        "upgrade.progressDeadline",
        &spec.upgrade.progress_deadline,
    );
    if deadline == Some(0) {
        errors.push(NetworkError::ProgressDeadlineZero);
    }
    if let (Some(d), Some(p)) = (deadline, period) {
        let soak_seconds = u64::from(spec.upgrade.soak_rounds) * u64::from(p);
        if d > 0 && u64::from(d) <= soak_seconds {
            errors.push(NetworkError::DeadlineShorterThanSoak {
                deadline: spec.upgrade.progress_deadline.0.clone(),
                soak_rounds: spec.upgrade.soak_rounds,
                period: spec.period.0.clone(),
                soak_seconds,
            });
        }
    }
    duration(errors, "upgrade.memberDelay", &spec.upgrade.member_delay);

    if spec.image.as_deref().is_some_and(|i| i.trim().is_empty()) {
        errors.push(NetworkError::NoImage);
    }
    if spec.tls.issuer_ref.name.trim().is_empty() {
        errors.push(NetworkError::NoIssuer);
    }
    if !is_positive_quantity(&spec.storage.size.0) {
        errors.push(NetworkError::StorageSize(spec.storage.size.0.clone()));
    }

    check_members(name, spec, errors);

    let n = spec.members.len();
    if n > 0 {
        let t = spec.threshold;
        if t as usize > n {
            errors.push(NetworkError::ThresholdAboveMembers {
                threshold: t,
                members: n,
            });
        }
        if (t as usize) < minimum_threshold(n) {
            errors.push(NetworkError::ThresholdBelowMajority {
                threshold: t,
                members: n,
                minimum: minimum_threshold(n),
            });
        }
        let margin = spec.upgrade.min_healthy_margin;
        if u64::from(t) + u64::from(margin) > n as u64 {
            errors.push(NetworkError::MarginTooLarge {
                margin,
                threshold: t,
                members: n,
            });
        }
    }
}

fn check_members(network: &str, spec: &BeaconNetworkSpec, errors: &mut Vec<NetworkError>) {
    if spec.members.is_empty() {
        errors.push(NetworkError::NoMembers);
    }
    if spec.members.len() > MAX_MEMBERS as usize {
        errors.push(NetworkError::TooManyMembers(spec.members.len()));
    }
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, member) in spec.members.iter().enumerate() {
        let name = member.name.as_str();
        if !is_dns1035_label(name, 50) {
            errors.push(NetworkError::MemberName {
                index,
                name: name.to_owned(),
            });
        }
        let len = network.len() + 1 + name.len();
        if len > MAX_MEMBER_OBJECT_NAME {
            errors.push(NetworkError::MemberObjectName {
                index,
                name: name.to_owned(),
                network: network.to_owned(),
                len,
            });
        }
        if let Some(&first) = seen.get(name) {
            errors.push(NetworkError::DuplicateMember {
                index,
                first,
                name: name.to_owned(),
            });
        } else {
            seen.insert(name, index);
        }
        if member.image.as_deref().is_some_and(|i| i.trim().is_empty()) {
            errors.push(NetworkError::EmptyMemberImage { index });
        }
        let Some(external) = &member.external else {
            continue;
        };
        for (present, field) in [
            (member.image.is_some(), "image"),
            (member.resources.is_some(), "resources"),
        ] {
            if present {
                errors.push(NetworkError::ExternalOverride {
                    index,
                    name: name.to_owned(),
                    field,
                });
            }
        }
        if let Err(reason) = check_host_port(&external.address) {
            errors.push(NetworkError::ExternalAddress {
                index,
                address: external.address.clone(),
                reason,
            });
        }
        let bytes = spec.scheme.public_key_len();
        let key = &external.public_key;
        let reason = if !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            Some("not hexadecimal".to_owned())
        } else if key.len() != bytes * 2 {
            Some(format!("{} hex digits", key.len()))
        } else {
            None
        };
        if let Some(reason) = reason {
            errors.push(NetworkError::ExternalKey {
                index,
                scheme: spec.scheme,
                bytes,
                reason,
            });
        }
    }
}

/// Parses a duration field, recording a parse error; `None` when it did not parse.
fn duration(errors: &mut Vec<NetworkError>, field: &'static str, value: &Duration) -> Option<u32> {
    match value.seconds() {
        Ok(s) => Some(s),
        Err(source) => {
            errors.push(NetworkError::Duration {
                field,
                value: value.0.clone(),
                source,
            });
            None
        }
    }
}

/// A DNS-1035 label of at most `max` characters: `[a-z]([-a-z0-9]*[a-z0-9])?`.
pub fn is_dns1035_label(s: &str, max: usize) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= max
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && b[b.len() - 1] != b'-'
}

fn is_beacon_id(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 63
        && edge(b[0])
        && edge(b[b.len() - 1])
        && b.iter().all(|&c| edge(c) || c == b'-' || c == b'_')
}

/// `host:port` with a port in 1..=65535 and a host that is a DNS name or a bracketed IPv6.
fn check_host_port(address: &str) -> Result<(), &'static str> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or("no port (the form is host:port)")?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err("the port must be a number from 1 to 65535"),
    }
    if host.is_empty() {
        return Err("no host");
    }
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or("an IPv6 host needs its closing ']'")?;
        return inner
            .parse::<std::net::Ipv6Addr>()
            .map(drop)
            .map_err(|_| "not an IPv6 address inside the brackets");
    }
    let ok = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    if ok && host.len() <= 253 {
        Ok(())
    } else {
        Err("the host is not a DNS name or IP address")
    }
}

/// A Kubernetes quantity of the forms the storage size takes: digits with an optional
/// fraction and an optional binary (Ki..Ei) or decimal (k..E) suffix, above zero.
fn is_positive_quantity(q: &str) -> bool {
    const SUFFIXES: [&str; 12] = [
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E",
    ];
    let number = SUFFIXES.iter().find_map(|s| q.strip_suffix(s)).unwrap_or(q);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
    !int.is_empty()
        && digits(int)
        && digits(frac)
        && !(number.contains('.') && frac.is_empty())
        && int.bytes().chain(frac.bytes()).any(|c| c != b'0')
}

/// A problem in a BeaconCeremony.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CeremonyError {
    #[error("spec.{field} {value:?}: {source}")]
    Duration {
        field: &'static str,
        value: String,
        source: DurationError,
    },
    #[error("spec.window is 0s: members need time to answer the proposal; use e.g. \"24h\"")]
    WindowZero,
    #[error(
        "spec.genesisDelay is 0s: the DKG must finish before the first round; use e.g. \"2m\""
    )]
    GenesisDelayZero,
    #[error("spec.genesisDelay: a Reshare keeps the chain's genesis; remove genesisDelay")]
    GenesisDelayOnReshare,
    #[error("spec.{list}: an Initial ceremony has no previous group; move these members to spec.joining")]
    InitialWithPreviousGroup { list: &'static str },
    #[error("spec.joining: empty; an Initial ceremony needs every member in spec.joining")]
    InitialWithoutJoiners,
    #[error("spec.remaining: empty; a Reshare needs members of the current group that stay (at least its threshold): they hold the shares being reshared")]
    ReshareWithoutRemainers,
    #[error("spec.{list}[{index}] {name:?}: listed twice; list each member once")]
    Repeated {
        list: &'static str,
        index: usize,
        name: String,
    },
    #[error("spec.{list}[{index}] {name:?}: also in spec.{other}; a member is in only one of joining, remaining and leaving")]
    InTwoLists {
        list: &'static str,
        other: &'static str,
        index: usize,
        name: String,
    },
    #[error("spec.threshold {threshold} is above the new group size ({group}, joining + remaining): lower it or add members")]
    ThresholdAboveGroup { threshold: u32, group: usize },
    #[error("spec.threshold {threshold} is below a majority of the new group ({group} members): it must be at least {minimum}")]
    ThresholdBelowMajority {
        threshold: u32,
        group: usize,
        minimum: usize,
    },
    #[error("spec.network {network:?}: the ceremony names network {network:?} but was checked against {other:?}")]
    WrongNetwork { network: String, other: String },
    #[error("spec.{list}[{index}] {name:?}: no member of that name in BeaconNetwork {network:?}; add it to the network's spec.members first, or fix the name")]
    UnknownMember {
        list: &'static str,
        index: usize,
        name: String,
        network: String,
    },
    #[error("spec.joining: an Initial ceremony must include every member of BeaconNetwork {network:?}; missing: {missing}")]
    InitialMissesMembers { network: String, missing: String },
}

/// Checks a ceremony on its own (what the CEL rules check, and duration parses).
pub fn validate_ceremony(ceremony: &BeaconCeremony) -> Result<(), Invalid<CeremonyError>> {
    let mut errors = Vec::new();
    check_ceremony_spec(&ceremony.spec, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Invalid(errors))
    }
}

/// Checks a ceremony against its network (which CEL cannot see): the names refer to the
/// network's members and an Initial ceremony includes all of them. Includes
/// [`validate_ceremony`].
pub fn validate_ceremony_for(
    ceremony: &BeaconCeremony,
    network: &BeaconNetwork,
) -> Result<(), Invalid<CeremonyError>> {
    let mut errors = Vec::new();
    let spec = &ceremony.spec;
    check_ceremony_spec(spec, &mut errors);
    let network_name = network.metadata.name.clone().unwrap_or_default();
    if spec.network != network_name {
        errors.push(CeremonyError::WrongNetwork {
            network: spec.network.clone(),
            other: network_name.clone(),
        });
    }
    let members: BTreeSet<&str> = network
        .spec
        .members
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    for (list, names) in lists(spec) {
        for (index, name) in names.iter().enumerate() {
            if !members.contains(name.as_str()) {
                errors.push(CeremonyError::UnknownMember {
                    list,
                    index,
                    name: name.clone(),
                    network: network_name.clone(),
                });
            }
        }
    }
    if spec.kind == CeremonyKind::Initial {
        let joining: BTreeSet<&str> = spec.joining.iter().map(String::as_str).collect();
        let missing: Vec<&str> = members.difference(&joining).copied().collect();
        if !missing.is_empty() {
            errors.push(CeremonyError::InitialMissesMembers {
                network: network_name,
                missing: missing.join(", "),
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Invalid(errors))
    }
}

fn lists(spec: &BeaconCeremonySpec) -> [(&'static str, &Vec<String>); 3] {
    [
        ("joining", &spec.joining),
        ("remaining", &spec.remaining),
        ("leaving", &spec.leaving),
    ]
}

fn check_ceremony_spec(spec: &BeaconCeremonySpec, errors: &mut Vec<CeremonyError>) {
    let mut duration = |field: &'static str, value: &Duration| match value.seconds() {
        Ok(s) => Some(s),
        Err(source) => {
            errors.push(CeremonyError::Duration {
                field,
                value: value.0.clone(),
                source,
            });
            None
        }
    };
    let window = duration("window", &spec.window);
    let genesis = spec
        .genesis_delay
        .as_ref()
        .map(|d| duration("genesisDelay", d));
    if window == Some(0) {
        errors.push(CeremonyError::WindowZero);
    }
    if genesis == Some(Some(0)) {
        errors.push(CeremonyError::GenesisDelayZero);
    }
    match spec.kind {
        CeremonyKind::Initial => {
            for (list, names) in [("remaining", &spec.remaining), ("leaving", &spec.leaving)] {
                if !names.is_empty() {
                    errors.push(CeremonyError::InitialWithPreviousGroup { list });
                }
            }
            if spec.joining.is_empty() {
                errors.push(CeremonyError::InitialWithoutJoiners);
            }
        }
        CeremonyKind::Reshare => {
            if spec.remaining.is_empty() {
                errors.push(CeremonyError::ReshareWithoutRemainers);
            }
            if spec.genesis_delay.is_some() {
                errors.push(CeremonyError::GenesisDelayOnReshare);
            }
        }
    }
    let mut seen: BTreeMap<&str, &'static str> = BTreeMap::new();
    for (list, names) in lists(spec) {
        let mut in_this: BTreeSet<&str> = BTreeSet::new();
        for (index, name) in names.iter().enumerate() {
            if !in_this.insert(name) {
                errors.push(CeremonyError::Repeated {
                    list,
                    index,
                    name: name.clone(),
                });
            } else if let Some(other) = seen.get(name.as_str()) {
                errors.push(CeremonyError::InTwoLists {
                    list,
                    other,
                    index,
                    name: name.clone(),
                });
            } else {
                seen.insert(name, list);
            }
        }
    }
    let group: BTreeSet<&str> = spec.new_group().collect();
    let n = group.len();
    let t = spec.threshold;
    if t as usize > n {
        errors.push(CeremonyError::ThresholdAboveGroup {
            threshold: t,
            group: n,
        });
    }
    if (t as usize) < minimum_threshold(n) {
        errors.push(CeremonyError::ThresholdBelowMajority {
            threshold: t,
            group: n,
            minimum: minimum_threshold(n),
        });
    }
}

#[cfg(test)]
mod tests;
