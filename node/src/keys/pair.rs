//! The long-term key pair (`node.private`, `node.public`) and its format migrations.

use std::path::{Path, PathBuf};

use beacon_core::crypto::identity::{self, verify_self_signature, verify_v1_self_signature};
use beacon_core::crypto::{Point, Scalar, Scheme};
use ff::Field;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

use super::fsutil::{mode_of, read_text, FILE_MODE};
use super::{detect_version, hex_field, parse_toml, KeyError, Loaded, CURRENT_FORMAT};

const PRIVATE_HINT: &str = "create a key pair with `beacon-node keys generate --dir DIR --scheme SCHEME --address HOST:PORT`, or, to move a drand node's keys here, copy its key/drand_id.private to this name";
const PUBLIC_HINT: &str = "create a key pair with `beacon-node keys generate --dir DIR --scheme SCHEME --address HOST:PORT`, or, to move a drand node's keys here, copy its key/drand_id.public to this name";

/// drand's `PairTOML` (`drand_id.private`) plus our `FormatVersion`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct PrivateToml {
    #[serde(rename = "Key")]
    key: String,
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

/// drand's `PublicTOML` (`drand_id.public`) plus our `FormatVersion`. `TLS` only appears in
/// drand v1 files and is dropped by the migration (peers always use TLS here).
#[derive(Debug, Default, Serialize, Deserialize)]
struct PublicToml {
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
    #[serde(
        rename = "FormatVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    format_version: Option<i64>,
}

/// A node's public identity: address, long-term public key, and the v2 self-signature binding
/// the key to its scheme.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub address: String,
    pub key: Point,
    pub signature: Point,
    pub scheme: Scheme,
}

impl Identity {
    /// Whether the signature is a valid v2 self-signature of the key under the scheme.
    pub fn verifies(&self) -> bool {
        verify_self_signature(self.scheme, &self.key, &self.signature)
    }
}

/// The long-term key pair. The secret never appears in `Debug` output.
#[derive(Clone)]
pub struct KeyPair {
    secret: Scalar,
    identity: Identity,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("identity", &self.identity)
            .field("secret", &"<secret>")
            .finish()
    }
}

impl KeyPair {
    /// A fresh key pair for `scheme` (which must be able to sign) at `address` (HOST:PORT).
    pub fn generate<R: RngCore + CryptoRng>(
        scheme: Scheme,
        address: &str,
        rng: &mut R,
    ) -> Result<KeyPair, KeyError> {
        let mut secret = Scalar::random(&mut *rng);
        // A zero secret would give the identity point as public key; vanishingly unlikely, but
        // cheap to rule out.
        while secret.is_zero_vartime() {
            secret = Scalar::random(&mut *rng);
        }
        KeyPair::from_secret(scheme, secret, address)
    }

    /// The key pair of a known secret, self-signed (v2) for `scheme`.
    pub fn from_secret(scheme: Scheme, secret: Scalar, address: &str) -> Result<KeyPair, KeyError> {
        validate_address(address).map_err(|reason| KeyError::Invalid { reason })?;
        let signature = identity::self_sign(scheme, &secret).map_err(|e| KeyError::Invalid {
            reason: e.to_string(),
        })?;
        Ok(KeyPair {
            identity: Identity {
                address: address.to_owned(),
                key: scheme.public_key(&secret),
                signature,
                scheme,
            },
            secret,
        })
    }

    pub fn secret(&self) -> &Scalar {
        &self.secret
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn scheme(&self) -> Scheme {
        self.identity.scheme
    }

    pub fn public_key(&self) -> &Point {
        &self.identity.key
    }

    /// The private key file (`key/node.private`), current format.
    pub fn private_toml(&self) -> Result<String, KeyError> {
        to_toml(&PrivateToml {
            key: hex::encode(self.secret.to_bytes_be()),
            scheme_name: Some(self.scheme().id().to_owned()),
            format_version: Some(i64::from(CURRENT_FORMAT)),
        })
    }

    /// The public key file (`key/node.public`), current format.
    pub fn public_toml(&self) -> Result<String, KeyError> {
        to_toml(&PublicToml {
            address: self.identity.address.clone(),
            key: hex::encode(self.identity.key.to_bytes()),
            tls: None,
            signature: Some(hex::encode(self.identity.signature.to_bytes())),
            scheme_name: Some(self.scheme().id().to_owned()),
            format_version: Some(i64::from(CURRENT_FORMAT)),
        })
    }
}

fn to_toml<T: Serialize>(value: &T) -> Result<String, KeyError> {
    toml::to_string(value).map_err(|e| KeyError::Invalid {
        reason: format!("cannot encode the key file as TOML: {e}"),
    })
}

/// Checks `HOST:PORT` (the form drand and peers dial): a non-empty host and a port 1-65535.
pub fn validate_address(address: &str) -> Result<(), String> {
    let shape = "expected HOST:PORT, e.g. node1.example.org:4444";
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("{address:?}: {shape}"))?;
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(format!(
            "{address:?}: the host is not a host name or IP; {shape}"
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(()),
        _ => Err(format!(
            "{address:?}: the port must be a number from 1 to 65535; {shape}"
        )),
    }
}

/// A `SchemeName` field: absent or empty means "not said" (drand's default applies later).
fn named_scheme(path: &Path, name: &Option<String>) -> Result<Option<Scheme>, KeyError> {
    match name.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(n) => n
            .parse()
            .map(Some)
            .map_err(|e: beacon_core::crypto::SchemeError| KeyError::Field {
                path: path.to_path_buf(),
                field: "SchemeName".into(),
                reason: e.to_string(),
            }),
    }
}

fn parse_secret(path: &Path, text: &str) -> Result<Scalar, KeyError> {
    let field = |reason: String| KeyError::Field {
        path: path.to_path_buf(),
        field: "Key".into(),
        reason,
    };
    let bytes = hex_field(path, "Key", text)?;
    let raw: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        field(format!(
            "a secret key is 32 bytes (64 hex digits), got {} bytes",
            bytes.len()
        ))
    })?;
    let secret = Option::<Scalar>::from(Scalar::from_bytes_be(&raw)).ok_or_else(|| {
        field("not a secret key: the number is not below the BLS12-381 group order".into())
    })?;
    if secret.is_zero_vartime() {
        return Err(field("the secret key is zero".into()));
    }
    Ok(secret)
}

fn decode_key(path: &Path, scheme: Scheme, text: &str) -> Result<Point, KeyError> {
    let bytes = hex_field(path, "Key", text)?;
    scheme
        .decode_public_key(&bytes)
        .map_err(|e| KeyError::Field {
            path: path.to_path_buf(),
            field: "Key".into(),
            reason: format!("not a {} public key: {e}", scheme.id()),
        })
}

fn decode_signature(path: &Path, scheme: Scheme, text: &str) -> Result<Point, KeyError> {
    let bytes = hex_field(path, "Signature", text)?;
    scheme
        .decode_signature(&bytes)
        .map_err(|e| KeyError::Field {
            path: path.to_path_buf(),
            field: "Signature".into(),
            reason: format!("not a {} signature: {e}", scheme.id()),
        })
}

/// The public file, parsed and decoded, before any migration.
struct PublicFile {
    version: u32,
    scheme_named: Option<Scheme>,
    address: String,
    key_hex: String,
    signature_hex: Option<String>,
}

fn read_public(path: &Path) -> Result<PublicFile, KeyError> {
    let toml: PublicToml = parse_toml(path, &read_text(path, PUBLIC_HINT)?)?;
    let scheme_named = named_scheme(path, &toml.scheme_name)?;
    let version = detect_version(path, toml.format_version, scheme_named.is_some())?;
    if toml.address.trim().is_empty() {
        return Err(KeyError::Field {
            path: path.to_path_buf(),
            field: "Address".into(),
            reason: "empty: the node's HOST:PORT is required".into(),
        });
    }
    Ok(PublicFile {
        version,
        scheme_named,
        address: toml.address,
        key_hex: toml.key,
        signature_hex: toml.signature.filter(|s| !s.trim().is_empty()),
    })
}

struct PrivateFile {
    version: u32,
    scheme_named: Option<Scheme>,
    secret: Scalar,
}

fn read_private(path: &Path) -> Result<PrivateFile, KeyError> {
    let toml: PrivateToml = parse_toml(path, &read_text(path, PRIVATE_HINT)?)?;
    let scheme_named = named_scheme(path, &toml.scheme_name)?;
    let version = detect_version(path, toml.format_version, scheme_named.is_some())?;
    Ok(PrivateFile {
        version,
        scheme_named,
        secret: parse_secret(path, &toml.key)?,
    })
}

/// The scheme of a pair: what the files name (they must agree when both do), else drand's
/// default, which is what a file without `SchemeName` has always meant.
fn pair_scheme(
    private_path: &Path,
    public_path: &Path,
    private: &PrivateFile,
    public: &PublicFile,
) -> Result<Scheme, KeyError> {
    match (private.scheme_named, public.scheme_named) {
        (Some(a), Some(b)) if a != b => Err(KeyError::Mismatch {
            first: private_path.to_path_buf(),
            second: public_path.to_path_buf(),
            reason: format!("SchemeName is {a} in the first and {b} in the second"),
        }),
        (Some(s), _) | (None, Some(s)) => Ok(s),
        (None, None) => Ok(Scheme::DEFAULT),
    }
}

/// The in-memory state the migrations step through.
struct PairState {
    version: u32,
    scheme: Scheme,
    secret: Scalar,
    address: String,
    key: Point,
    signature: Option<Point>,
}

/// 0 → 1: drand v1 files. The scheme is already resolved (the default when neither file names
/// one); the old signature, over blake2b(key) without the scheme prefix, must verify as such
/// (anything else means the file was altered), then the identity is re-signed with the v2
/// message, which the private key allows.
fn migrate_0_to_1(state: &mut PairState, public_path: &Path) -> Result<(), KeyError> {
    if let Some(old) = &state.signature {
        let v1 = verify_v1_self_signature(state.scheme, &state.key, old);
        let v2 = verify_self_signature(state.scheme, &state.key, old);
        if !v1 && !v2 {
            return Err(KeyError::Field {
                path: public_path.to_path_buf(),
                field: "Signature".into(),
                reason: "does not verify, neither as a drand v1 self-signature nor as a v2 one: the file was altered; restore it from a backup".into(),
            });
        }
    }
    let signature =
        identity::self_sign(state.scheme, &state.secret).map_err(|e| KeyError::Invalid {
            reason: format!(
                "{}: cannot re-sign the identity: {e}",
                public_path.display()
            ),
        })?;
    state.signature = Some(signature);
    state.version = 1;
    Ok(())
}

/// 1 → 2: only `FormatVersion` is added.
fn migrate_1_to_2(state: &mut PairState) {
    state.version = 2;
}

pub(super) fn load_pair(
    private_path: &Path,
    public_path: &Path,
) -> Result<Loaded<KeyPair>, KeyError> {
    let private = read_private(private_path)?;
    let public = read_public(public_path)?;
    let scheme = pair_scheme(private_path, public_path, &private, &public)?;
    let key = decode_key(public_path, scheme, &public.key_hex)?;
    if scheme.public_key(&private.secret) != key {
        return Err(KeyError::Mismatch {
            first: private_path.to_path_buf(),
            second: public_path.to_path_buf(),
            reason: "the public key `Key` of the second is not the public key of the secret `Key` of the first".into(),
        });
    }
    let signature = public
        .signature_hex
        .as_deref()
        .map(|s| decode_signature(public_path, scheme, s))
        .transpose()?;
    let found = private.version.min(public.version);
    let mut state = PairState {
        version: found,
        scheme,
        secret: private.secret,
        address: public.address,
        key,
        signature,
    };
    while state.version < CURRENT_FORMAT {
        match state.version {
            0 => migrate_0_to_1(&mut state, public_path)?,
            _ => migrate_1_to_2(&mut state),
        }
    }
    let signature = state.signature.ok_or_else(|| KeyError::Field {
        path: public_path.to_path_buf(),
        field: "Signature".into(),
        reason: "missing: a drand v2 (or later) public key file carries the self-signature".into(),
    })?;
    let identity = Identity {
        address: state.address,
        key: state.key,
        signature,
        scheme: state.scheme,
    };
    if !identity.verifies() {
        return Err(KeyError::Field {
            path: public_path.to_path_buf(),
            field: "Signature".into(),
            reason: format!(
                "the self-signature does not verify for this key under {} (message: scheme name || blake2b(key)): the file was altered; restore it from a backup",
                identity.scheme
            ),
        });
    }
    Ok(Loaded {
        value: KeyPair {
            secret: state.secret,
            identity,
        },
        format_version: found,
    })
}

/// What `beacon-node keys show` reports.
#[derive(Clone, Debug, Serialize)]
pub struct KeyReport {
    pub public_file: PathBuf,
    pub address: String,
    pub scheme: String,
    pub public_key: String,
    pub signature: Option<String>,
    /// Format version of `node.public` on disk.
    pub format_version: u32,
    /// "v2" (scheme name || blake2b(key)), "v1" (drand v1: blake2b(key) only) or "none".
    pub signature_format: &'static str,
    /// Whether the signature on disk verifies under the rules of its format.
    pub self_signature_valid: bool,
    /// `None` when `node.private` is absent.
    pub private_key_matches: Option<bool>,
    pub warnings: Vec<String>,
}

impl KeyReport {
    /// Whether everything checked out.
    pub fn ok(&self) -> bool {
        self.self_signature_valid && self.private_key_matches != Some(false)
    }
}

pub(super) fn inspect(private_path: &Path, public_path: &Path) -> Result<KeyReport, KeyError> {
    let public = read_public(public_path)?;
    let private = match read_private(private_path) {
        Ok(p) => Some(p),
        Err(KeyError::Missing { .. }) => None,
        Err(e) => return Err(e),
    };
    let scheme = match &private {
        Some(p) => pair_scheme(private_path, public_path, p, &public)?,
        None => public.scheme_named.unwrap_or(Scheme::DEFAULT),
    };
    let key = decode_key(public_path, scheme, &public.key_hex)?;
    let signature = public
        .signature_hex
        .as_deref()
        .map(|s| decode_signature(public_path, scheme, s))
        .transpose()?;
    let mut warnings = Vec::new();
    let (signature_format, self_signature_valid) = match &signature {
        None => {
            warnings.push("node.public carries no self-signature".to_owned());
            ("none", false)
        }
        Some(sig) if verify_self_signature(scheme, &key, sig) => ("v2", true),
        Some(sig) if public.version == 0 && verify_v1_self_signature(scheme, &key, sig) => {
            ("v1", true)
        }
        Some(_) => ("v2", false),
    };
    if signature_format == "v1" {
        warnings.push(
            "drand v1 self-signature (no scheme prefix): loading re-signs the identity in memory with the v2 message; the file on disk is unchanged"
                .to_owned(),
        );
    }
    if public.version < CURRENT_FORMAT {
        warnings.push(format!(
            "node.public is format version {} (current {CURRENT_FORMAT}): it loads through migrations",
            public.version
        ));
    }
    let private_key_matches = private
        .as_ref()
        .map(|p| scheme.public_key(&p.secret) == key);
    if private.is_none() {
        warnings.push(format!("{} is absent", private_path.display()));
    }
    if let Some(mode) = mode_of(private_path) {
        if private.is_some() && mode & 0o077 != 0 {
            warnings.push(format!(
                "{} has mode {mode:04o}: others can read the secret key; run chmod {FILE_MODE:04o} on it",
                private_path.display()
            ));
        }
    }
    Ok(KeyReport {
        public_file: public_path.to_path_buf(),
        address: public.address,
        scheme: scheme.id().to_owned(),
        public_key: hex::encode(key.to_bytes()),
        signature: signature.map(|s| hex::encode(s.to_bytes())),
        format_version: public.version,
        signature_format,
        self_signature_valid,
        private_key_matches,
        warnings,
    })
}
