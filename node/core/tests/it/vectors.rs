//! Real drand beacons (League of Entropy networks) verified by the library.

use beacon_core::chain::{BeaconFault, ChainInfo, InfoError, PublishedBeacon, VerifyFailure};
use beacon_core::crypto::Scheme;
use rand::rngs::OsRng;
use serde_json::Value;

const VECTORS: &str = include_str!("../vectors/drand-beacons.json");

const QUICKNET_V2: &str = r#"{"public_key":"83cf0f2896adee7eb8b5f01fcad3912212c437e0073e911fb90022d3e760183c8c4b450b6a0a6c3ac6a5776a2d1064510d1fec758c921cc22b0e17e63aaf4bcb5ed66304de9cf809bd274ca73bab4af5a6e9c76a4bc09e76eae8991ef5ece45a","period":3,"genesis_time":1692803367,"genesis_seed":"f477d5c89f21a17c863a7f937c6a6d15859414d2be09cd448d4279af331c5d3e","chain_hash":"52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971","scheme":"bls-unchained-g1-rfc9380","beacon_id":"quicknet"}"#;
const QUICKNET_V1: &str = r#"{"public_key":"83cf0f2896adee7eb8b5f01fcad3912212c437e0073e911fb90022d3e760183c8c4b450b6a0a6c3ac6a5776a2d1064510d1fec758c921cc22b0e17e63aaf4bcb5ed66304de9cf809bd274ca73bab4af5a6e9c76a4bc09e76eae8991ef5ece45a","period":3,"genesis_time":1692803367,"hash":"52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971","groupHash":"f477d5c89f21a17c863a7f937c6a6d15859414d2be09cd448d4279af331c5d3e","schemeID":"bls-unchained-g1-rfc9380","metadata":{"beaconID":"quicknet"}}"#;

fn networks() -> Vec<(String, ChainInfo, Vec<PublishedBeacon>)> {
    let all: Value = serde_json::from_str(VECTORS).expect("vectors are JSON");
    all.as_object()
        .expect("vectors are an object")
        .iter()
        .map(|(name, net)| {
            let info =
                ChainInfo::from_value(&net["info"]).unwrap_or_else(|e| panic!("{name}: info: {e}"));
            let beacons = net["beacons"]
                .as_array()
                .expect("beacons")
                .iter()
                .map(|b| PublishedBeacon::from_value(b).expect("beacon parses"))
                .collect();
            (name.clone(), info, beacons)
        })
        .collect()
}

#[test]
fn every_network_and_scheme_is_covered() {
    let schemes: Vec<Scheme> = networks().iter().map(|(_, i, _)| i.scheme).collect();
    for s in Scheme::ALL {
        assert!(schemes.contains(&s), "no vector for {s}");
    }
}

#[test]
fn real_beacons_verify_one_by_one_and_in_batch() {
    for (name, info, beacons) in networks() {
        for b in &beacons {
            info.verify_beacon(b)
                .unwrap_or_else(|e| panic!("{name} round {}: {e}", b.beacon.round));
        }
        assert!(
            info.verify_beacons(&beacons, &mut OsRng).is_empty(),
            "{name}"
        );
    }
}

#[test]
fn next_round_flipped_bit_and_wrong_randomness_fail() {
    for (name, info, beacons) in networks() {
        for b in &beacons {
            let mut next = b.clone();
            next.beacon.round += 1;
            next.randomness = None;
            assert_eq!(
                info.verify_beacon(&next),
                Err(VerifyFailure::Fault(BeaconFault::BadSignature)),
                "{name} round {} + 1",
                b.beacon.round
            );
            // Every bit of the signature: each flip either breaks the encoding or the signature.
            for bit in (0..b.beacon.signature.len() * 8).step_by(37) {
                let mut flipped = b.clone();
                flipped.randomness = None;
                flipped.beacon.signature[bit / 8] ^= 1 << (bit % 8);
                assert!(info.verify_beacon(&flipped).is_err(), "{name} bit {bit}");
            }
            let mut wrong = b.clone();
            let mut r = wrong.beacon.randomness();
            r[0] ^= 0x80;
            wrong.randomness = Some(r.to_vec());
            assert!(matches!(
                info.verify_beacon(&wrong),
                Err(VerifyFailure::Fault(BeaconFault::RandomnessMismatch { .. }))
            ));
        }
    }
}

#[test]
fn batch_names_the_bad_beacon() {
    let (_, info, beacons) = networks()
        .into_iter()
        .find(|(n, _, _)| n == "mainnet-quicknet")
        .expect("quicknet vectors");
    let mut list = beacons.clone();
    let mut bad = beacons[0].clone();
    bad.beacon.round = 77;
    bad.randomness = None;
    list.insert(1, bad);
    let failures = info.verify_beacons(&list, &mut OsRng);
    assert_eq!(
        failures,
        vec![(1, VerifyFailure::Fault(BeaconFault::BadSignature))]
    );
}

#[test]
fn chained_beacon_without_previous_signature_fails() {
    let (_, info, beacons) = networks()
        .into_iter()
        .find(|(n, _, _)| n == "mainnet-default")
        .expect("mainnet vectors");
    let mut b = beacons[1].clone();
    b.beacon.previous_signature.clear();
    assert_eq!(
        info.verify_beacon(&b),
        Err(VerifyFailure::Fault(BeaconFault::MissingPreviousSignature))
    );
}

#[test]
fn chain_hashes_match_drand() {
    let expected = [
        (
            "mainnet-default",
            "8990e7a9aaed2ffed73dbd7092123d6f289930540d7651336225dc172e51b2ce",
        ),
        (
            "mainnet-quicknet",
            "52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971",
        ),
        (
            "mainnet-fastnet",
            "dbd506d6ef76e5f386f41c651dcb808c5bcbd75471cc4eafa3f4df7ad4e4c493",
        ),
        (
            "testnet-unchained-3s",
            "7672797f548f3f4748ac4bf3352fc6c6b6468c9ad40ad456a397545c6e2df5bf",
        ),
    ];
    let nets = networks();
    for (name, hash) in expected {
        let (_, info, _) = nets.iter().find(|(n, _, _)| n == name).expect(name);
        assert_eq!(info.hash_hex(), hash, "{name}");
        // Both shapes re-parse to the same info.
        assert_eq!(&ChainInfo::from_json(&info.to_json_v1()).unwrap(), info);
        assert_eq!(&ChainInfo::from_json(&info.to_json_v2()).unwrap(), info);
    }
}

#[test]
fn both_json_shapes_parse_to_the_same_info() {
    let a = ChainInfo::from_json(QUICKNET_V2).unwrap();
    let b = ChainInfo::from_json(QUICKNET_V1).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.to_json_v2(), QUICKNET_V2);
    assert_eq!(a.beacon_id, "quicknet");
    assert_eq!(a.time_of_round(1000), 1692806364);
}

#[test]
fn a_chain_hash_that_does_not_match_is_refused() {
    let tampered = QUICKNET_V2.replace("\"period\":3", "\"period\":4");
    match ChainInfo::from_json(&tampered) {
        Err(InfoError::ChainHashMismatch { field, .. }) => assert_eq!(field, "chain_hash"),
        other => panic!("expected a chain hash mismatch, got {other:?}"),
    }
    let tampered = QUICKNET_V1.replace("52db9ba7", "52db9ba8");
    assert!(matches!(
        ChainInfo::from_json(&tampered),
        Err(InfoError::ChainHashMismatch { field: "hash", .. })
    ));
}

#[test]
fn malformed_info_names_the_field() {
    let cases = [
        (
            QUICKNET_V2.replace("\"public_key\":\"83", "\"public_key\":\"zz"),
            "public_key",
        ),
        (
            QUICKNET_V2.replace(
                "\"scheme\":\"bls-unchained-g1-rfc9380\"",
                "\"scheme\":\"bls-on-g3\"",
            ),
            "scheme",
        ),
        (
            QUICKNET_V2.replace("\"period\":3", "\"period\":\"3\""),
            "period",
        ),
        (
            QUICKNET_V2.replace("\"public_key\":\"83cf", "\"public_key\":\"0083cf"),
            "public_key",
        ),
    ];
    for (json, field) in cases {
        let err = ChainInfo::from_json(&json).expect_err(field).to_string();
        assert!(err.contains(field), "{err} should name {field}");
    }
    // A G2 key given to a G2-signature scheme is the wrong length for G1.
    let wrong = QUICKNET_V2.replace("bls-unchained-g1-rfc9380", "pedersen-bls-chained");
    let err = ChainInfo::from_json(&wrong).unwrap_err().to_string();
    assert!(
        err.contains("public_key") && err.contains("48 bytes"),
        "{err}"
    );
}
