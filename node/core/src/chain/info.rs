//! Chain info, the root of trust of a chain, in drand's two JSON shapes, and its hash.

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::crypto::{Point, PointError, Scheme, SchemeError};
use crate::hexbytes::HexBytes;

/// What a chain is: its group public key, period, genesis, genesis seed, scheme and beacon ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainInfo {
    pub public_key: Point,
    /// Seconds between rounds.
    pub period: u32,
    /// Unix seconds at which round 1 starts.
    pub genesis_time: i64,
    /// The group hash of the first group; signed over by round 1 of a chained chain.
    pub genesis_seed: Vec<u8>,
    pub scheme: Scheme,
    /// "default" for the default beacon.
    pub beacon_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfoError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("expected a JSON object with the chain info")]
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
    #[error("field `{field}`: {source}")]
    Point {
        field: &'static str,
        source: PointError,
    },
    #[error("field `{field}`: {source}")]
    Scheme {
        field: &'static str,
        source: SchemeError,
    },
    #[error("field `period` must be a whole number of seconds above 0")]
    ZeroPeriod,
    #[error("fields `{a}` and `{b}` both name the {what} and disagree")]
    Conflict {
        a: &'static str,
        b: &'static str,
        what: &'static str,
    },
    #[error("field `{field}` says the chain hash is {given} but the other fields hash to {computed}: the info was altered or belongs to another chain")]
    ChainHashMismatch {
        field: &'static str,
        given: String,
        computed: String,
    },
}

impl ChainInfo {
    /// sha256(u32_be(period) || i64_be(genesis) || public key || genesis seed || beacon ID),
    /// the beacon ID only when it is neither empty nor "default".
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.period.to_be_bytes());
        h.update(self.genesis_time.to_be_bytes());
        h.update(self.public_key.to_bytes());
        h.update(&self.genesis_seed);
        if !self.beacon_id.is_empty() && self.beacon_id != "default" {
            h.update(self.beacon_id.as_bytes());
        }
        h.finalize().into()
    }

    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash())
    }

    /// Parses either JSON shape drand uses (v1: `hash`, `groupHash`, `schemeID`,
    /// `metadata.beaconID`; v2: `chain_hash`, `genesis_seed`, `scheme`, `beacon_id`). A chain
    /// hash, when present, must match the one recomputed from the other fields.
    pub fn from_json(text: &str) -> Result<ChainInfo, InfoError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| InfoError::Json(e.to_string()))?;
        ChainInfo::from_value(&value)
    }

    pub fn from_value(value: &Value) -> Result<ChainInfo, InfoError> {
        let obj = value.as_object().ok_or(InfoError::NotAnObject)?;
        let scheme_field = either(obj, "schemeID", "scheme", "scheme", string_field)?;
        let (scheme_name, scheme_field) = scheme_field.unwrap_or((String::new(), "schemeID"));
        let scheme =
            Scheme::from_id_or_default(&scheme_name).map_err(|source| InfoError::Scheme {
                field: scheme_field,
                source,
            })?;
        let pk_bytes = hex_field(obj, "public_key")?.ok_or(InfoError::Missing {
            field: "public_key",
        })?;
        let public_key =
            scheme
                .decode_public_key(&pk_bytes)
                .map_err(|source| InfoError::Point {
                    field: "public_key",
                    source,
                })?;
        let period = u64_field(obj, "period")?.ok_or(InfoError::Missing { field: "period" })?;
        let period = u32::try_from(period).map_err(|_| InfoError::Type {
            field: "period",
            expected: "a number of seconds below 2^32",
        })?;
        if period == 0 {
            return Err(InfoError::ZeroPeriod);
        }
        let genesis_time = match obj.get("genesis_time") {
            None => {
                return Err(InfoError::Missing {
                    field: "genesis_time",
                })
            }
            Some(v) => v.as_i64().ok_or(InfoError::Type {
                field: "genesis_time",
                expected: "an integer of unix seconds",
            })?,
        };
        let (genesis_seed, _) =
            either(obj, "groupHash", "genesis_seed", "genesis seed", hex_field)?.ok_or(
                InfoError::Missing {
                    field: "genesis_seed",
                },
            )?;
        let v1_id = match obj.get("metadata") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => str_field(m, "beaconID")?,
            Some(_) => {
                return Err(InfoError::Type {
                    field: "metadata",
                    expected: "an object",
                })
            }
        };
        let v2_id = str_field(obj, "beacon_id")?;
        let beacon_id = match (v1_id, v2_id) {
            (Some(a), Some(b)) if a != b => {
                return Err(InfoError::Conflict {
                    a: "metadata.beaconID",
                    b: "beacon_id",
                    what: "beacon ID",
                })
            }
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => "default",
        };
        let info = ChainInfo {
            public_key,
            period,
            genesis_time,
            genesis_seed,
            scheme,
            beacon_id: if beacon_id.is_empty() {
                "default".to_owned()
            } else {
                beacon_id.to_owned()
            },
        };
        if let Some((given, field)) = either(obj, "hash", "chain_hash", "chain hash", hex_field)? {
            let computed = info.hash();
            if given != computed {
                return Err(InfoError::ChainHashMismatch {
                    field,
                    given: hex::encode(given),
                    computed: hex::encode(computed),
                });
            }
        }
        Ok(info)
    }

    /// The v1 JSON drand nodes serve at `/info`, fields in drand's order.
    pub fn to_json_v1(&self) -> String {
        #[derive(Serialize)]
        struct Meta<'a> {
            #[serde(rename = "beaconID")]
            beacon_id: &'a str,
        }
        #[derive(Serialize)]
        struct V1<'a> {
            public_key: HexBytes,
            period: u32,
            genesis_time: i64,
            hash: HexBytes,
            #[serde(rename = "groupHash")]
            group_hash: HexBytes,
            #[serde(rename = "schemeID")]
            scheme_id: &'a str,
            metadata: Meta<'a>,
        }
        let v = V1 {
            public_key: self.public_key.to_bytes().into(),
            period: self.period,
            genesis_time: self.genesis_time,
            hash: self.hash().to_vec().into(),
            group_hash: self.genesis_seed.clone().into(),
            scheme_id: self.scheme.id(),
            metadata: Meta {
                beacon_id: &self.beacon_id,
            },
        };
        // Serialising plain strings and numbers cannot fail.
        serde_json::to_string(&v).unwrap_or_default()
    }

    /// The v2 JSON (drand's `Info.MarshalJSON` and the relay's `/v2/.../info`).
    pub fn to_json_v2(&self) -> String {
        #[derive(Serialize)]
        struct V2<'a> {
            public_key: HexBytes,
            period: u32,
            genesis_time: i64,
            genesis_seed: HexBytes,
            chain_hash: HexBytes,
            scheme: &'a str,
            beacon_id: &'a str,
        }
        let v = V2 {
            public_key: self.public_key.to_bytes().into(),
            period: self.period,
            genesis_time: self.genesis_time,
            genesis_seed: self.genesis_seed.clone().into(),
            chain_hash: self.hash().to_vec().into(),
            scheme: self.scheme.id(),
            beacon_id: &self.beacon_id,
        };
        serde_json::to_string(&v).unwrap_or_default()
    }

    /// Start time of `round` on this chain.
    pub fn time_of_round(&self, round: u64) -> i64 {
        super::time::time_of_round(self.period, self.genesis_time, round)
    }

    /// The round in progress at `now` (unix seconds).
    pub fn current_round(&self, now: i64) -> u64 {
        super::time::current_round(now, self.period, self.genesis_time)
    }
}

type Getter<T> = fn(&Map<String, Value>, &'static str) -> Result<Option<T>, InfoError>;

/// A field that has a v1 and a v2 name: either may be given; both must then agree.
fn either<T: PartialEq>(
    obj: &Map<String, Value>,
    v1: &'static str,
    v2: &'static str,
    what: &'static str,
    get: Getter<T>,
) -> Result<Option<(T, &'static str)>, InfoError> {
    match (get(obj, v1)?, get(obj, v2)?) {
        (Some(a), Some(b)) if a != b => Err(InfoError::Conflict { a: v1, b: v2, what }),
        (Some(a), _) => Ok(Some((a, v1))),
        (None, Some(b)) => Ok(Some((b, v2))),
        (None, None) => Ok(None),
    }
}

fn str_field<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a str>, InfoError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(InfoError::Type {
            field,
            expected: "a string",
        }),
    }
}

fn string_field(
    obj: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, InfoError> {
    Ok(str_field(obj, field)?.map(str::to_owned))
}

fn hex_field(obj: &Map<String, Value>, field: &'static str) -> Result<Option<Vec<u8>>, InfoError> {
    match str_field(obj, field)? {
        None => Ok(None),
        Some(s) => hex::decode(s).map(Some).map_err(|e| InfoError::Hex {
            field,
            reason: e.to_string(),
        }),
    }
}

fn u64_field(obj: &Map<String, Value>, field: &'static str) -> Result<Option<u64>, InfoError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(InfoError::Type {
            field,
            expected: "a non-negative integer",
        }),
    }
}
