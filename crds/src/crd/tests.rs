//! The committed CRD YAML matches the types, reads back as the same CRDs, and carries the
//! schema rules the API server is meant to enforce.

use serde_json::Value;

use super::*;
use crate::network::rules as net;

#[test]
fn committed_crds_match_the_types() {
    let dir = chart_crds_dir();
    let expected = rendered().expect("renders");
    for (name, yaml) in &expected {
        let path = dir.join(name);
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read {}: {e}; run `{REGENERATE}` and commit the files",
                path.display()
            )
        });
        assert!(
            committed == *yaml,
            "{} differs from what the types in crds/ generate; run `{REGENERATE}` and commit the result",
            path.display()
        );
    }
    // No stale CRD files of ours beside them.
    let ours: Vec<String> = std::fs::read_dir(&dir)
        .expect("chart crds dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".beacons.dev.yaml"))
        .collect();
    for name in ours {
        assert!(
            expected.iter().any(|(n, _)| *n == name),
            "{name} in {} is not generated any more; delete it (or run `{REGENERATE}`)",
            dir.display()
        );
    }
}

#[test]
fn yaml_reads_back_as_the_same_crds() {
    for crd in all() {
        let yaml = render(&crd).expect("renders");
        let back: CustomResourceDefinition = serde_saphyr::from_str(&yaml).expect("parses");
        assert_eq!(back, crd, "{}", file_name(&crd));
    }
}

fn schema(crd: &CustomResourceDefinition) -> Value {
    let version = &crd.spec.versions[0];
    serde_json::to_value(
        version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("schema"),
    )
    .expect("json")
}

fn rules(v: &Value) -> Vec<&str> {
    v["x-kubernetes-validations"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["rule"].as_str()).collect())
        .unwrap_or_default()
}

#[test]
fn network_schema_has_its_rules_in_place() {
    let crd = crate::BeaconNetwork::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("beaconnetworks.beacons.dev")
    );
    assert_eq!(crd.spec.versions[0].name, "v1alpha1");
    let root = schema(&crd);
    let spec = &root["properties"]["spec"];

    assert!(rules(&root).contains(&net::NAME_LENGTH));
    assert!(rules(&root).contains(&net::NETWORK_NAME));
    for rule in [
        net::THRESHOLD_AT_MOST_MEMBERS,
        net::THRESHOLD_MAJORITY,
        net::MARGIN_FITS,
        net::CATCHUP_BELOW_PERIOD,
        net::EXTERNAL_KEY_LENGTH,
    ] {
        assert!(rules(spec).contains(&rule), "{rule}");
    }
    for field in ["beaconId", "scheme", "period"] {
        assert!(
            rules(&spec["properties"][field]).contains(&net::IMMUTABLE),
            "{field} is immutable"
        );
    }
    let members = &spec["properties"]["members"];
    assert_eq!(members["x-kubernetes-list-type"], "map");
    assert_eq!(
        members["x-kubernetes-list-map-keys"],
        serde_json::json!(["name"])
    );
    assert_eq!(
        members["items"]["properties"]["name"]["pattern"],
        crate::network::MEMBER_NAME_PATTERN
    );
    assert!(rules(&members["items"]).contains(&net::EXTERNAL_NO_OVERRIDES));
    assert_eq!(
        spec["properties"]["scheme"]["enum"],
        serde_json::json!([
            "pedersen-bls-chained",
            "pedersen-bls-unchained",
            "bls-unchained-g1-rfc9380"
        ])
    );
    assert_eq!(
        spec["properties"]["threshold"]["minimum"].as_f64(),
        Some(1.0)
    );
    // Defaults are in the schema, so the API server stores them.
    assert_eq!(spec["properties"]["period"]["default"], "3s");
    assert_eq!(
        spec["properties"]["scheme"]["default"],
        "bls-unchained-g1-rfc9380"
    );
    assert_eq!(
        spec["required"],
        serde_json::json!(["members", "threshold", "tls"])
    );
    let columns: Vec<&str> = crd.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "Scheme",
            "Threshold",
            "Healthy",
            "Round",
            "Lag",
            "Ready",
            "Rollout",
            "Age"
        ]
    );
    assert!(crd.spec.versions[0]
        .subresources
        .as_ref()
        .is_some_and(|s| s.status.is_some()));
}

#[test]
fn ceremony_schema_fixes_its_terms() {
    use crate::ceremony::rules as cer;
    let crd = crate::BeaconCeremony::crd();
    let spec = &schema(&crd)["properties"]["spec"];
    assert!(rules(spec).contains(&cer::TERMS_IMMUTABLE));
    assert!(rules(spec).contains(&cer::DISJOINT));
    assert!(rules(&spec["properties"]["abort"]).contains(&cer::ABORT_STAYS));
    for list in ["joining", "remaining", "leaving"] {
        assert_eq!(
            spec["properties"][list]["x-kubernetes-list-type"], "set",
            "{list}"
        );
    }
    assert_eq!(
        spec["properties"]["kind"]["enum"],
        serde_json::json!(["Initial", "Reshare"])
    );
}
