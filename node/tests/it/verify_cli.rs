//! `beacon-node beacon verify` on the League of Entropy's real beacons, and on broken input.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

const VECTORS: &str = include_str!("../../core/tests/vectors/drand-beacons.json");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn verify(info: &Path, beacons: &Path) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_beacon-node"))
        .args(["beacon", "verify", "--info"])
        .arg(info)
        .arg(beacons)
        .output()
        .expect("run beacon-node");
    let run = Run {
        code: out.status.code().expect("exited, not killed by a signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    run
}

struct Net {
    dir: tempfile::TempDir,
    info: Value,
    beacons: Vec<Value>,
}

impl Net {
    fn write(&self, name: &str, v: &Value) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, serde_json::to_vec_pretty(v).expect("json")).expect("write");
        p
    }
    fn info_path(&self) -> PathBuf {
        self.write("info.json", &self.info)
    }
}

fn networks() -> Vec<(String, Net)> {
    let all: Value = serde_json::from_str(VECTORS).expect("vectors");
    all.as_object()
        .expect("object")
        .iter()
        .map(|(name, v)| {
            (
                name.clone(),
                Net {
                    dir: tempfile::tempdir().expect("tempdir"),
                    info: v["info"].clone(),
                    beacons: v["beacons"].as_array().expect("array").clone(),
                },
            )
        })
        .collect()
}

fn net(name: &str) -> Net {
    networks()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, n)| n)
        .expect(name)
}

#[test]
fn real_beacons_verify_as_array_and_as_single_objects() {
    for (name, net) in networks() {
        let info = net.info_path();
        let run = verify(
            &info,
            &net.write("all.json", &Value::Array(net.beacons.clone())),
        );
        assert_eq!(run.code, 0, "{name}: {}", run.stderr);
        let expected: Vec<String> = net
            .beacons
            .iter()
            .map(|b| format!("round {}: valid", b["round"]))
            .collect();
        assert_eq!(run.stdout.lines().collect::<Vec<_>>(), expected, "{name}");
        for b in &net.beacons {
            let run = verify(&info, &net.write("one.json", b));
            assert_eq!(run.code, 0, "{name}: {}", run.stderr);
            assert_eq!(run.stdout.trim(), format!("round {}: valid", b["round"]));
        }
    }
}

#[test]
fn next_round_fails_with_exit_1_and_names_the_round() {
    for (name, net) in networks() {
        let info = net.info_path();
        for b in &net.beacons {
            let mut next = b.clone();
            let round = b["round"].as_u64().expect("round") + 1;
            next["round"] = json!(round);
            let run = verify(&info, &net.write("next.json", &next));
            assert_eq!(run.code, 1, "{name}: {}", run.stdout);
            assert_eq!(
                run.stdout.trim(),
                format!("round {round}: INVALID: bad signature: it does not verify under the chain's public key")
            );
            assert!(
                run.stderr.contains(&format!("rounds {round}")),
                "{}",
                run.stderr
            );
        }
    }
}

#[test]
fn one_bad_beacon_in_an_array_is_named_and_the_others_pass() {
    let net = net("mainnet-quicknet");
    let mut list = net.beacons.clone();
    let mut wrong = list[0].clone();
    wrong["randomness"] = json!("00".repeat(32));
    list.push(wrong);
    let run = verify(
        &net.info_path(),
        &net.write("list.json", &Value::Array(list)),
    );
    assert_eq!(run.code, 1);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], "round 42: valid");
    assert_eq!(lines[1], "round 123: valid");
    assert!(
        lines[2].starts_with("round 42: INVALID: randomness mismatch"),
        "{}",
        lines[2]
    );
}

#[test]
fn flipped_signature_bit_fails() {
    for (name, net) in networks() {
        let info = net.info_path();
        for b in &net.beacons {
            let sig = hex::decode(b["signature"].as_str().expect("sig")).expect("hex");
            for bit in [0usize, 3, 9, 100, 200, sig.len() * 8 - 1] {
                let mut flipped_sig = sig.clone();
                flipped_sig[bit / 8] ^= 1 << (bit % 8);
                let mut flipped = b.clone();
                flipped["signature"] = json!(hex::encode(&flipped_sig));
                flipped.as_object_mut().expect("obj").remove("randomness");
                let run = verify(&info, &net.write("flip.json", &flipped));
                // Most flips break the point encoding (exit 2, naming the field); a flip that
                // still decodes to a subgroup point is a bad signature (exit 1).
                match run.code {
                    1 => assert!(run.stdout.contains("bad signature"), "{}", run.stdout),
                    2 => assert!(
                        run.stderr.contains("flip.json") && run.stderr.contains("signature"),
                        "{}",
                        run.stderr
                    ),
                    c => panic!("{name} bit {bit}: exit {c}"),
                }
            }
        }
    }
}

#[test]
fn wrong_randomness_fails() {
    let net = net("mainnet-default");
    let mut b = net.beacons[1].clone();
    b["randomness"] = json!("11".repeat(32));
    let run = verify(&net.info_path(), &net.write("b.json", &b));
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .contains("round 72785: INVALID: randomness mismatch"),
        "{}",
        run.stdout
    );
}

#[test]
fn chained_beacon_without_previous_signature_fails() {
    let net = net("mainnet-default");
    let mut b = net.beacons[1].clone();
    b.as_object_mut().expect("obj").remove("previous_signature");
    let run = verify(&net.info_path(), &net.write("b.json", &b));
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("previous signature missing"),
        "{}",
        run.stdout
    );
}

fn assert_bad_input(run: &Run, needles: &[&str]) {
    assert_eq!(run.code, 2, "stdout {} stderr {}", run.stdout, run.stderr);
    for n in needles {
        assert!(
            run.stderr.contains(n),
            "{:?} should contain {n:?}",
            run.stderr
        );
    }
}

#[test]
fn malformed_input_exits_2_naming_file_and_field() {
    let net = net("mainnet-quicknet");
    let info = net.info_path();
    let b = net.beacons[0].clone();

    let mut bad_hex = b.clone();
    bad_hex["signature"] = json!("xyz");
    assert_bad_input(
        &verify(&info, &net.write("hex.json", &bad_hex)),
        &["hex.json", "signature", "not hex"],
    );

    let mut short = b.clone();
    short["signature"] = json!("ab".repeat(96));
    assert_bad_input(
        &verify(&info, &net.write("len.json", &short)),
        &["len.json", "round 42", "signature", "48 bytes, got 96"],
    );

    // 0x80 flag, x = 1: on no curve point / not in the subgroup: either way refused as a point.
    let mut off = b.clone();
    off["signature"] = json!(format!("80{}01", "00".repeat(46)));
    let run = verify(&info, &net.write("off.json", &off));
    assert_bad_input(&run, &["off.json", "signature"]);
    assert!(
        run.stderr.contains("not in the prime-order subgroup")
            || run.stderr.contains("not a G1 point"),
        "{}",
        run.stderr
    );

    let mut identity = b.clone();
    identity["signature"] = json!(format!("c0{}", "00".repeat(47)));
    assert_bad_input(
        &verify(&info, &net.write("id.json", &identity)),
        &["identity"],
    );

    let mut list = net.beacons.clone();
    list[1]["round"] = json!("123");
    assert_bad_input(
        &verify(&info, &net.write("arr.json", &Value::Array(list))),
        &["arr.json", "[1]", "round"],
    );

    let mut unknown = net.info.clone();
    unknown["schemeID"] = json!("bls-on-g3");
    let ip = net.write("unknown.json", &unknown);
    assert_bad_input(
        &verify(&ip, &net.write("b.json", &b)),
        &["unknown.json", "schemeID", "bls-on-g3"],
    );

    let mut tampered = net.info.clone();
    tampered["genesis_time"] = json!(1692803368);
    let ip = net.write("tampered.json", &tampered);
    assert_bad_input(
        &verify(&ip, &net.write("b.json", &b)),
        &["tampered.json", "hash", "chain hash"],
    );

    let missing = net.dir.path().join("nope.json");
    assert_bad_input(
        &verify(&missing, &net.write("b.json", &b)),
        &["cannot read", "nope.json"],
    );

    let garbage = net.dir.path().join("garbage.json");
    std::fs::write(&garbage, b"\xff\xfe{").expect("write");
    assert_bad_input(
        &verify(&info, &garbage),
        &["garbage.json", "not valid JSON"],
    );

    assert_bad_input(
        &verify(&info, &net.write("empty.json", &json!([]))),
        &["no beacons"],
    );
    assert_bad_input(
        &verify(&info, &net.write("num.json", &json!(5))),
        &["beacon object"],
    );
}
