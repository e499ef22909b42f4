//! Labels on everything the operator makes: the app.kubernetes.io set, and ours, which the
//! selectors use (they must never change for an existing StatefulSet, so they hold only the
//! network and member names).

use std::collections::BTreeMap;

pub const NAME: &str = "app.kubernetes.io/name";
pub const INSTANCE: &str = "app.kubernetes.io/instance";
pub const COMPONENT: &str = "app.kubernetes.io/component";
pub const PART_OF: &str = "app.kubernetes.io/part-of";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const NETWORK: &str = "beacons.dev/network";
pub const MEMBER: &str = "beacons.dev/member";

/// `app.kubernetes.io/name` of member pods.
pub const APP_NAME: &str = "beacon-node";
/// `app.kubernetes.io/managed-by`: also the server-side apply field manager.
pub const MANAGER: &str = "beacon-operator";

/// Selects every member pod of a network.
pub fn network_selector(network: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME.to_owned(), APP_NAME.to_owned()),
        (NETWORK.to_owned(), network.to_owned()),
    ])
}

/// Selects one member's pod.
pub fn member_selector(network: &str, member: &str) -> BTreeMap<String, String> {
    let mut labels = network_selector(network);
    labels.insert(MEMBER.to_owned(), member.to_owned());
    labels
}

/// The full label set of a member's objects and pod.
pub fn member_labels(network: &str, member: &str) -> BTreeMap<String, String> {
    let mut labels = member_selector(network, member);
    labels.extend(common(network));
    labels.insert(COMPONENT.to_owned(), "member".to_owned());
    labels
}

/// The labels of network-wide objects (the PodDisruptionBudget).
pub fn network_labels(network: &str) -> BTreeMap<String, String> {
    let mut labels = network_selector(network);
    labels.extend(common(network));
    labels
}

fn common(network: &str) -> [(String, String); 3] {
    [
        (INSTANCE.to_owned(), network.to_owned()),
        (PART_OF.to_owned(), "beacon-network".to_owned()),
        (MANAGED_BY.to_owned(), MANAGER.to_owned()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_subsets_of_the_labels_and_tell_members_apart() {
        let labels = member_labels("n", "a");
        for (k, v) in member_selector("n", "a") {
            assert_eq!(labels.get(&k), Some(&v), "{k}");
        }
        for (k, v) in network_selector("n") {
            assert_eq!(labels.get(&k), Some(&v), "{k}");
        }
        assert_ne!(member_selector("n", "a"), member_selector("n", "b"));
        assert_ne!(network_selector("n"), network_selector("m"));
        assert_eq!(labels.get(MANAGED_BY).map(String::as_str), Some(MANAGER));
    }
}
