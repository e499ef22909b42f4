//! A member's headless Service: a stable DNS name for its pod (the StatefulSet's
//! `serviceName`), which is also the peer address in its key and certificate.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::labels;
use crate::names::{self, HTTP_PORT, HTTP_PORT_NAME, PEER_PORT, PEER_PORT_NAME};
use crate::validate::{LocalMember, ValidNetwork};

pub fn service(network: &ValidNetwork, member: &LocalMember) -> Service {
    let name = names::member_object(&network.name, &member.name);
    Service {
        metadata: super::member_meta(network, member, name),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            // Peers must reach a member before it is ready: readiness is /health, which fails
            // until the member has a chain, and it gets one only through the DKG with its
            // peers. A headless Service publishes only ready pods unless told otherwise.
            publish_not_ready_addresses: Some(true),
            selector: Some(labels::member_selector(&network.name, &member.name)),
            ports: Some(vec![
                ServicePort {
                    name: Some(PEER_PORT_NAME.into()),
                    port: PEER_PORT,
                    target_port: Some(IntOrString::String(PEER_PORT_NAME.into())),
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                },
                ServicePort {
                    name: Some(HTTP_PORT_NAME.into()),
                    port: HTTP_PORT,
                    target_port: Some(IntOrString::String(HTTP_PORT_NAME.into())),
                    protocol: Some("TCP".into()),
                    app_protocol: Some("http".into()),
                    ..ServicePort::default()
                },
            ]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}
