//! A member's cert-manager Certificate: its peer TLS identity, for every DNS name of its
//! Service, used both as server and as client certificate (peers authenticate each other).

use kube::core::ObjectMeta;

use crate::build::Cluster;
use crate::certmanager::{
    Certificate, CertificateSpec, IssuerReference, PrivateKey, SecretTemplate,
};
use crate::labels;
use crate::names;
use crate::validate::{LocalMember, ValidNetwork};

pub fn certificate(network: &ValidNetwork, member: &LocalMember, cluster: &Cluster) -> Certificate {
    let name = names::member_object(&network.name, &member.name);
    let meta: ObjectMeta = super::member_meta(network, member, name);
    let issuer = &network.tls.issuer_ref;
    Certificate {
        metadata: meta,
        spec: CertificateSpec {
            secret_name: names::tls_secret(&network.name, &member.name),
            secret_template: Some(SecretTemplate {
                labels: labels::member_labels(&network.name, &member.name),
                ..SecretTemplate::default()
            }),
            dns_names: names::service_dns_names(
                &network.name,
                &member.name,
                &network.namespace,
                &cluster.domain,
            ),
            issuer_ref: IssuerReference {
                name: issuer.name.clone(),
                kind: issuer.kind.as_str().into(),
                group: issuer.group.clone(),
            },
            // ECDSA keys sign; they do not encipher, so no "key encipherment".
            usages: vec![
                "digital signature".into(),
                "server auth".into(),
                "client auth".into(),
            ],
            private_key: Some(PrivateKey {
                algorithm: "ECDSA".into(),
                size: 256,
                rotation_policy: "Always".into(),
            }),
        },
    }
}
