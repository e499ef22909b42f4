//! drand's signature schemes: which group holds keys and signatures, the hash-to-curve domain
//! separation tag, and the message each round signs.

use std::fmt;
use std::str::FromStr;

use blstrs::Scalar;
use sha2::{Digest, Sha256};

use super::point::{pairing_product_is_one, CurveGroup, Point, PointError};

/// DST for signatures on G2 (used by drand for the G2 schemes, and also, wrongly but forever, by
/// the retired `bls-unchained-on-g1` when hashing onto G1).
pub const DST_G2: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_";
/// DST for signatures on G1 (RFC 9380 compliant; quicknet).
pub const DST_G1: &[u8] = b"BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Keys on G1, signatures on G2, each round signs sha256(previous signature || round).
    PedersenBlsChained,
    /// Keys on G1, signatures on G2, each round signs sha256(round).
    PedersenBlsUnchained,
    /// Retired ("fastnet"): keys on G2, signatures on G1 hashed with the G2 DST. Verify only.
    BlsUnchainedOnG1,
    /// Keys on G2, signatures on G1 with the RFC 9380 DST ("quicknet").
    BlsUnchainedG1Rfc9380,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemeError {
    #[error("unknown scheme {name:?}: use one of pedersen-bls-chained, pedersen-bls-unchained, bls-unchained-g1-rfc9380 (bls-unchained-on-g1 can only be verified)")]
    Unknown { name: String },
    #[error("the scheme {0} is retired: its beacons can be verified, but nothing new is signed with it; use bls-unchained-g1-rfc9380")]
    Retired(Scheme),
}

impl Scheme {
    pub const ALL: [Scheme; 4] = [
        Scheme::PedersenBlsChained,
        Scheme::PedersenBlsUnchained,
        Scheme::BlsUnchainedOnG1,
        Scheme::BlsUnchainedG1Rfc9380,
    ];

    /// drand's default, used when a file or message names no scheme.
    pub const DEFAULT: Scheme = Scheme::PedersenBlsChained;

    pub const fn id(self) -> &'static str {
        match self {
            Scheme::PedersenBlsChained => "pedersen-bls-chained",
            Scheme::PedersenBlsUnchained => "pedersen-bls-unchained",
            Scheme::BlsUnchainedOnG1 => "bls-unchained-on-g1",
            Scheme::BlsUnchainedG1Rfc9380 => "bls-unchained-g1-rfc9380",
        }
    }

    /// Looks a scheme up by drand's ID; the empty string means the default, as in drand.
    pub fn from_id_or_default(id: &str) -> Result<Scheme, SchemeError> {
        if id.is_empty() {
            Ok(Scheme::DEFAULT)
        } else {
            id.parse()
        }
    }

    /// The group of long-term keys, the group public key and DKG commitments.
    pub const fn key_group(self) -> CurveGroup {
        self.sig_group().dual()
    }

    /// The group of (partial and group) beacon signatures.
    pub const fn sig_group(self) -> CurveGroup {
        match self {
            Scheme::PedersenBlsChained | Scheme::PedersenBlsUnchained => CurveGroup::G2,
            Scheme::BlsUnchainedOnG1 | Scheme::BlsUnchainedG1Rfc9380 => CurveGroup::G1,
        }
    }

    pub const fn dst(self) -> &'static [u8] {
        match self {
            Scheme::BlsUnchainedG1Rfc9380 => DST_G1,
            _ => DST_G2,
        }
    }

    /// Whether each round's message includes the previous round's signature.
    pub const fn is_chained(self) -> bool {
        matches!(self, Scheme::PedersenBlsChained)
    }

    /// Whether new signatures may be made with this scheme.
    pub const fn can_sign(self) -> bool {
        !matches!(self, Scheme::BlsUnchainedOnG1)
    }

    pub fn ensure_can_sign(self) -> Result<(), SchemeError> {
        if self.can_sign() {
            Ok(())
        } else {
            Err(SchemeError::Retired(self))
        }
    }

    /// The 32-byte message a round signs: sha256(previous_signature || u64_be(round)) on the
    /// chained scheme, sha256(u64_be(round)) otherwise (`previous` is then ignored).
    pub fn digest(self, round: u64, previous: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        if self.is_chained() {
            h.update(previous);
        }
        h.update(round.to_be_bytes());
        h.finalize().into()
    }

    pub fn decode_public_key(self, bytes: &[u8]) -> Result<Point, PointError> {
        Point::decode(self.key_group(), bytes)
    }

    pub fn decode_signature(self, bytes: &[u8]) -> Result<Point, PointError> {
        Point::decode(self.sig_group(), bytes)
    }

    /// H(msg) on the signature group with the scheme's DST.
    pub fn hash_to_sig_group(self, msg: &[u8]) -> Point {
        Point::hash_to_curve(self.sig_group(), msg, self.dst())
    }

    /// The public key of a secret scalar: sk·G on the key group.
    pub fn public_key(self, secret: &Scalar) -> Point {
        Point::generator(self.key_group()).mul(secret)
    }

    /// A BLS signature: sk·H(msg). Refused for retired schemes.
    pub fn sign(self, secret: &Scalar, msg: &[u8]) -> Result<Point, SchemeError> {
        self.ensure_can_sign()?;
        Ok(self.hash_to_sig_group(msg).mul(secret))
    }

    /// Verifies a BLS signature of `msg` under `public_key`: e(pk, H(m)) == e(g, sig), as one
    /// product of two pairings. Points of the wrong group never verify.
    pub fn verify(self, public_key: &Point, msg: &[u8], signature: &Point) -> bool {
        self.verify_hashed(public_key, &self.hash_to_sig_group(msg), signature)
    }

    /// [`Scheme::verify`] with H(msg) already computed.
    pub fn verify_hashed(self, public_key: &Point, hashed: &Point, signature: &Point) -> bool {
        if public_key.group() != self.key_group() || signature.group() != self.sig_group() {
            return false;
        }
        let neg_gen = Point::generator(self.key_group()).neg();
        pairing_product_is_one(&[(*public_key, *hashed), (neg_gen, *signature)])
    }
}

impl FromStr for Scheme {
    type Err = SchemeError;

    fn from_str(s: &str) -> Result<Scheme, SchemeError> {
        Scheme::ALL
            .into_iter()
            .find(|scheme| scheme.id() == s)
            .ok_or_else(|| SchemeError::Unknown { name: s.to_owned() })
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl serde::Serialize for Scheme {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

impl<'de> serde::Deserialize<'de> for Scheme {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Scheme, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_roundtrip_and_unknown_is_named() {
        for s in Scheme::ALL {
            assert_eq!(s.id().parse::<Scheme>(), Ok(s));
        }
        let err = "bls-on-g3".parse::<Scheme>().unwrap_err();
        assert!(err.to_string().contains("\"bls-on-g3\""));
        assert_eq!(
            Scheme::from_id_or_default(""),
            Ok(Scheme::PedersenBlsChained)
        );
    }

    #[test]
    fn sign_verify_each_signing_scheme() {
        let sk = Scalar::from(123456789u64);
        for s in Scheme::ALL.into_iter().filter(|s| s.can_sign()) {
            let pk = s.public_key(&sk);
            let msg = s.digest(42, b"prev");
            let sig = s.sign(&sk, &msg).unwrap();
            assert!(s.verify(&pk, &msg, &sig), "{s}");
            assert!(!s.verify(&pk, &s.digest(43, b"prev"), &sig), "{s}");
            assert_eq!(sig.to_bytes().len(), s.sig_group().point_len());
        }
        assert_eq!(
            Scheme::BlsUnchainedOnG1.sign(&sk, b"m"),
            Err(SchemeError::Retired(Scheme::BlsUnchainedOnG1))
        );
    }

    #[test]
    fn digest_ignores_previous_unless_chained() {
        assert_eq!(
            Scheme::PedersenBlsUnchained.digest(5, b"a"),
            Scheme::PedersenBlsUnchained.digest(5, b"b")
        );
        assert_ne!(
            Scheme::PedersenBlsChained.digest(5, b"a"),
            Scheme::PedersenBlsChained.digest(5, b"b")
        );
        // Round 5 unchained: sha256 of 8 big-endian bytes.
        let expected: [u8; 32] = Sha256::digest(5u64.to_be_bytes()).into();
        assert_eq!(Scheme::BlsUnchainedG1Rfc9380.digest(5, &[]), expected);
    }
}
