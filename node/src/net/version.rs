//! The version handshake: every request carries the sender's node version; requests from
//! versions outside the compatible window are refused with both versions named.
//!
//! The window is drand's: same major version, minor within one. We advertise a drand-compatible
//! version (2.1.x), since drand's Go nodes apply the same rule to us.

use std::fmt;

use super::proto::drand::{Metadata, NodeVersion};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    pub prerelease: Option<String>,
}

/// The protocol version this build speaks.
pub const PROTOCOL: (u32, u32, u32) = (2, 1, 0);

impl Version {
    pub fn ours() -> Version {
        Version {
            major: PROTOCOL.0,
            minor: PROTOCOL.1,
            patch: PROTOCOL.2,
            prerelease: None,
        }
    }

    /// Parses "2.1.0" or "2.1.0-rc1".
    pub fn parse(s: &str) -> Option<Version> {
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) => (c, Some(p.to_owned())),
            None => (s, None),
        };
        let mut parts = core.trim_start_matches('v').split('.');
        let v = Version {
            major: parts.next()?.parse().ok()?,
            minor: parts.next()?.parse().ok()?,
            patch: parts.next()?.parse().ok()?,
            prerelease: pre,
        };
        parts.next().is_none().then_some(v)
    }

    pub fn to_proto(&self) -> NodeVersion {
        NodeVersion {
            major: self.major,
            minor: self.minor,
            patch: self.patch,
            prerelease: self.prerelease.clone(),
        }
    }

    pub fn from_proto(v: &NodeVersion) -> Version {
        Version {
            major: v.major,
            minor: v.minor,
            patch: v.patch,
            prerelease: v.prerelease.clone().filter(|p| !p.is_empty()),
        }
    }

    /// Same major version, minor versions at most one apart.
    pub fn compatible_with(&self, other: &Version) -> bool {
        self.major == other.major && self.minor.abs_diff(other.minor) <= 1
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if let Some(p) = &self.prerelease {
            write!(f, "-{p}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("incompatible node version: the peer runs {theirs}, this node runs {ours}; nodes must share the major version and be at most one minor version apart; upgrade the older node")]
pub struct Incompatible {
    pub theirs: Version,
    pub ours: Version,
}

/// Checks a request's metadata. Requests without a version pass, as in drand (clients and
/// relays send none); peers always send one.
pub fn check(ours: &Version, metadata: Option<&Metadata>) -> Result<(), Incompatible> {
    let Some(theirs) = metadata.and_then(|m| m.node_version.as_ref()) else {
        return Ok(());
    };
    let theirs = Version::from_proto(theirs);
    if ours.compatible_with(&theirs) {
        Ok(())
    } else {
        Err(Incompatible {
            theirs,
            ours: ours.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window() {
        let ours = Version::parse("2.1.0").unwrap();
        for ok in ["2.0.9", "2.1.7", "2.2.0", "2.1.0-rc1"] {
            assert!(ours.compatible_with(&Version::parse(ok).unwrap()), "{ok}");
        }
        for bad in ["1.5.8", "2.3.0", "3.1.0"] {
            assert!(
                !ours.compatible_with(&Version::parse(bad).unwrap()),
                "{bad}"
            );
        }
        assert_eq!(Version::parse("2.1"), None);
        assert_eq!(Version::parse("2.1.0.1"), None);
    }

    #[test]
    fn refusal_names_both_versions() {
        let ours = Version::ours();
        let md = Metadata {
            node_version: Some(Version::parse("3.0.1").unwrap().to_proto()),
            ..Default::default()
        };
        let err = check(&ours, Some(&md)).unwrap_err().to_string();
        assert!(
            err.contains("peer runs 3.0.1") && err.contains(&format!("this node runs {ours}")),
            "{err}"
        );
        assert!(check(&ours, None).is_ok());
    }
}
