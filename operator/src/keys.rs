//! The member's key Secret: the one object the operator creates once and never rewrites
//! (design.md, section 1; the incident of the overwritten keypair). Whether to create it is a
//! pure decision from two observations: the Secret as it is, and whether the member holds a
//! share of a completed DKG (recorded by the operator in the network's status, so it survives
//! a lost Secret).

use std::collections::BTreeMap;

use beacon_node::keys::KeyPair;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::ByteString;

use crate::labels;
use crate::names::{KEY_PRIVATE, KEY_PUBLIC};

/// The key Secret as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretState {
    /// No Secret of that name.
    Absent,
    /// The Secret exists with both key entries.
    Complete,
    /// The Secret exists but lacks these entries (or they are empty).
    Incomplete { missing: Vec<&'static str> },
}

impl SecretState {
    /// What a read of the Secret found (`None`: not found).
    pub fn observe(secret: Option<&Secret>) -> SecretState {
        let Some(secret) = secret else {
            return SecretState::Absent;
        };
        let has = |key: &str| {
            let in_data = secret
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .is_some_and(|v| !v.0.is_empty());
            // stringData is write-only on the server, but an object built locally may use it.
            let in_string_data = secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .is_some_and(|v| !v.is_empty());
            in_data || in_string_data
        };
        let missing: Vec<&'static str> = [KEY_PRIVATE, KEY_PUBLIC]
            .into_iter()
            .filter(|k| !has(k))
            .collect();
        if missing.is_empty() {
            SecretState::Complete
        } else {
            SecretState::Incomplete { missing }
        }
    }
}

/// Whether the member holds a share of a completed DKG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareState {
    /// Never took part in a completed DKG.
    None,
    /// Holds a share of this epoch's group.
    Held { epoch: u32 },
}

/// What to do about the key Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyDecision {
    /// Generate a key pair and create the Secret (create-only: never an update).
    Create,
    /// Use the Secret as it is.
    Keep,
    /// Touch nothing and report this (a Warning event and the Degraded condition).
    Refuse(KeyRefusal),
}

/// Why the operator will not create or use a key Secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefusal {
    #[error("member {member}: its key Secret {secret} is gone but the member holds a share of epoch {epoch}; a new key would not match that share, so the operator will not make one. Restore the Secret from a backup, or take the member out with a Reshare ceremony (as leaving) and bring it back as joining")]
    LostWithShare {
        member: String,
        secret: String,
        epoch: u32,
    },
    #[error("member {member}: its key Secret {secret} lacks {missing}; the operator never rewrites key material. Restore the entries from a backup{hint}")]
    Incomplete {
        member: String,
        secret: String,
        missing: String,
        hint: &'static str,
    },
}

/// Decides about `member`'s key Secret `secret`.
pub fn decide(member: &str, secret: &str, state: &SecretState, share: ShareState) -> KeyDecision {
    match (state, share) {
        // An existing key is never replaced, whatever else is true.
        (SecretState::Complete, _) => KeyDecision::Keep,
        (SecretState::Absent, ShareState::None) => KeyDecision::Create,
        (SecretState::Absent, ShareState::Held { epoch }) => {
            KeyDecision::Refuse(KeyRefusal::LostWithShare {
                member: member.to_owned(),
                secret: secret.to_owned(),
                epoch,
            })
        }
        (SecretState::Incomplete { missing }, share) => {
            KeyDecision::Refuse(KeyRefusal::Incomplete {
                member: member.to_owned(),
                secret: secret.to_owned(),
                missing: missing.join(" and "),
                hint: match share {
                    // Without a share, a new key costs nothing: deleting the Secret lets the
                    // operator create a fresh one. With a share, that would orphan it.
                    ShareState::None => ", or delete the Secret (the member holds no share yet) and the operator creates a new key",
                    ShareState::Held { .. } => " (the member holds a share, so a new key would not match it)",
                },
            })
        }
    }
}

/// Why a key pair could not be made.
#[derive(Debug, thiserror::Error)]
pub enum KeyGenError {
    #[error("member {member}: scheme {scheme}: {reason}")]
    Scheme {
        member: String,
        scheme: String,
        reason: String,
    },
    #[error("member {member}: cannot make its key pair for address {address}: {reason}")]
    Generate {
        member: String,
        address: String,
        reason: String,
    },
}

/// A new key Secret for `member` of `network` in `namespace`: a fresh key pair for `scheme`
/// bound to `address` (the member's peer address), in the node's key file formats. The Secret
/// is immutable. `owner` is the network's reference when its deletionPolicy is Delete (the
/// garbage collector then removes the Secret with the network); without it the Secret
/// outlives the network.
pub fn new_key_secret(
    network: &str,
    namespace: &str,
    member: &str,
    name: &str,
    scheme: &str,
    address: &str,
    owner: Option<OwnerReference>,
) -> Result<Secret, KeyGenError> {
    let core_scheme = beacon_core::crypto::Scheme::from_id_or_default(scheme).map_err(|e| {
        KeyGenError::Scheme {
            member: member.to_owned(),
            scheme: scheme.to_owned(),
            reason: e.to_string(),
        }
    })?;
    let failed = |reason: String| KeyGenError::Generate {
        member: member.to_owned(),
        address: address.to_owned(),
        reason,
    };
    let pair = KeyPair::generate(core_scheme, address, &mut rand_core::OsRng)
        .map_err(|e| failed(e.to_string()))?;
    let private = pair.private_toml().map_err(|e| failed(e.to_string()))?;
    let public = pair.public_toml().map_err(|e| failed(e.to_string()))?;
    let mut annotations = BTreeMap::new();
    annotations.insert(
        PUBLIC_KEY_ANNOTATION.to_owned(),
        hex::encode(pair.public_key().to_bytes()),
    );
    annotations.insert(ADDRESS_ANNOTATION.to_owned(), address.to_owned());
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels::member_labels(network, member)),
            annotations: Some(annotations),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        // Key material is written once; an immutable Secret cannot be edited in place by
        // anyone (it can only be deleted), which is the point.
        immutable: Some(true),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([
            (KEY_PRIVATE.to_owned(), ByteString(private.into_bytes())),
            (KEY_PUBLIC.to_owned(), ByteString(public.into_bytes())),
        ])),
        ..Secret::default()
    })
}

/// Annotations on a key Secret: the public key (hex) and the address it was made for, so
/// that `kubectl get secret -o yaml` shows whose key it is without decoding the data.
pub const PUBLIC_KEY_ANNOTATION: &str = "beacons.dev/public-key";
pub const ADDRESS_ANNOTATION: &str = "beacons.dev/address";

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(entries: &[(&str, &[u8])]) -> Secret {
        Secret {
            data: Some(
                entries
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn observes_absent_complete_and_incomplete_secrets() {
        assert_eq!(SecretState::observe(None), SecretState::Absent);
        let full = secret(&[(KEY_PRIVATE, b"p"), (KEY_PUBLIC, b"q")]);
        assert_eq!(SecretState::observe(Some(&full)), SecretState::Complete);
        let half = secret(&[(KEY_PUBLIC, b"q")]);
        assert_eq!(
            SecretState::observe(Some(&half)),
            SecretState::Incomplete {
                missing: vec![KEY_PRIVATE]
            }
        );
        let empty_entry = secret(&[(KEY_PRIVATE, b""), (KEY_PUBLIC, b"q")]);
        assert_eq!(
            SecretState::observe(Some(&empty_entry)),
            SecretState::Incomplete {
                missing: vec![KEY_PRIVATE]
            }
        );
        assert_eq!(
            SecretState::observe(Some(&Secret::default())),
            SecretState::Incomplete {
                missing: vec![KEY_PRIVATE, KEY_PUBLIC]
            }
        );
    }

    #[test]
    fn a_new_member_gets_a_key_and_an_existing_key_is_kept() {
        assert_eq!(
            decide("a", "n-a-key", &SecretState::Absent, ShareState::None),
            KeyDecision::Create
        );
        for share in [ShareState::None, ShareState::Held { epoch: 3 }] {
            assert_eq!(
                decide("a", "n-a-key", &SecretState::Complete, share),
                KeyDecision::Keep
            );
        }
    }

    #[test]
    fn a_lost_key_of_a_share_holder_is_never_regenerated() {
        let decision = decide(
            "a",
            "n-a-key",
            &SecretState::Absent,
            ShareState::Held { epoch: 3 },
        );
        let KeyDecision::Refuse(refusal) = decision else {
            panic!("expected a refusal, got {decision:?}");
        };
        let text = refusal.to_string();
        assert!(
            text.contains("n-a-key") && text.contains("epoch 3"),
            "{text}"
        );
        assert!(text.contains("Restore the Secret"), "{text}");
    }

    #[test]
    fn a_new_key_secret_holds_a_pair_the_node_loads() {
        let secret = new_key_secret(
            "n",
            "ns",
            "a",
            "n-a-key",
            "bls-unchained-g1-rfc9380",
            "n-a.ns.svc.cluster.local:4444",
            None,
        )
        .expect("key secret");
        assert_eq!(SecretState::observe(Some(&secret)), SecretState::Complete);
        assert_eq!(secret.immutable, Some(true));
        assert!(secret.metadata.owner_references.is_none());
        // The node reads the two entries as files: write them and load them as it does.
        let dir = tempfile::tempdir().expect("tempdir");
        let data = secret.data.as_ref().expect("data");
        let private = dir.path().join(KEY_PRIVATE);
        let public = dir.path().join(KEY_PUBLIC);
        std::fs::write(&private, &data[KEY_PRIVATE].0).expect("write");
        std::fs::write(&public, &data[KEY_PUBLIC].0).expect("write");
        let pair = beacon_node::keys::load_pair_files(&private, &public)
            .expect("the node loads the operator's key files")
            .value;
        assert_eq!(pair.identity().address, "n-a.ns.svc.cluster.local:4444");
        assert!(pair.identity().verifies());
        let annotated =
            &secret.metadata.annotations.as_ref().expect("annotations")[PUBLIC_KEY_ANNOTATION];
        assert_eq!(annotated, &hex::encode(pair.public_key().to_bytes()));
    }

    #[test]
    fn an_unknown_scheme_is_named() {
        let e =
            new_key_secret("n", "ns", "a", "n-a-key", "bls-nope", "h:1", None).expect_err("scheme");
        assert!(e.to_string().contains("bls-nope"), "{e}");
    }

    #[test]
    fn an_incomplete_secret_is_never_completed_or_overwritten() {
        let state = SecretState::Incomplete {
            missing: vec![KEY_PRIVATE],
        };
        for (share, says) in [
            (ShareState::None, "delete the Secret"),
            (ShareState::Held { epoch: 1 }, "would not match"),
        ] {
            match decide("a", "n-a-key", &state, share) {
                KeyDecision::Refuse(r @ KeyRefusal::Incomplete { .. }) => {
                    let text = r.to_string();
                    assert!(text.contains("lacks node.private"), "{text}");
                    assert!(text.contains(says), "{share:?}: {text}");
                }
                other => panic!("{share:?}: expected a refusal, got {other:?}"),
            }
        }
    }
}
