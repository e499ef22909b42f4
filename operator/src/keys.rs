//! The member's key Secret: the one object the operator creates once and never rewrites
//! (design.md, section 1; the incident of the overwritten keypair). Whether to create it is a
//! pure decision from two observations: the Secret as it is, and whether the member holds a
//! share of a completed DKG (recorded by the operator in the network's status, so it survives
//! a lost Secret).

use k8s_openapi::api::core::v1::Secret;

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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

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
