//! The three DKG bundles, field for field as drand's protobuf messages (`dkg.DealBundle`,
//! `dkg.ResponseBundle`, `dkg.JustificationBundle`), so the wire layer maps them 1:1; their
//! `Hash()` exactly as kyber computes it (`share/dkg/structs.go`), and their Schnorr signatures
//! over that hash with the sender's long-term key.

use blstrs::Scalar;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::crypto::schnorr::{self, SchnorrError};
use crate::crypto::{CurveGroup, Point, PointError};

use super::hex_serde;

/// One encrypted share for one holder (`dkg.Deal`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deal {
    pub share_index: u32,
    #[serde(with = "hex_serde")]
    pub encrypted_share: Vec<u8>,
}

/// A dealer's commitments and encrypted shares (`dkg.DealBundle`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealBundle {
    pub dealer_index: u32,
    #[serde(with = "hex_serde::vec")]
    pub commits: Vec<Vec<u8>>,
    pub deals: Vec<Deal>,
    #[serde(with = "hex_serde")]
    pub session_id: Vec<u8>,
    #[serde(with = "hex_serde")]
    pub signature: Vec<u8>,
}

/// A holder's verdict on one dealer (`dkg.Response`): true = success, false = complaint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub dealer_index: u32,
    pub status: bool,
}

/// A holder's verdicts (`dkg.ResponseBundle`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseBundle {
    pub share_index: u32,
    pub responses: Vec<Response>,
    #[serde(with = "hex_serde")]
    pub session_id: Vec<u8>,
    #[serde(with = "hex_serde")]
    pub signature: Vec<u8>,
}

/// A share revealed in clear to answer a complaint (`dkg.Justification`; 32-byte big-endian
/// scalar).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Justification {
    pub share_index: u32,
    #[serde(with = "hex_serde")]
    pub share: Vec<u8>,
}

/// A dealer's answers to the complaints against it (`dkg.JustificationBundle`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JustificationBundle {
    pub dealer_index: u32,
    pub justifications: Vec<Justification>,
    #[serde(with = "hex_serde")]
    pub session_id: Vec<u8>,
    #[serde(with = "hex_serde")]
    pub signature: Vec<u8>,
}

/// Any of the three (`dkg.Packet`'s oneof).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Bundle {
    Deal(DealBundle),
    Response(ResponseBundle),
    Justification(JustificationBundle),
}

/// Which bundle, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BundleKind {
    Deal,
    Response,
    Justification,
}

impl std::fmt::Display for BundleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BundleKind::Deal => "deal",
            BundleKind::Response => "response",
            BundleKind::Justification => "justification",
        })
    }
}

impl DealBundle {
    /// kyber: sha256(u32_be(dealer) ‖ commits… ‖ for deals sorted by share index (stable):
    /// u32_be(share_index) ‖ encrypted_share ‖ session_id).
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.dealer_index.to_be_bytes());
        for c in &self.commits {
            h.update(c);
        }
        let mut deals: Vec<&Deal> = self.deals.iter().collect();
        deals.sort_by_key(|d| d.share_index);
        for d in deals {
            h.update(d.share_index.to_be_bytes());
            h.update(&d.encrypted_share);
        }
        h.update(&self.session_id);
        h.finalize().into()
    }
}

impl ResponseBundle {
    /// kyber: sha256(u32_be(share_index) ‖ for responses sorted by dealer index (stable):
    /// u32_be(dealer) ‖ 0x01|0x00 ‖ session_id).
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.share_index.to_be_bytes());
        let mut responses: Vec<&Response> = self.responses.iter().collect();
        responses.sort_by_key(|r| r.dealer_index);
        for r in responses {
            h.update(r.dealer_index.to_be_bytes());
            h.update([u8::from(r.status)]);
        }
        h.update(&self.session_id);
        h.finalize().into()
    }
}

impl JustificationBundle {
    /// kyber: sha256(u32_be(dealer) ‖ for justifications sorted by share index (stable):
    /// u32_be(share_index) ‖ share_be32 ‖ session_id).
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.dealer_index.to_be_bytes());
        let mut js: Vec<&Justification> = self.justifications.iter().collect();
        js.sort_by_key(|j| j.share_index);
        for j in js {
            h.update(j.share_index.to_be_bytes());
            h.update(&j.share);
        }
        h.update(&self.session_id);
        h.finalize().into()
    }
}

impl Bundle {
    pub fn kind(&self) -> BundleKind {
        match self {
            Bundle::Deal(_) => BundleKind::Deal,
            Bundle::Response(_) => BundleKind::Response,
            Bundle::Justification(_) => BundleKind::Justification,
        }
    }

    /// The sender's index: the dealer's (old) index for deals and justifications, the holder's
    /// (new) index for responses (kyber `Packet.Index()`).
    pub fn index(&self) -> u32 {
        match self {
            Bundle::Deal(b) => b.dealer_index,
            Bundle::Response(b) => b.share_index,
            Bundle::Justification(b) => b.dealer_index,
        }
    }

    pub fn hash(&self) -> [u8; 32] {
        match self {
            Bundle::Deal(b) => b.hash(),
            Bundle::Response(b) => b.hash(),
            Bundle::Justification(b) => b.hash(),
        }
    }

    pub fn session_id(&self) -> &[u8] {
        match self {
            Bundle::Deal(b) => &b.session_id,
            Bundle::Response(b) => &b.session_id,
            Bundle::Justification(b) => &b.session_id,
        }
    }

    pub fn signature(&self) -> &[u8] {
        match self {
            Bundle::Deal(b) => &b.signature,
            Bundle::Response(b) => &b.signature,
            Bundle::Justification(b) => &b.signature,
        }
    }

    fn signature_mut(&mut self) -> &mut Vec<u8> {
        match self {
            Bundle::Deal(b) => &mut b.signature,
            Bundle::Response(b) => &mut b.signature,
            Bundle::Justification(b) => &mut b.signature,
        }
    }

    /// Signs the bundle's hash with Schnorr on `group` (the scheme's key group).
    pub fn sign<R: RngCore + CryptoRng>(
        &mut self,
        group: CurveGroup,
        secret: &Scalar,
        rng: &mut R,
    ) {
        let sig = schnorr::sign(group, secret, &self.hash(), rng);
        *self.signature_mut() = sig;
    }

    /// Verifies the Schnorr signature over the bundle's hash (kyber `VerifyPacketSignature`).
    pub fn verify(&self, signer: &Point) -> Result<(), SchnorrError> {
        schnorr::verify(signer, &self.hash(), self.signature())
    }

    /// Size of the bundle's protobuf encoding (`dkg.DealBundle` …), for accounting the bytes a
    /// ceremony exchanges.
    pub fn wire_size(&self) -> usize {
        match self {
            Bundle::Deal(b) => {
                uint32_field(b.dealer_index)
                    + b.commits
                        .iter()
                        .map(|c| len_delimited(c.len()))
                        .sum::<usize>()
                    + b.deals
                        .iter()
                        .map(|d| {
                            len_delimited(
                                uint32_field(d.share_index) + bytes_field(&d.encrypted_share),
                            )
                        })
                        .sum::<usize>()
                    + bytes_field(&b.session_id)
                    + bytes_field(&b.signature)
            }
            Bundle::Response(b) => {
                uint32_field(b.share_index)
                    + b.responses
                        .iter()
                        .map(|r| {
                            len_delimited(
                                uint32_field(r.dealer_index) + if r.status { 2 } else { 0 },
                            )
                        })
                        .sum::<usize>()
                    + bytes_field(&b.session_id)
                    + bytes_field(&b.signature)
            }
            Bundle::Justification(b) => {
                uint32_field(b.dealer_index)
                    + b.justifications
                        .iter()
                        .map(|j| len_delimited(uint32_field(j.share_index) + bytes_field(&j.share)))
                        .sum::<usize>()
                    + bytes_field(&b.session_id)
                    + bytes_field(&b.signature)
            }
        }
    }
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

// Field numbers of these messages are all below 16, so every tag is one byte. proto3 omits
// scalar fields holding their default value.
fn uint32_field(v: u32) -> usize {
    if v == 0 {
        0
    } else {
        1 + varint_len(u64::from(v))
    }
}

fn bytes_field(b: &[u8]) -> usize {
    if b.is_empty() {
        0
    } else {
        len_delimited(b.len())
    }
}

fn len_delimited(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// A deal bundle whose commitments decoded (kyber converts the protobuf into points before
/// anything else and drops the packet when one does not decode).
#[derive(Clone, Debug)]
pub(crate) struct CheckedDeal {
    pub bundle: DealBundle,
    pub commits: Vec<Point>,
}

/// A justification bundle whose shares decoded to canonical scalars.
#[derive(Clone, Debug)]
pub(crate) struct CheckedJustification {
    pub bundle: JustificationBundle,
    pub shares: Vec<(u32, Scalar)>,
}

/// Decodes commitments: the first is the dealer's public secret and must be a proper point;
/// later ones may be the identity (a coefficient may be zero).
pub(crate) fn decode_commits(
    group: CurveGroup,
    commits: &[Vec<u8>],
) -> Result<Vec<Point>, (usize, PointError)> {
    commits
        .iter()
        .enumerate()
        .map(|(i, bytes)| match Point::decode(group, bytes) {
            Err(PointError::Identity { .. }) if i > 0 => Ok(Point::identity(group)),
            other => other.map_err(|e| (i, e)),
        })
        .collect()
}

/// Decodes a 32-byte big-endian scalar, refusing values not below the group order (kyber's
/// `UnmarshalBinary`).
pub(crate) fn decode_scalar(bytes: &[u8]) -> Option<Scalar> {
    let raw: [u8; 32] = bytes.try_into().ok()?;
    Option::<Scalar>::from(Scalar::from_bytes_be(&raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_ignore_the_order_of_entries() {
        let a = DealBundle {
            dealer_index: 3,
            commits: vec![vec![1; 48]],
            deals: vec![
                Deal {
                    share_index: 2,
                    encrypted_share: vec![2],
                },
                Deal {
                    share_index: 1,
                    encrypted_share: vec![1],
                },
            ],
            session_id: vec![9; 32],
            signature: vec![],
        };
        let mut b = a.clone();
        b.deals.reverse();
        assert_eq!(a.hash(), b.hash());
        b.signature = vec![1, 2, 3];
        assert_eq!(a.hash(), b.hash(), "the signature is not hashed");
        b.session_id = vec![8; 32];
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn response_hash_layout() {
        let r = ResponseBundle {
            share_index: 1,
            responses: vec![
                Response {
                    dealer_index: 2,
                    status: false,
                },
                Response {
                    dealer_index: 0,
                    status: true,
                },
            ],
            session_id: vec![7; 2],
            signature: vec![],
        };
        let mut expected = Sha256::new();
        expected.update([0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 7, 7]);
        let expected: [u8; 32] = expected.finalize().into();
        assert_eq!(r.hash(), expected);
    }

    #[test]
    fn wire_size_counts_protobuf_bytes() {
        let r = Bundle::Response(ResponseBundle {
            share_index: 0,
            responses: vec![Response {
                dealer_index: 1,
                status: true,
            }],
            session_id: vec![0; 32],
            signature: vec![0; 80],
        });
        // responses: tag+len+(tag+1)+(tag+1) = 6; session: 34; signature: 1+1+80 = 82
        assert_eq!(r.wire_size(), 6 + 34 + 82);
    }
}
