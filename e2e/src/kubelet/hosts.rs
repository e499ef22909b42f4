//! Names for pods without a cluster DNS: every pod's `/etc/hosts` (a file of the kubelet,
//! bind-mounted, rewritten in place) lists what CoreDNS would answer for it, from the same
//! sources CoreDNS reads (Services and EndpointSlices):
//!
//! - the pod's own names (`<hostname>.<subdomain>.<ns>.svc.<domain>` and `<hostname>`);
//! - for a headless Service `s` in namespace `n`: `s.n.svc.<domain>`, `s.n.svc`, `s.n` (and
//!   `s` from pods in `n`, as the search path would) to the addresses of its EndpointSlices
//!   that are ready (the endpoint slice controller counts not-ready pods as ready when the
//!   Service sets `publishNotReadyAddresses`), and `<hostname>.s.n.svc.<domain>` … for
//!   endpoints with a hostname (StatefulSet pods);
//! - a ClusterIP Service whose every port equals its target port resolves the same way, to
//!   its ready endpoints, standing in for kube-proxy (ClusterIPs are not routed here); other
//!   ClusterIP Services do not resolve;
//! - `kubernetes.default.svc.<domain>` … to the API server.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// What one pod's hosts file is made for.
#[derive(Debug, Clone)]
pub struct PodName {
    pub namespace: String,
    pub hostname: String,
    pub subdomain: Option<String>,
    pub ip: String,
}

/// The cluster's names: per (namespace, service), the names it resolves and the addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    /// (namespace, first label(s) before `.<ns>`) -> addresses; e.g. ("ns", "svc") or
    /// ("ns", "pod-0.svc").
    names: BTreeMap<(String, String), BTreeSet<String>>,
}

fn resolvable(service: &Service) -> bool {
    let Some(spec) = &service.spec else {
        return false;
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return false;
    }
    if spec.cluster_ip.as_deref() == Some("None") {
        return true;
    }
    spec.ports.iter().flatten().all(|p| match &p.target_port {
        None => true,
        Some(IntOrString::Int(n)) => *n == p.port,
        Some(IntOrString::String(s)) => s.parse::<i32>() == Ok(p.port),
    })
}

impl Records {
    pub fn build(services: &[Service], slices: &[EndpointSlice]) -> Records {
        let mut names: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        let wanted: BTreeSet<(String, String)> = services
            .iter()
            .filter(|s| resolvable(s))
            .filter_map(|s| Some((s.metadata.namespace.clone()?, s.metadata.name.clone()?)))
            .collect();
        for slice in slices {
            let Some(ns) = slice.metadata.namespace.clone() else {
                continue;
            };
            let Some(service) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
                .cloned()
            else {
                continue;
            };
            if !wanted.contains(&(ns.clone(), service.clone())) || slice.address_type != "IPv4" {
                continue;
            }
            for endpoint in slice.endpoints.iter().flatten() {
                let ready = endpoint
                    .conditions
                    .as_ref()
                    .and_then(|c| c.ready)
                    .unwrap_or(true);
                if !ready {
                    continue;
                }
                for address in &endpoint.addresses {
                    names
                        .entry((ns.clone(), service.clone()))
                        .or_default()
                        .insert(address.clone());
                    if let Some(h) = &endpoint.hostname {
                        names
                            .entry((ns.clone(), format!("{h}.{service}")))
                            .or_default()
                            .insert(address.clone());
                    }
                }
            }
        }
        Records { names }
    }

    /// The hosts file of one pod.
    pub fn hosts_file(&self, pod: &PodName, domain: &str, apiserver: &str) -> String {
        let mut out = String::from(
            "# Kubernetes-managed hosts file, written by the e2e test kubelet: it stands in \
             for the cluster DNS.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost \
             ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\t\
             ip6-allnodes\nfe00::2\tip6-allrouters\n",
        );
        match &pod.subdomain {
            Some(sub) if !sub.is_empty() => out.push_str(&format!(
                "{}\t{}.{sub}.{}.svc.{domain}\t{}\n",
                pod.ip, pod.hostname, pod.namespace, pod.hostname
            )),
            _ => out.push_str(&format!("{}\t{}\n", pod.ip, pod.hostname)),
        }
        let mut api = format!(
            "{apiserver}\tkubernetes.default.svc.{domain} kubernetes.default.svc kubernetes.default"
        );
        if pod.namespace == "default" {
            api.push_str(" kubernetes");
        }
        out.push_str(&api);
        out.push('\n');
        // One line per address, the names in a fixed order: stable files are rewritten only
        // when something changed.
        let mut by_ip: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for ((ns, name), ips) in &self.names {
            let mut all = vec![
                format!("{name}.{ns}.svc.{domain}"),
                format!("{name}.{ns}.svc"),
                format!("{name}.{ns}"),
            ];
            if *ns == pod.namespace {
                all.push(name.clone());
            }
            for ip in ips {
                by_ip.entry(ip).or_default().extend(all.iter().cloned());
            }
        }
        for (ip, names) in by_ip {
            out.push_str(&format!("{ip}\t{}\n", names.join(" ")));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(ns: &str, name: &str, cluster_ip: &str, port: i32, target: i32) -> Service {
        serde_json::from_value(json!({
            "metadata": { "name": name, "namespace": ns },
            "spec": { "clusterIP": cluster_ip, "ports": [{ "port": port, "targetPort": target }] }
        }))
        .expect("service")
    }

    fn slice(ns: &str, service: &str, endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": { "name": format!("{service}-abc"), "namespace": ns,
                          "labels": { "kubernetes.io/service-name": service } },
            "addressType": "IPv4",
            "endpoints": endpoints,
        }))
        .expect("slice")
    }

    #[test]
    fn headless_services_and_statefulset_pods_resolve() {
        let services = vec![
            service("ns", "beacon", "None", 4444, 4444),
            service("ns", "web", "10.0.0.7", 80, 8080),
            service("ns", "direct", "10.0.0.8", 8080, 8080),
        ];
        let slices = vec![
            slice(
                "ns",
                "beacon",
                json!([
                    { "addresses": ["10.9.9.2"], "hostname": "beacon-0", "conditions": { "ready": true } },
                    { "addresses": ["10.9.9.3"], "hostname": "beacon-1", "conditions": { "ready": false } },
                ]),
            ),
            slice("ns", "web", json!([{ "addresses": ["10.9.9.4"] }])),
            slice("ns", "direct", json!([{ "addresses": ["10.9.9.4"] }])),
        ];
        let records = Records::build(&services, &slices);
        let pod = PodName {
            namespace: "ns".into(),
            hostname: "beacon-0".into(),
            subdomain: Some("beacon".into()),
            ip: "10.9.9.2".into(),
        };
        let text = records.hosts_file(&pod, "cluster.local", "10.9.9.1");
        assert!(
            text.contains("10.9.9.2\tbeacon-0.beacon.ns.svc.cluster.local\tbeacon-0\n"),
            "{text}"
        );
        assert!(
            text.contains("10.9.9.1\tkubernetes.default.svc.cluster.local"),
            "{text}"
        );
        let line = text
            .lines()
            .find(|l| l.starts_with("10.9.9.2\tbeacon."))
            .expect("service line");
        assert!(
            line.contains(" beacon-0.beacon.ns.svc.cluster.local")
                && line.ends_with(" beacon-0.beacon"),
            "{line}"
        );
        // Not ready: not published.
        assert!(!text.contains("10.9.9.3"), "{text}");
        // A ClusterIP Service that remaps ports cannot be stood in for by a name.
        assert!(!text.contains("web"), "{text}");
        assert!(text.contains("direct.ns.svc.cluster.local"), "{text}");

        let other = PodName {
            namespace: "other".into(),
            hostname: "x".into(),
            subdomain: None,
            ip: "10.9.9.9".into(),
        };
        let text = records.hosts_file(&other, "cluster.local", "10.9.9.1");
        assert!(
            text.contains("beacon.ns.svc") && !text.contains(" beacon\n"),
            "{text}"
        );
    }
}
