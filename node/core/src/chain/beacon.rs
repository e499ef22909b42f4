//! Beacons: what a round publishes, drand's JSON for it, and verification against chain info.

use rand_core::{CryptoRng, RngCore};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::info::ChainInfo;
use crate::crypto::{verify_batch, BatchEntry, Point, PointError};
use crate::hexbytes::HexBytes;

/// One round's output. `previous_signature` is empty on unchained chains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Beacon {
    pub round: u64,
    pub signature: Vec<u8>,
    pub previous_signature: Vec<u8>,
}

/// A beacon as read from JSON, with the randomness it claims (drand's v2 JSON has none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedBeacon {
    pub beacon: Beacon,
    pub randomness: Option<Vec<u8>>,
}

/// Malformed beacon input: names the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BeaconError {
    #[error("expected a JSON object with the fields round and signature")]
    NotAnObject,
    #[error("field `{field}` is missing")]
    Missing { field: &'static str },
    #[error("field `{field}` must be {expected}")]
    Type {
        field: &'static str,
        expected: &'static str,
    },
    #[error("field `{field}` is not hex: {reason}")]
    Hex { field: &'static str, reason: String },
    #[error("field `signature`: {0}")]
    Signature(PointError),
}

/// Why a well-formed beacon does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BeaconFault {
    #[error("bad signature: it does not verify under the chain's public key")]
    BadSignature,
    #[error("randomness mismatch: the beacon says {claimed} but sha256(signature) is {computed}")]
    RandomnessMismatch { claimed: String, computed: String },
    #[error("previous signature missing: the chain is chained (pedersen-bls-chained), so each round signs the previous round's signature")]
    MissingPreviousSignature,
    #[error(
        "previous signature does not match the signature of round {previous_round} given beside it"
    )]
    BrokenChain { previous_round: u64 },
}

impl Beacon {
    /// sha256(signature), the beacon's randomness for every scheme.
    pub fn randomness(&self) -> [u8; 32] {
        Sha256::digest(&self.signature).into()
    }

    /// The JSON drand serves for a beacon:
    /// `{"round":N,"randomness":..,"signature":..,"previous_signature":..}`, the last omitted
    /// when empty.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Json {
            round: u64,
            randomness: HexBytes,
            signature: HexBytes,
            #[serde(skip_serializing_if = "HexBytes::is_empty")]
            previous_signature: HexBytes,
        }
        serde_json::to_string(&Json {
            round: self.round,
            randomness: self.randomness().to_vec().into(),
            signature: self.signature.clone().into(),
            previous_signature: self.previous_signature.clone().into(),
        })
        .unwrap_or_default()
    }
}

impl PublishedBeacon {
    pub fn from_value(value: &Value) -> Result<PublishedBeacon, BeaconError> {
        let obj = value.as_object().ok_or(BeaconError::NotAnObject)?;
        let round = match obj.get("round") {
            None => return Err(BeaconError::Missing { field: "round" }),
            Some(v) => v.as_u64().ok_or(BeaconError::Type {
                field: "round",
                expected: "a non-negative integer",
            })?,
        };
        let hex_field = |field: &'static str| -> Result<Option<Vec<u8>>, BeaconError> {
            match obj.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => hex::decode(s).map(Some).map_err(|e| BeaconError::Hex {
                    field,
                    reason: e.to_string(),
                }),
                Some(_) => Err(BeaconError::Type {
                    field,
                    expected: "a hex string",
                }),
            }
        };
        let signature =
            hex_field("signature")?.ok_or(BeaconError::Missing { field: "signature" })?;
        Ok(PublishedBeacon {
            beacon: Beacon {
                round,
                signature,
                previous_signature: hex_field("previous_signature")?.unwrap_or_default(),
            },
            randomness: hex_field("randomness")?,
        })
    }
}

impl ChainInfo {
    /// Decodes the beacon's signature on the chain's signature group (checked: on the curve,
    /// in the subgroup, not the identity).
    pub fn decode_signature(&self, beacon: &Beacon) -> Result<Point, BeaconError> {
        self.scheme
            .decode_signature(&beacon.signature)
            .map_err(BeaconError::Signature)
    }

    /// The message the beacon's round signs on this chain.
    pub fn beacon_message(&self, beacon: &Beacon) -> Result<[u8; 32], BeaconFault> {
        if self.scheme.is_chained() && beacon.previous_signature.is_empty() {
            return Err(BeaconFault::MissingPreviousSignature);
        }
        Ok(self.scheme.digest(beacon.round, &beacon.previous_signature))
    }

    /// Verifies one beacon: its signature under the group key and, when given, its randomness.
    pub fn verify_beacon(&self, published: &PublishedBeacon) -> Result<(), VerifyFailure> {
        let sig = self.decode_signature(&published.beacon)?;
        check_randomness(published)?;
        let msg = self.beacon_message(&published.beacon)?;
        if self.scheme.verify(&self.public_key, &msg, &sig) {
            Ok(())
        } else {
            Err(BeaconFault::BadSignature.into())
        }
    }

    /// Verifies many beacons of this chain with one batch check (falling back to locating the
    /// bad ones). Returns, for each beacon that fails, its position and the reason. Malformed
    /// signatures are reported as [`VerifyFailure::Malformed`]. On a chained chain, a beacon
    /// whose predecessor is in the list must also carry that predecessor's signature.
    pub fn verify_beacons<R: RngCore + CryptoRng>(
        &self,
        beacons: &[PublishedBeacon],
        rng: &mut R,
    ) -> Vec<(usize, VerifyFailure)> {
        let mut failures: Vec<(usize, VerifyFailure)> = Vec::new();
        let mut entries = Vec::with_capacity(beacons.len());
        let mut positions = Vec::with_capacity(beacons.len());
        let mut by_round = std::collections::HashMap::with_capacity(beacons.len());
        for b in beacons {
            by_round.insert(b.beacon.round, &b.beacon.signature);
        }
        for (i, published) in beacons.iter().enumerate() {
            let beacon = &published.beacon;
            let checked = self
                .decode_signature(beacon)
                .map_err(VerifyFailure::from)
                .and_then(|sig| {
                    check_randomness(published)?;
                    let message = self.beacon_message(beacon)?;
                    if self.scheme.is_chained() && beacon.round > 1 {
                        if let Some(prev) = by_round.get(&(beacon.round - 1)) {
                            if **prev != beacon.previous_signature {
                                return Err(BeaconFault::BrokenChain {
                                    previous_round: beacon.round - 1,
                                }
                                .into());
                            }
                        }
                    }
                    Ok(BatchEntry {
                        message: message.to_vec(),
                        signature: sig,
                    })
                });
            match checked {
                Ok(entry) => {
                    entries.push(entry);
                    positions.push(i);
                }
                Err(f) => failures.push((i, f)),
            }
        }
        for bad in verify_batch(self.scheme, &self.public_key, &entries, rng) {
            failures.push((positions[bad], BeaconFault::BadSignature.into()));
        }
        failures.sort_by_key(|(i, _)| *i);
        failures
    }
}

fn check_randomness(published: &PublishedBeacon) -> Result<(), BeaconFault> {
    if let Some(claimed) = &published.randomness {
        let computed = published.beacon.randomness();
        if claimed.as_slice() != computed {
            return Err(BeaconFault::RandomnessMismatch {
                claimed: hex::encode(claimed),
                computed: hex::encode(computed),
            });
        }
    }
    Ok(())
}

/// A beacon that did not verify: either its input was malformed, or it is well-formed and wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyFailure {
    #[error(transparent)]
    Malformed(#[from] BeaconError),
    #[error(transparent)]
    Fault(#[from] BeaconFault),
}
