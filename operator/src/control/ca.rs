//! The operator's control CA: the only issuer whose client certificates a member's
//! `--operator-listen` accepts. It is not the members' peer CA (cert-manager's), so a member's
//! own certificate cannot drive another member's ceremony commands.
//!
//! The CA's key lives in one Secret in the operator's namespace, created once and never
//! rewritten (a second replica that loses the create race reads the winner's). Its
//! certificate, public, is copied into a ConfigMap in every network's namespace, which member
//! pods mount. The operator's client certificate is issued from it in memory at start, so the
//! client key never leaves the process.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::labels;
use crate::names::OPERATOR_CA_ENTRY;

/// The Secret entries.
pub const SECRET_CERT: &str = "ca.crt";
pub const SECRET_KEY: &str = "ca.key";
/// The default name of the CA Secret (in the operator's namespace).
pub const DEFAULT_SECRET: &str = "beacon-operator-control-ca";
const CA_COMMON_NAME: &str = "beacon-operator control CA";
/// The client certificate's common name (what a member logs as the caller).
pub const CLIENT_COMMON_NAME: &str = "beacon-operator";

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot make the control CA: {0}")]
    Generate(rcgen::Error),
    #[error("Secret {secret}: entry {entry} is missing or not UTF-8 PEM; the operator never rewrites this Secret: restore it from a backup, or delete it so that the operator makes a new CA (members then get the new CA certificate at their next restart)")]
    Incomplete { secret: String, entry: &'static str },
    #[error("Secret {secret}: {entry} is not a usable key: {reason}; restore it, or delete the Secret so that the operator makes a new CA")]
    BadKey {
        secret: String,
        entry: &'static str,
        reason: String,
    },
}

/// The CA certificate and key (PEM).
#[derive(Clone)]
pub struct ControlCa {
    pub cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for ControlCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlCa")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<secret>")
            .finish()
    }
}

/// A client certificate and its key (PEM).
#[derive(Clone)]
pub struct ClientIdentity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// The CA's parameters. The issuer is rebuilt from these and the stored key (same subject,
/// same key, so the same authority key identifier): no certificate parsing is needed.
fn ca_params() -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(CaError::Generate)?;
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = rcgen::date_time_ymd(2024, 1, 1);
    params.not_before = now;
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    Ok(params)
}

impl ControlCa {
    /// A new CA.
    pub fn generate() -> Result<ControlCa, CaError> {
        let key = KeyPair::generate().map_err(CaError::Generate)?;
        let cert = ca_params()?.self_signed(&key).map_err(CaError::Generate)?;
        Ok(ControlCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The CA stored in `secret` (named `name`, for errors).
    pub fn from_secret(name: &str, secret: &Secret) -> Result<ControlCa, CaError> {
        let entry = |entry: &'static str| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(entry))
                .and_then(|v| String::from_utf8(v.0.clone()).ok())
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| CaError::Incomplete {
                    secret: name.to_owned(),
                    entry,
                })
        };
        let ca = ControlCa {
            cert_pem: entry(SECRET_CERT)?,
            key_pem: entry(SECRET_KEY)?,
        };
        KeyPair::from_pem(&ca.key_pem).map_err(|e| CaError::BadKey {
            secret: name.to_owned(),
            entry: SECRET_KEY,
            reason: e.to_string(),
        })?;
        Ok(ca)
    }

    /// The Secret that stores this CA (created once; never updated).
    pub fn to_secret(&self, name: &str, namespace: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                labels: Some(BTreeMap::from([(
                    labels::MANAGED_BY.to_owned(),
                    labels::MANAGER.to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            immutable: Some(true),
            data: Some(BTreeMap::from([
                (
                    SECRET_CERT.to_owned(),
                    ByteString(self.cert_pem.clone().into_bytes()),
                ),
                (
                    SECRET_KEY.to_owned(),
                    ByteString(self.key_pem.clone().into_bytes()),
                ),
            ])),
            ..Secret::default()
        }
    }

    /// The ConfigMap member pods of a network mount (`--operator-ca`).
    pub fn config_map(&self, name: &str, namespace: &str, network: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                labels: Some(labels::network_labels(network)),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                OPERATOR_CA_ENTRY.to_owned(),
                self.cert_pem.clone(),
            )])),
            ..ConfigMap::default()
        }
    }

    /// A client certificate for this operator process (valid for a year; a new one is issued
    /// at every start).
    pub fn issue_client(&self) -> Result<ClientIdentity, CaError> {
        let ca_key = KeyPair::from_pem(&self.key_pem).map_err(|e| CaError::BadKey {
            secret: DEFAULT_SECRET.to_owned(),
            entry: SECRET_KEY,
            reason: e.to_string(),
        })?;
        let issuer = Issuer::new(ca_params()?, ca_key);
        let key = KeyPair::generate().map_err(CaError::Generate)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(CaError::Generate)?;
        params
            .distinguished_name
            .push(DnType::CommonName, CLIENT_COMMON_NAME);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = std::time::SystemTime::now();
        params.not_before = (now - std::time::Duration::from_secs(3600)).into();
        params.not_after = (now + std::time::Duration::from_secs(365 * 24 * 3600)).into();
        let cert = params.signed_by(&key, &issuer).map_err(CaError::Generate)?;
        Ok(ClientIdentity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_ca_round_trips_and_issues_clients() {
        let ca = ControlCa::generate().expect("generate");
        let secret = ca.to_secret(DEFAULT_SECRET, "ops");
        let back = ControlCa::from_secret(DEFAULT_SECRET, &secret).expect("load");
        assert_eq!(back.cert_pem, ca.cert_pem);
        let client = back.issue_client().expect("issue");
        assert!(client.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(secret.immutable, Some(true));
    }

    #[test]
    fn an_incomplete_secret_is_refused_with_the_entry_named() {
        let mut secret = ControlCa::generate()
            .expect("generate")
            .to_secret(DEFAULT_SECRET, "ops");
        if let Some(d) = secret.data.as_mut() {
            d.remove(SECRET_KEY);
        }
        let e = ControlCa::from_secret(DEFAULT_SECRET, &secret).expect_err("incomplete");
        let text = e.to_string();
        assert!(
            text.contains("ca.key") && text.contains("never rewrites"),
            "{text}"
        );
    }
}
