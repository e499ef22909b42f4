//! The Kubernetes permissions the operator needs, in one place: the Helm chart's ClusterRole
//! and Role must grant exactly these (an e2e test renders the chart and compares), so a
//! controller that starts calling a new API fails in the tests instead of in a cluster.
//!
//! Least privilege: key Secrets are create-only (the operator never updates or deletes a
//! Secret, so it cannot overwrite key material even by mistake), pods may only be deleted (the
//! rollout planner deletes a member's pod; the StatefulSet controller recreates it), and the
//! leader-election Lease is granted in the operator's own namespace only.

use std::collections::BTreeSet;

use k8s_openapi::api::rbac::v1::PolicyRule;

/// The cluster-wide rules (the chart's ClusterRole): BeaconNetworks and BeaconCeremonies live
/// in any namespace, and so does everything the operator makes for their members.
pub fn required_rules() -> Vec<PolicyRule> {
    const READ: [&str; 3] = ["get", "list", "watch"];
    const OWN: [&str; 6] = ["get", "list", "watch", "create", "patch", "delete"];
    vec![
        rule(
            "beacons.dev",
            &["beaconnetworks", "beaconceremonies"],
            &["get", "list", "watch", "patch", "update"],
        ),
        rule(
            "beacons.dev",
            &["beaconnetworks/status", "beaconceremonies/status"],
            &["get", "patch", "update"],
        ),
        rule(
            "beacons.dev",
            &["beaconnetworks/finalizers", "beaconceremonies/finalizers"],
            &["update"],
        ),
        rule("apps", &["statefulsets"], &OWN),
        // A member's template history, to roll it back to its previous revision.
        rule("apps", &["controllerrevisions"], &READ),
        rule("", &["services", "configmaps"], &OWN),
        rule("", &["secrets"], &["get", "list", "watch", "create"]),
        rule("", &["pods"], &["get", "list", "watch", "delete"]),
        rule("", &["persistentvolumeclaims"], &READ),
        rule("", &["events"], &["create", "patch"]),
        rule("events.k8s.io", &["events"], &["create", "patch"]),
        rule("policy", &["poddisruptionbudgets"], &OWN),
        rule("cert-manager.io", &["certificates"], &OWN),
        rule("cert-manager.io", &["issuers"], &READ),
    ]
}

/// The rules of the Role in the operator's own namespace: its leader-election Lease.
pub fn leader_election_rules() -> Vec<PolicyRule> {
    vec![rule(
        "coordination.k8s.io",
        &["leases"],
        &["get", "list", "watch", "create", "update", "patch"],
    )]
}

/// One permission: a verb on a resource (`resource` or `resource/subresource`) of an API
/// group (`""` for the core group).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permission {
    pub group: String,
    pub resource: String,
    pub verb: String,
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        write!(f, "{} {}/{}", self.verb, group, self.resource)
    }
}

/// Every (group, resource, verb) that `rules` grant, so two rule lists that group the same
/// permissions differently compare equal. Resource names and non-resource URLs are not
/// expanded: [`is_plain`] tells whether a rule uses them.
pub fn permissions(rules: &[PolicyRule]) -> BTreeSet<Permission> {
    let mut out = BTreeSet::new();
    for rule in rules {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    out.insert(Permission {
                        group: group.clone(),
                        resource: resource.clone(),
                        verb: verb.clone(),
                    });
                }
            }
        }
    }
    out
}

/// A rule without resource names, non-resource URLs or wildcards: what [`permissions`]
/// returns for it is all that it grants.
pub fn is_plain(rule: &PolicyRule) -> bool {
    let wild = |values: &Option<Vec<String>>| values.iter().flatten().any(|v| v.contains('*'));
    rule.resource_names.as_ref().is_none_or(Vec::is_empty)
        && rule.non_resource_urls.as_ref().is_none_or(Vec::is_empty)
        && !wild(&rule.api_groups)
        && !wild(&rule.resources)
        && !rule.verbs.iter().any(|v| v.contains('*'))
}

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        ..PolicyRule::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(rules: &[PolicyRule], group: &str, resource: &str, verb: &str) -> bool {
        permissions(rules).contains(&Permission {
            group: group.into(),
            resource: resource.into(),
            verb: verb.into(),
        })
    }

    #[test]
    fn secrets_are_create_only_and_nothing_is_a_wildcard() {
        let rules = required_rules();
        assert!(rules.iter().all(is_plain));
        assert!(grants(&rules, "", "secrets", "create"));
        for verb in ["update", "patch", "delete", "deletecollection"] {
            assert!(!grants(&rules, "", "secrets", verb), "{verb} secrets");
        }
        for verb in ["create", "update", "patch"] {
            assert!(!grants(&rules, "", "pods", verb), "{verb} pods");
        }
    }

    #[test]
    fn the_lease_is_only_in_the_namespaced_role() {
        let cluster = required_rules();
        assert!(!permissions(&cluster)
            .iter()
            .any(|p| p.group == "coordination.k8s.io"));
        let lease = leader_election_rules();
        assert!(lease.iter().all(is_plain));
        assert!(grants(&lease, "coordination.k8s.io", "leases", "update"));
        assert!(!grants(&lease, "coordination.k8s.io", "leases", "delete"));
    }

    #[test]
    fn no_permission_is_listed_twice() {
        let rules = required_rules();
        let listed: usize = rules
            .iter()
            .map(|r| r.verbs.len() * r.resources.as_ref().map_or(0, Vec::len))
            .sum();
        assert_eq!(listed, permissions(&rules).len());
    }

    #[test]
    fn is_plain_refuses_what_permissions_cannot_show() {
        let mut named = rule("", &["secrets"], &["get"]);
        named.resource_names = Some(vec!["one".into()]);
        assert!(!is_plain(&named));
        assert!(!is_plain(&rule("*", &["secrets"], &["get"])));
        assert!(!is_plain(&rule("", &["secrets"], &["*"])));
        assert!(is_plain(&rule("", &["secrets"], &["get"])));
    }
}
