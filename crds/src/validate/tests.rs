//! Each check on its own: a valid fixture, one change, the error that names the field.

use serde_json::json;

use super::*;
use crate::ceremony::BeaconCeremony;
use crate::network::{ExternalMember, Member};

fn network() -> BeaconNetwork {
    serde_json::from_value(json!({
        "apiVersion": "beacons.dev/v1alpha1",
        "kind": "BeaconNetwork",
        "metadata": { "name": "quicknet", "namespace": "beacons" },
        "spec": {
            "threshold": 3,
            "image": "beacon-node:1",
            "members": [ { "name": "a" }, { "name": "b" }, { "name": "c" }, { "name": "d" } ],
            "tls": { "issuerRef": { "name": "ca" } },
        }
    }))
    .expect("fixture parses")
}

fn errors(n: &BeaconNetwork) -> Vec<NetworkError> {
    match validate_network(n) {
        Ok(()) => Vec::new(),
        Err(Invalid(e)) => e,
    }
}

/// Exactly one error, and its text names `field`.
fn one_error(n: &BeaconNetwork, field: &str) -> NetworkError {
    let errors = errors(n);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let text = errors[0].to_string();
    assert!(text.contains(field), "{text:?} should name {field}");
    errors.into_iter().next().expect("one")
}

fn external(name: &str, key_hex_digits: usize) -> Member {
    Member {
        name: name.into(),
        external: Some(ExternalMember {
            address: format!("{name}.example.org:4444"),
            public_key: "a".repeat(key_hex_digits),
        }),
        image: None,
        resources: None,
    }
}

#[test]
fn the_fixture_and_its_defaults_are_valid() {
    let n = network();
    assert_eq!(errors(&n), []);
    // serde defaults are what the schema's defaults say.
    assert_eq!(n.spec.beacon_id, "default");
    assert_eq!(n.spec.period.as_str(), "3s");
    assert_eq!(n.spec.catchup_period.as_str(), "0s");
    assert_eq!(n.spec.upgrade.min_healthy_margin, 1);
    assert_eq!(n.spec.storage.size.0, "10Gi");
}

#[test]
fn threshold_must_be_a_majority_and_at_most_the_members() {
    let mut n = network();
    n.spec.threshold = 5;
    let e = errors(&n);
    assert!(e.contains(&NetworkError::ThresholdAboveMembers {
        threshold: 5,
        members: 4
    }));
    assert!(e[0].to_string().starts_with("spec.threshold 5"), "{e:?}");

    n.spec.threshold = 2;
    let e = one_error(&n, "spec.threshold");
    assert_eq!(
        e,
        NetworkError::ThresholdBelowMajority {
            threshold: 2,
            members: 4,
            minimum: 3
        }
    );
    assert!(e.to_string().contains("at least 3"), "{e}");

    // floor(n/2)+1 at the edges: 1 of 1, 2 of 3, 3 of 5.
    for (members, minimum) in [(1usize, 1u32), (3, 2), (5, 3)] {
        let mut n = network();
        n.spec.members = (0..members)
            .map(|i| Member {
                name: format!("m{i}"),
                external: None,
                image: None,
                resources: None,
            })
            .collect();
        n.spec.upgrade.min_healthy_margin = 0;
        n.spec.threshold = minimum;
        assert_eq!(errors(&n), [], "{minimum} of {members}");
        n.spec.threshold = minimum - 1;
        assert!(!errors(&n).is_empty(), "{} of {members}", minimum - 1);
    }
}

#[test]
fn duplicate_member_names_name_both_entries() {
    let mut n = network();
    n.spec.members[3].name = "b".into();
    let e = one_error(&n, "spec.members[3].name");
    assert_eq!(
        e,
        NetworkError::DuplicateMember {
            index: 3,
            first: 1,
            name: "b".into()
        }
    );
    assert!(e.to_string().contains("spec.members[1]"), "{e}");
}

#[test]
fn member_and_network_names_must_make_valid_object_names() {
    let mut n = network();
    n.spec.members[0].name = "Alice".into();
    one_error(&n, "spec.members[0].name");
    n.spec.members[0].name = "1a".into();
    one_error(&n, "spec.members[0].name");
    n.spec.members[0].name = "a-".into();
    one_error(&n, "spec.members[0].name");

    let mut n = network();
    n.spec.members[0].name = "m".repeat(43); // quicknet- (9) + 43 = 52: fits
    assert_eq!(errors(&n), []);
    n.spec.members[0].name = "m".repeat(44);
    let e = one_error(&n, "spec.members[0].name");
    assert!(e.to_string().contains("53 characters"), "{e}");

    let mut n = network();
    n.metadata.name = Some("1net".into());
    one_error(&n, "metadata.name");
    n.metadata.name = None;
    assert_eq!(errors(&n), [NetworkError::NoName]);
}

#[test]
fn external_members_take_no_overrides_and_need_a_key_of_the_scheme() {
    let mut n = network();
    // Default scheme (quicknet): G2 keys, 96 bytes.
    n.spec.members[3] = external("d", 192);
    assert_eq!(errors(&n), []);
    n.spec.members[3] = external("d", 96);
    let e = one_error(&n, "spec.members[3].external.publicKey");
    assert!(e.to_string().contains("192 hex digits"), "{e}");

    n.spec.scheme = Scheme::PedersenBlsChained;
    assert_eq!(errors(&n), [], "48-byte G1 keys for the pedersen schemes");
    n.spec.members[3]
        .external
        .as_mut()
        .expect("external")
        .public_key = "zz".repeat(48);
    one_error(&n, "not hexadecimal");

    let mut n = network();
    n.spec.members[3] = external("d", 192);
    n.spec.members[3].image = Some("other".into());
    let e = one_error(&n, "spec.members[3]");
    assert!(e.to_string().contains("remove image"), "{e}");
}

#[test]
fn external_addresses_must_be_host_and_port() {
    let mut n = network();
    for (address, ok) in [
        ("node.example.org:4444", true),
        ("10.1.2.3:443", true),
        ("[2001:db8::1]:4444", true),
        ("node.example.org", false),
        ("node.example.org:0", false),
        ("node.example.org:65536", false),
        (":4444", false),
        ("-bad.example:4444", false),
        ("[2001:db8::1:4444", false),
        ("[not-ip]:4444", false),
    ] {
        n.spec.members[3] = external("d", 192);
        n.spec.members[3]
            .external
            .as_mut()
            .expect("external")
            .address = address.into();
        let e = errors(&n);
        assert_eq!(e.is_empty(), ok, "{address}: {e:?}");
        if !ok {
            assert!(e[0]
                .to_string()
                .contains("spec.members[3].external.address"));
        }
    }
}

#[test]
fn durations_parse_and_relate() {
    let mut n = network();
    n.spec.period = "30".into();
    let e = one_error(&n, "spec.period");
    assert!(matches!(
        e,
        NetworkError::Duration {
            field: "period",
            ..
        }
    ));

    n.spec.period = "0s".into();
    assert_eq!(errors(&n), [NetworkError::PeriodZero]);

    let mut n = network();
    n.spec.catchup_period = "3s".into();
    one_error(&n, "spec.catchupPeriod");
    n.spec.catchup_period = "2s".into();
    assert_eq!(errors(&n), []);

    n.spec.upgrade.progress_deadline = "0s".into();
    one_error(&n, "spec.upgrade.progressDeadline");

    let mut n = network();
    n.spec.upgrade.member_delay = "1.5s".into();
    one_error(&n, "spec.upgrade.memberDelay");
    n.spec.upgrade.member_delay = "30s".into();
    assert_eq!(errors(&n), []);
}

#[test]
fn the_progress_deadline_must_outlast_a_soak() {
    // 10 rounds of 1m: a 10m deadline would end with the soak, so every change would halt.
    let mut n = network();
    n.spec.period = "1m".into();
    let e = one_error(&n, "spec.upgrade.progressDeadline");
    assert_eq!(
        e,
        NetworkError::DeadlineShorterThanSoak {
            deadline: "10m".into(),
            soak_rounds: 10,
            period: "1m".into(),
            soak_seconds: 600,
        }
    );
    assert!(
        e.to_string()
            .contains("raise progressDeadline or lower soakRounds"),
        "{e}"
    );
    n.spec.upgrade.progress_deadline = "11m".into();
    assert_eq!(errors(&n), []);
    n.spec.upgrade.progress_deadline = "10m".into();
    n.spec.upgrade.soak_rounds = 9;
    assert_eq!(errors(&n), []);
}

#[test]
fn margin_must_leave_room_above_the_threshold() {
    let mut n = network();
    n.spec.upgrade.min_healthy_margin = 2; // 3 + 2 > 4
    let e = one_error(&n, "spec.upgrade.minHealthyMargin");
    assert!(
        e.to_string().contains("lower the margin or add members"),
        "{e}"
    );
}

#[test]
fn storage_image_and_issuer_are_checked() {
    let mut n = network();
    for (size, ok) in [
        ("10Gi", true),
        ("500Mi", true),
        ("1.5Gi", true),
        ("1000", true),
        ("0Gi", false),
        ("Gi", false),
        ("10GB", false),
        ("-1Gi", false),
        ("1.Gi", false),
    ] {
        n.spec.storage.size.0 = size.into();
        assert_eq!(errors(&n).is_empty(), ok, "{size}");
    }
    let mut n = network();
    n.spec.image = Some(" ".into());
    one_error(&n, "spec.image");
    let mut n = network();
    n.spec.tls.issuer_ref.name = String::new();
    one_error(&n, "spec.tls.issuerRef.name");
    let mut n = network();
    n.spec.beacon_id = "Bad Id".into();
    one_error(&n, "spec.beaconId");
}

#[test]
fn all_problems_are_reported_together() {
    let mut n = network();
    n.spec.threshold = 9;
    n.spec.image = Some(String::new());
    n.spec.members[1].name = "a".into();
    let e = validate_network(&n).expect_err("invalid");
    assert_eq!(e.0.len(), 4, "{e}"); // threshold above, margin, image, duplicate
    let text = e.to_string();
    for field in ["spec.threshold", "spec.image", "spec.members[1].name"] {
        assert!(text.contains(field), "{text}");
    }
}

fn ceremony(kind: &str, threshold: u32, joining: &[&str], remaining: &[&str]) -> BeaconCeremony {
    serde_json::from_value(json!({
        "apiVersion": "beacons.dev/v1alpha1",
        "kind": "BeaconCeremony",
        "metadata": { "name": "c1", "namespace": "beacons" },
        "spec": {
            "network": "quicknet",
            "kind": kind,
            "threshold": threshold,
            "joining": joining,
            "remaining": remaining,
        }
    }))
    .expect("fixture parses")
}

fn ceremony_errors(c: &BeaconCeremony, n: Option<&BeaconNetwork>) -> Vec<CeremonyError> {
    let result = match n {
        Some(n) => validate_ceremony_for(c, n),
        None => validate_ceremony(c),
    };
    result.err().map(|e| e.0).unwrap_or_default()
}

#[test]
fn initial_ceremony_includes_every_member_and_no_previous_group() {
    let n = network();
    let good = ceremony("Initial", 3, &["a", "b", "c", "d"], &[]);
    assert_eq!(ceremony_errors(&good, Some(&n)), []);
    assert_eq!(good.spec.window.as_str(), "24h");
    assert_eq!(good.spec.genesis_delay_or_default().as_str(), "2m");

    let partial = ceremony("Initial", 2, &["a", "b", "c"], &[]);
    let e = ceremony_errors(&partial, Some(&n));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].to_string().contains("missing: d"), "{}", e[0]);
    assert_eq!(
        ceremony_errors(&partial, None),
        [],
        "only the network shows it"
    );

    let with_remaining = ceremony("Initial", 3, &["a", "b", "c"], &["d"]);
    let e = ceremony_errors(&with_remaining, None);
    assert_eq!(
        e,
        [CeremonyError::InitialWithPreviousGroup { list: "remaining" }]
    );
}

#[test]
fn reshare_needs_remainers_and_a_majority_of_the_new_group() {
    let n = network();
    let good = ceremony("Reshare", 3, &["d"], &["a", "b", "c"]);
    assert_eq!(ceremony_errors(&good, Some(&n)), []);

    let none_remain = ceremony("Reshare", 1, &["d"], &[]);
    assert_eq!(
        ceremony_errors(&none_remain, None),
        [CeremonyError::ReshareWithoutRemainers]
    );

    let low = ceremony("Reshare", 2, &["d"], &["a", "b", "c"]);
    let e = ceremony_errors(&low, None);
    assert_eq!(
        e,
        [CeremonyError::ThresholdBelowMajority {
            threshold: 2,
            group: 4,
            minimum: 3
        }]
    );
    let high = ceremony("Reshare", 5, &["d"], &["a", "b", "c"]);
    assert_eq!(
        ceremony_errors(&high, None),
        [CeremonyError::ThresholdAboveGroup {
            threshold: 5,
            group: 4
        }]
    );

    let mut delayed = good.clone();
    delayed.spec.genesis_delay = Some("1m".into());
    assert_eq!(
        ceremony_errors(&delayed, None),
        [CeremonyError::GenesisDelayOnReshare]
    );
}

#[test]
fn ceremony_names_are_members_and_in_one_list_only() {
    let n = network();
    let unknown = ceremony("Reshare", 3, &["zed"], &["a", "b", "c"]);
    let e = ceremony_errors(&unknown, Some(&n));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].to_string().starts_with("spec.joining[0] \"zed\""),
        "{}",
        e[0]
    );

    let twice = ceremony("Reshare", 3, &["a"], &["a", "b", "c"]);
    let e = ceremony_errors(&twice, None);
    assert!(
        e.iter().any(|e| matches!(
            e,
            CeremonyError::InTwoLists {
                list: "remaining",
                other: "joining",
                ..
            }
        )),
        "{e:?}"
    );

    let mut leaving = ceremony("Reshare", 2, &[], &["a", "b", "c"]);
    leaving.spec.leaving = vec!["c".into()];
    let e = ceremony_errors(&leaving, None);
    assert!(
        e.iter().any(|e| matches!(
            e,
            CeremonyError::InTwoLists {
                list: "leaving",
                ..
            }
        )),
        "{e:?}"
    );

    let mut other = unknown.clone();
    other.spec.joining = vec!["d".into()];
    other.spec.network = "mainnet".into();
    let e = ceremony_errors(&other, Some(&n));
    assert!(
        matches!(e[..], [CeremonyError::WrongNetwork { .. }]),
        "{e:?}"
    );
}

#[test]
fn ceremony_durations_must_be_positive() {
    let mut c = ceremony("Initial", 3, &["a", "b", "c", "d"], &[]);
    c.spec.window = "0s".into();
    c.spec.genesis_delay = Some("0s".into());
    assert_eq!(
        ceremony_errors(&c, None),
        [CeremonyError::WindowZero, CeremonyError::GenesisDelayZero]
    );
    c.spec.window = "1d".into();
    c.spec.genesis_delay = None;
    let e = ceremony_errors(&c, None);
    assert!(e[0].to_string().starts_with("spec.window \"1d\""), "{e:?}");
}
