//! A container's environment and command line, as the kubelet makes them: `env` (values,
//! `$(VAR)` references, `valueFrom` field, Secret and ConfigMap references), `envFrom`, the
//! `KUBERNETES_SERVICE_*` variables, and `$(VAR)` expansion in `command` and `args`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, ObjectFieldSelector, Pod, Secret};
use kube::{Api, Client};

/// What a pod's fields resolve to (filled by the kubelet once the pod has an address).
#[derive(Debug, Clone, Default)]
pub struct PodFacts {
    pub pod_ip: String,
    pub host_ip: String,
    pub node_name: String,
    /// `KUBERNETES_SERVICE_HOST` / `_PORT`.
    pub apiserver_host: String,
    pub apiserver_port: u16,
}

/// Expands `$(NAME)` with `vars` as Kubernetes does: `$$` is a literal `$`, and references
/// to unknown names are left as they are.
pub fn expand(input: &str, vars: &BTreeMap<String, String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                b'(' => {
                    if let Some(len) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + len];
                        if let Some(value) = vars.get(name) {
                            out.push_str(value);
                        } else {
                            out.push_str(&input[i..i + 3 + len]);
                        }
                        i += 3 + len;
                        continue;
                    }
                }
                _ => {}
            }
        }
        let ch = input[i..].chars().next().unwrap_or('$');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The value of a `fieldRef` (`metadata.name`, `metadata.labels['k']`, `status.podIP`, …).
pub fn field_value(
    pod: &Pod,
    facts: &PodFacts,
    field: &ObjectFieldSelector,
) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let path = field.field_path.as_str();
    let from_map = |map: &Option<BTreeMap<String, String>>, prefix: &str| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(
            map.as_ref()
                .and_then(|m| m.get(key))
                .cloned()
                .unwrap_or_default(),
        )
    };
    if let Some(v) = from_map(&meta.labels, "metadata.labels['") {
        return Ok(v);
    }
    if let Some(v) = from_map(&meta.annotations, "metadata.annotations['") {
        return Ok(v);
    }
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec
            .and_then(|s| s.node_name.clone())
            .unwrap_or_else(|| facts.node_name.clone()),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => facts.pod_ip.clone(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.clone(),
        other => {
            return Err(format!(
                "fieldRef {other:?} is not supported by the test kubelet (metadata.name, \
                 metadata.namespace, metadata.uid, metadata.labels['…'], \
                 metadata.annotations['…'], spec.nodeName, spec.serviceAccountName, \
                 status.podIP, status.hostIP are)"
            ))
        }
    })
}

/// Reads Secrets and ConfigMaps of one namespace for env and volumes.
#[derive(Clone)]
pub struct Sources {
    pub client: Client,
    pub namespace: String,
}

impl Sources {
    pub async fn secret(&self, name: &str) -> Result<Option<Secret>, String> {
        Api::<Secret>::namespaced(self.client.clone(), &self.namespace)
            .get_opt(name)
            .await
            .map_err(|e| format!("cannot read Secret {}/{name}: {e}", self.namespace))
    }

    pub async fn config_map(&self, name: &str) -> Result<Option<ConfigMap>, String> {
        Api::<ConfigMap>::namespaced(self.client.clone(), &self.namespace)
            .get_opt(name)
            .await
            .map_err(|e| format!("cannot read ConfigMap {}/{name}: {e}", self.namespace))
    }

    /// A key of a Secret as text; `None` when missing and optional.
    async fn secret_key(
        &self,
        name: &str,
        key: &str,
        optional: bool,
    ) -> Result<Option<String>, String> {
        let secret = self.secret(name).await?;
        let value = secret
            .as_ref()
            .and_then(|s| s.data.as_ref())
            .and_then(|d| d.get(key))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned());
        match (value, optional) {
            (Some(v), _) => Ok(Some(v)),
            (None, true) => Ok(None),
            (None, false) if secret.is_none() => Err(format!("secret {name:?} not found")),
            (None, false) => Err(format!(
                "couldn't find key {key} in Secret {}/{name}",
                self.namespace
            )),
        }
    }

    async fn config_map_key(
        &self,
        name: &str,
        key: &str,
        optional: bool,
    ) -> Result<Option<String>, String> {
        let cm = self.config_map(name).await?;
        let value = cm
            .as_ref()
            .and_then(|c| c.data.as_ref())
            .and_then(|d| d.get(key))
            .cloned();
        match (value, optional) {
            (Some(v), _) => Ok(Some(v)),
            (None, true) => Ok(None),
            (None, false) if cm.is_none() => Err(format!("configmap {name:?} not found")),
            (None, false) => Err(format!(
                "couldn't find key {key} in ConfigMap {}/{name}",
                self.namespace
            )),
        }
    }
}

/// The container's environment in order (later entries win, as in a container runtime),
/// or the message of `CreateContainerConfigError`.
pub async fn container_env(
    pod: &Pod,
    container: &Container,
    facts: &PodFacts,
    image_env: &[(String, String)],
    sources: &Sources,
) -> Result<Vec<(String, String)>, String> {
    let hostname = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut set = |vars: &mut BTreeMap<String, String>, k: String, v: String| {
        if !vars.contains_key(&k) {
            order.push(k.clone());
        }
        vars.insert(k, v);
    };
    set(
        &mut vars,
        "PATH".into(),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
    );
    set(&mut vars, "HOSTNAME".into(), hostname);
    set(&mut vars, "HOME".into(), "/".into());
    for (k, v) in image_env {
        set(&mut vars, k.clone(), v.clone());
    }
    let api_port = facts.apiserver_port.to_string();
    let api_url = format!("tcp://{}:{api_port}", facts.apiserver_host);
    for (k, v) in [
        ("KUBERNETES_SERVICE_HOST", facts.apiserver_host.as_str()),
        ("KUBERNETES_SERVICE_PORT", &api_port),
        ("KUBERNETES_SERVICE_PORT_HTTPS", &api_port),
        ("KUBERNETES_PORT", &api_url),
        ("KUBERNETES_PORT_443_TCP", &api_url),
        ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
        ("KUBERNETES_PORT_443_TCP_PORT", &api_port),
        (
            "KUBERNETES_PORT_443_TCP_ADDR",
            facts.apiserver_host.as_str(),
        ),
    ] {
        set(&mut vars, k.into(), v.into());
    }
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            let optional = r.optional.unwrap_or(false);
            match sources.config_map(&r.name).await? {
                Some(cm) => {
                    for (k, v) in cm.data.into_iter().flatten() {
                        set(&mut vars, format!("{prefix}{k}"), v);
                    }
                }
                None if optional => {}
                None => return Err(format!("configmap {:?} not found", r.name)),
            }
        }
        if let Some(r) = &from.secret_ref {
            let optional = r.optional.unwrap_or(false);
            match sources.secret(&r.name).await? {
                Some(s) => {
                    for (k, v) in s.data.into_iter().flatten() {
                        set(
                            &mut vars,
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v.0).into_owned(),
                        );
                    }
                }
                None if optional => {}
                None => return Err(format!("secret {:?} not found", r.name)),
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(value) = &var.value {
            Some(expand(value, &vars))
        } else if let Some(from) = &var.value_from {
            if let Some(field) = &from.field_ref {
                Some(field_value(pod, facts, field)?)
            } else if let Some(r) = &from.secret_key_ref {
                sources
                    .secret_key(&r.name, &r.key, r.optional.unwrap_or(false))
                    .await?
            } else if let Some(r) = &from.config_map_key_ref {
                sources
                    .config_map_key(&r.name, &r.key, r.optional.unwrap_or(false))
                    .await?
            } else if from.resource_field_ref.is_some() {
                return Err(format!(
                    "env {}: resourceFieldRef is not supported by the test kubelet",
                    var.name
                ));
            } else {
                Some(String::new())
            }
        } else {
            Some(String::new())
        };
        if let Some(value) = value {
            set(&mut vars, var.name.clone(), value);
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|k| vars.get(&k).map(|v| (k, v.clone())))
        .collect())
}

/// `command` and `args` with `$(VAR)` expanded.
pub fn expand_all(items: &[String], env: &[(String, String)]) -> Vec<String> {
    let vars: BTreeMap<String, String> = env.iter().cloned().collect();
    items.iter().map(|s| expand(s, &vars)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let vars: BTreeMap<String, String> = [
            ("A".to_string(), "1".to_string()),
            ("POD".into(), "p-0".into()),
        ]
        .into();
        assert_eq!(expand("$(A)-$(POD)", &vars), "1-p-0");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("$(MISSING)", &vars), "$(MISSING)");
        assert_eq!(expand("a$b$(A", &vars), "a$b$(A");
        assert_eq!(expand("é$(A)ü", &vars), "é1ü");
    }

    #[test]
    fn field_refs() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "p", "namespace": "ns", "labels": { "app": "x" } },
            "spec": { "containers": [], "nodeName": "n1" }
        }))
        .expect("pod");
        let facts = PodFacts {
            pod_ip: "10.1.2.3".into(),
            ..PodFacts::default()
        };
        let f = |p: &str| {
            field_value(
                &pod,
                &facts,
                &ObjectFieldSelector {
                    field_path: p.into(),
                    api_version: None,
                },
            )
        };
        assert_eq!(f("metadata.name").as_deref(), Ok("p"));
        assert_eq!(f("metadata.namespace").as_deref(), Ok("ns"));
        assert_eq!(f("status.podIP").as_deref(), Ok("10.1.2.3"));
        assert_eq!(f("spec.nodeName").as_deref(), Ok("n1"));
        assert_eq!(f("metadata.labels['app']").as_deref(), Ok("x"));
        assert!(f("status.phase").is_err());
    }
}
