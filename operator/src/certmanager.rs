//! The part of cert-manager's `Certificate` (`cert-manager.io/v1`) the operator writes: a typed
//! struct rather than a `DynamicObject`, so the builder's output is checked by the compiler.
//! No schema is generated: the CRD is cert-manager's.

use std::collections::BTreeMap;

use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// `Certificate.spec` (the fields the operator sets).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "cert-manager.io",
    version = "v1",
    kind = "Certificate",
    namespaced,
    derive = "PartialEq",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSpec {
    /// The Secret cert-manager writes (tls.crt, tls.key, ca.crt).
    pub secret_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_template: Option<SecretTemplate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    pub issuer_ref: IssuerReference,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usages: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<PrivateKey>,
}

/// Labels and annotations cert-manager copies onto the Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct SecretTemplate {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `issuerRef`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct IssuerReference {
    pub name: String,
    pub kind: String,
    pub group: String,
}

/// `privateKey`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PrivateKey {
    pub algorithm: String,
    pub size: u32,
    /// `Always`: a renewal gets a new key, so a leaked key stops working at the next renewal.
    pub rotation_policy: String,
}
