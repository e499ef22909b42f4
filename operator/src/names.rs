//! Names and addresses of what the operator makes for a member, and the paths and ports inside
//! its pod. One place, because the key (whose identity carries the peer address), the
//! certificate (whose DNS names must cover it) and the Service (which answers it) must agree.

/// The node's gRPC peer port (TLS).
pub const PEER_PORT: i32 = 4444;
/// The node's public HTTP port (drand API, `/health`, `/metrics`).
pub const HTTP_PORT: i32 = 8080;
/// The node's control listener for the operator (TLS, client certificates from the
/// operator's own CA only; never the peer port).
pub const CONTROL_PORT: i32 = 8443;
/// Port names in the pod and the Service.
pub const PEER_PORT_NAME: &str = "peer";
pub const HTTP_PORT_NAME: &str = "http";
pub const CONTROL_PORT_NAME: &str = "control";

/// The node's `--dir` (the member's PersistentVolume).
pub const DATA_DIR: &str = "/data";
/// Where the key Secret is mounted: the node reads `<dir>/key/node.private` and
/// `node.public`, so the Secret goes over that folder, read-only.
pub const KEY_DIR: &str = "/data/key";
/// The node's `--tls-dir` (the cert-manager Secret: tls.crt, tls.key, ca.crt).
pub const TLS_DIR: &str = "/etc/beacon/tls";

/// Where the operator's control CA certificate is mounted (`--operator-ca` reads `ca.crt`).
pub const OPERATOR_CA_DIR: &str = "/etc/beacon/operator";
/// The entry of the operator CA ConfigMap.
pub const OPERATOR_CA_ENTRY: &str = "ca.crt";

/// The entries of the key Secret, as the node's key store names its files.
pub const KEY_PRIVATE: &str = "node.private";
pub const KEY_PUBLIC: &str = "node.public";
/// The entries of the TLS Secret that the node reads.
pub const TLS_ENTRIES: [&str; 3] = ["tls.crt", "tls.key", "ca.crt"];

/// The volumeClaimTemplate's name (the PVC is `data-<member object>-0`).
pub const DATA_VOLUME: &str = "data";

/// `<network>-<member>`: the member's StatefulSet, headless Service and Certificate.
pub fn member_object(network: &str, member: &str) -> String {
    format!("{network}-{member}")
}

/// The member's cert-manager Secret.
pub fn tls_secret(network: &str, member: &str) -> String {
    format!("{network}-{member}-tls")
}

/// The member's key Secret (created once by the operator, never rewritten).
pub fn key_secret(network: &str, member: &str) -> String {
    format!("{network}-{member}-key")
}

/// The ConfigMap holding the operator's control CA certificate in a network's namespace.
pub fn operator_ca_config_map(network: &str) -> String {
    format!("{network}-operator-ca")
}

/// The network's PodDisruptionBudget.
pub fn disruption_budget(network: &str) -> String {
    network.to_owned()
}

/// The DNS names of a member's Service, shortest first; the last is the fully qualified one
/// that peers dial.
pub fn service_dns_names(
    network: &str,
    member: &str,
    namespace: &str,
    cluster_domain: &str,
) -> Vec<String> {
    let svc = member_object(network, member);
    vec![
        svc.clone(),
        format!("{svc}.{namespace}"),
        format!("{svc}.{namespace}.svc"),
        format!("{svc}.{namespace}.svc.{cluster_domain}"),
    ]
}

/// The fully qualified DNS name of a member's Service (what peers and the operator dial).
pub fn member_host(network: &str, member: &str, namespace: &str, cluster_domain: &str) -> String {
    let svc = member_object(network, member);
    format!("{svc}.{namespace}.svc.{cluster_domain}")
}

/// `host:port` at which peers reach a local member (the address in its key's identity).
pub fn peer_address(network: &str, member: &str, namespace: &str, cluster_domain: &str) -> String {
    let host = member_host(network, member, namespace, cluster_domain);
    format!("{host}:{PEER_PORT}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_address_is_covered_by_the_certificate_names() {
        let address = peer_address("quicknet", "alice", "beacons", "cluster.local");
        assert_eq!(address, "quicknet-alice.beacons.svc.cluster.local:4444");
        let host = address.rsplit_once(':').map(|(h, _)| h);
        let names = service_dns_names("quicknet", "alice", "beacons", "cluster.local");
        assert!(names.iter().any(|n| Some(n.as_str()) == host), "{names:?}");
        assert_eq!(names[0], "quicknet-alice");
    }
}
