//! The key store and `beacon-node keys`: refuse-to-overwrite, backups, modes, every old format
//! through its migrations, drand's real files, and clear errors on damaged files.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use beacon_core::crypto::identity::{key_hash, verify_self_signature, verify_v1_self_signature};
use beacon_core::crypto::{Scalar, Scheme};
use beacon_node::keys::{load_pair_files, KeyError, KeyStore, CURRENT_FORMAT};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn beacon_node(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_beacon-node"))
        .args(args)
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

fn generate(dir: &Path, extra: &[&str]) -> Run {
    let dir = dir.to_str().expect("utf-8 path");
    let mut args = vec![
        "keys",
        "generate",
        "--dir",
        dir,
        "--scheme",
        "pedersen-bls-chained",
        "--address",
        "127.0.0.1:4444",
    ];
    args.extend_from_slice(extra);
    beacon_node(&args)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read")
}

#[test]
fn generate_then_refuse_a_second_generate() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("node");
    let first = generate(&dir, &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let store = KeyStore::new(&dir);
    let (private, public) = (store.private_path(), store.public_path());
    assert_eq!(mode(&private), 0o600);
    assert_eq!(mode(&public), 0o600);
    assert_eq!(mode(&store.key_dir()), 0o700);
    assert_eq!(mode(&dir), 0o700);
    let (private_bytes, public_bytes) = (read(&private), read(&public));
    let loaded = store.load_pair().expect("load");
    assert_eq!(loaded.format_version, CURRENT_FORMAT);
    assert_eq!(loaded.value.identity().address, "127.0.0.1:4444");
    assert!(first
        .stdout
        .contains(&hex::encode(loaded.value.public_key().to_bytes())));

    let second = generate(&dir, &[]);
    assert_eq!(second.code, 2, "{}", second.stdout);
    assert!(
        second.stderr.contains(&private.display().to_string())
            && second.stderr.contains("--backup-existing"),
        "{}",
        second.stderr
    );
    assert_eq!(read(&private), private_bytes, "node.private changed");
    assert_eq!(read(&public), public_bytes, "node.public changed");
    // Only the two files: no temporary left behind, no backup made.
    let mut names: Vec<String> = std::fs::read_dir(store.key_dir())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["node.private", "node.public"]);

    // drand's file names count as key material too (an operator moving keys from drand).
    let other = tmp.path().join("other");
    std::fs::create_dir_all(other.join("key")).expect("mkdir");
    std::fs::write(
        other.join("key").join("drand_id.private"),
        b"Key = \"00\"\n",
    )
    .expect("write");
    let refused = generate(&other, &[]);
    assert_eq!(refused.code, 2);
    assert!(
        refused.stderr.contains("drand_id.private"),
        "{}",
        refused.stderr
    );
}

#[test]
fn backup_existing_keeps_the_old_pair_readable() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("node");
    assert_eq!(generate(&dir, &[]).code, 0);
    let store = KeyStore::new(&dir);
    let old = store.load_pair().expect("load").value;
    let (private_bytes, public_bytes) = (read(&store.private_path()), read(&store.public_path()));

    let run = generate(&dir, &["--backup-existing"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let backups: Vec<_> = std::fs::read_dir(store.key_dir())
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("backup-"))
        })
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let backup = &backups[0];
    assert!(
        run.stdout.contains(&backup.display().to_string()),
        "says where: {}",
        run.stdout
    );
    assert_eq!(mode(backup), 0o700);
    assert_eq!(read(&backup.join("node.private")), private_bytes);
    assert_eq!(read(&backup.join("node.public")), public_bytes);
    assert_eq!(mode(&backup.join("node.private")), 0o600);
    let from_backup = load_pair_files(&backup.join("node.private"), &backup.join("node.public"))
        .expect("old pair loads from the backup");
    assert_eq!(from_backup.value.public_key(), old.public_key());
    let new = store.load_pair().expect("new pair").value;
    assert_ne!(new.public_key(), old.public_key());

    // A second backup in the same second goes to a new folder, never over the first.
    let run = generate(&dir, &["--backup-existing"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(read(&backup.join("node.public")), public_bytes);
}

#[test]
fn generate_refuses_bad_flags_naming_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_str().expect("utf-8");
    for (scheme, address, flag) in [
        ("bls-unchained-on-g1", "127.0.0.1:1", "--scheme"),
        ("bls-on-g3", "127.0.0.1:1", "--scheme"),
        ("pedersen-bls-chained", "no-port", "--address"),
        ("pedersen-bls-chained", "host:0", "--address"),
        ("pedersen-bls-chained", ":443", "--address"),
    ] {
        let run = beacon_node(&[
            "keys",
            "generate",
            "--dir",
            dir,
            "--scheme",
            scheme,
            "--address",
            address,
        ]);
        assert_eq!(run.code, 2, "{scheme} {address}");
        assert!(run.stderr.contains(flag), "{}", run.stderr);
    }
    assert!(KeyStore::new(tmp.path()).existing_key_material().is_empty());
    // Every signing scheme generates, and `show` reports it.
    for scheme in ["pedersen-bls-unchained", "bls-unchained-g1-rfc9380"] {
        let d = tmp.path().join(scheme);
        let d = d.to_str().expect("utf-8");
        let run = beacon_node(&[
            "keys",
            "generate",
            "--dir",
            d,
            "--scheme",
            scheme,
            "--address",
            "[::1]:4444",
        ]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let show = beacon_node(&["keys", "show", "--dir", d, "--json"]);
        assert_eq!(show.code, 0, "{}", show.stderr);
        let v: serde_json::Value = serde_json::from_str(&show.stdout).expect("json");
        assert_eq!(v["scheme"], scheme);
        assert_eq!(v["address"], "[::1]:4444");
        assert_eq!(v["self_signature_valid"], true);
        assert_eq!(v["private_key_matches"], true);
        assert_eq!(v["format_version"], 2);
    }
}

// drand v2 demo key pair (reference §7.2, a real drand v2 = our format version 1 file).
const DEMO_PRIVATE: &str = r#"Key = "4dee50f69880dce2b793ed2bad9966bc1d333c0ab28f2eff2794753e65202747"
SchemeName = "pedersen-bls-chained"
"#;
const DEMO_PUBLIC: &str = r#"Address = "127.0.0.1:38161"
Key = "ab37151b401ba77a9a5bf002d8381b7a9b45f789dc4c3dc40faf0421b7d409c1496e487626ae45482517fffa3de12741"
Signature = "a28ad77f42e540230a475412f860cdc2ff35a98a8ccd93c01f3e1652fd8dcc4c50def4c81718b007e7876f387e45308017b7bbeb69ef658a851b9328178aed2be06a38197d795d709d5a89f247bc698a051866c293714b718576eaccfd8b069d"
SchemeName = "pedersen-bls-chained"
"#;
const DEMO_KEY: &str = "ab37151b401ba77a9a5bf002d8381b7a9b45f789dc4c3dc40faf0421b7d409c1496e487626ae45482517fffa3de12741";
const DEMO_SIG: &str = "a28ad77f42e540230a475412f860cdc2ff35a98a8ccd93c01f3e1652fd8dcc4c50def4c81718b007e7876f387e45308017b7bbeb69ef658a851b9328178aed2be06a38197d795d709d5a89f247bc698a051866c293714b718576eaccfd8b069d";

fn write_pair(dir: &Path, private: &str, public: &str) -> KeyStore {
    let store = KeyStore::new(dir);
    std::fs::create_dir_all(store.key_dir()).expect("mkdir");
    std::fs::write(store.private_path(), private).expect("write");
    std::fs::write(store.public_path(), public).expect("write");
    store
}

/// A drand v1 key pair (format version 0): no SchemeName, `TLS = true`, and a v1
/// self-signature over blake2b(key) without the scheme prefix.
fn v0_pair() -> (String, String, Vec<u8>) {
    let scheme = Scheme::PedersenBlsChained;
    let secret = Scalar::from(0x1234_5678_9abc_u64);
    let key = scheme.public_key(&secret);
    let v1_sig = scheme.sign(&secret, &key_hash(&key)).expect("sign");
    assert!(verify_v1_self_signature(scheme, &key, &v1_sig));
    assert!(!verify_self_signature(scheme, &key, &v1_sig));
    let private = format!("Key = \"{}\"\n", hex::encode(secret.to_bytes_be()));
    let public = format!(
        "Address = \"drand.example.org:443\"\nKey = \"{}\"\nTLS = true\nSignature = \"{}\"\n",
        hex::encode(key.to_bytes()),
        hex::encode(v1_sig.to_bytes())
    );
    (private, public, v1_sig.to_bytes())
}

#[test]
fn every_older_key_format_loads_through_migrations() {
    let tmp = tempfile::tempdir().expect("tempdir");

    // Version 0: drand v1. Migrated: default scheme, identity re-signed with the v2 message.
    let (private, public, v1_sig) = v0_pair();
    let store = write_pair(&tmp.path().join("v0"), &private, &public);
    let loaded = store.load_pair().expect("v0 loads");
    assert_eq!(loaded.format_version, 0);
    assert!(loaded.migrated());
    let id = loaded.value.identity();
    assert_eq!(id.scheme, Scheme::PedersenBlsChained);
    assert_eq!(id.address, "drand.example.org:443");
    assert!(id.verifies());
    assert_ne!(id.signature.to_bytes(), v1_sig);
    // Loading never writes (key folders are often read-only mounts).
    assert_eq!(read(&store.public_path()), public.as_bytes());
    let show = beacon_node(&[
        "keys",
        "show",
        "--dir",
        tmp.path().join("v0").to_str().expect("utf-8"),
    ]);
    assert_eq!(show.code, 0, "{}{}", show.stdout, show.stderr);
    assert!(
        show.stdout.contains("valid (v1 self-signature)"),
        "{}",
        show.stdout
    );
    assert!(show.stdout.contains("format version: 0"), "{}", show.stdout);

    // Version 1: drand v2, the real demo key: nothing to re-sign, the signature is drand's.
    let store = write_pair(&tmp.path().join("v1"), DEMO_PRIVATE, DEMO_PUBLIC);
    let loaded = store.load_pair().expect("v1 loads");
    assert_eq!(loaded.format_version, 1);
    let id = loaded.value.identity();
    assert_eq!(hex::encode(id.key.to_bytes()), DEMO_KEY);
    assert_eq!(hex::encode(id.signature.to_bytes()), DEMO_SIG);
    assert_eq!(id.address, "127.0.0.1:38161");

    // A drand v1 private file beside a drand v2 public file (the "missing SchemeName after a
    // skipped upgrade" incident): the public file names the scheme.
    let store = write_pair(
        &tmp.path().join("mixed"),
        "Key = \"4dee50f69880dce2b793ed2bad9966bc1d333c0ab28f2eff2794753e65202747\"\n",
        DEMO_PUBLIC,
    );
    let loaded = store.load_pair().expect("mixed loads");
    assert_eq!(loaded.format_version, 0);
    assert_eq!(loaded.value.scheme(), Scheme::PedersenBlsChained);

    // Version 2 (ours) carries FormatVersion and still holds drand's fields.
    let dir = tmp.path().join("v2");
    assert_eq!(generate(&dir, &[]).code, 0);
    let text = std::fs::read_to_string(KeyStore::new(&dir).public_path()).expect("read");
    for field in [
        "Address = ",
        "Key = ",
        "Signature = ",
        "SchemeName = ",
        "FormatVersion = 2",
    ] {
        assert!(text.contains(field), "{text}");
    }
    assert_eq!(
        KeyStore::new(&dir).load_pair().expect("v2").format_version,
        2
    );

    // A version from the future is refused, naming the file.
    let store = write_pair(
        &tmp.path().join("v3"),
        DEMO_PRIVATE,
        &format!("{DEMO_PUBLIC}FormatVersion = 3\n"),
    );
    let err = store.load_pair().expect_err("v3");
    assert!(matches!(err, KeyError::TooNew { found: 3, .. }), "{err}");
    assert!(err.to_string().contains("node.public"), "{err}");
}

fn expect_field_error(store: &KeyStore, file: &str, field: &str) -> String {
    let err = store.load_pair().expect_err("damaged file must not load");
    let msg = err.to_string();
    assert!(
        msg.contains(file) && msg.contains(&format!("`{field}`")),
        "expected {file} and `{field}` in: {msg}"
    );
    msg
}

#[test]
fn corrupted_key_files_name_the_file_and_field() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let case = |name: &str, private: &str, public: &str| {
        write_pair(&tmp.path().join(name), private, public)
    };
    let msg = expect_field_error(
        &case(
            "nothex",
            &DEMO_PRIVATE.replace("4dee50f6", "zzee50f6"),
            DEMO_PUBLIC,
        ),
        "node.private",
        "Key",
    );
    assert!(msg.contains("not hex"), "{msg}");
    let msg = expect_field_error(
        &case("short", &DEMO_PRIVATE.replace("4dee50f6", ""), DEMO_PUBLIC),
        "node.private",
        "Key",
    );
    assert!(msg.contains("32 bytes"), "{msg}");
    // One byte of the public key changed: not a point, or not this secret's point.
    let damaged = DEMO_PUBLIC.replace("ab37151b", "ab37151c");
    let err = case("pubkey", DEMO_PRIVATE, &damaged)
        .load_pair()
        .expect_err("damaged key");
    let msg = err.to_string();
    assert!(msg.contains("node.public"), "{msg}");
    // One byte of the signature changed.
    expect_field_error(
        &case(
            "sig",
            DEMO_PRIVATE,
            &DEMO_PUBLIC.replace("a28ad77f", "a28ad77e"),
        ),
        "node.public",
        "Signature",
    );
    expect_field_error(
        &case(
            "scheme",
            DEMO_PRIVATE,
            &DEMO_PUBLIC.replace(
                "SchemeName = \"pedersen-bls-chained\"",
                "SchemeName = \"bls-on-g3\"",
            ),
        ),
        "node.public",
        "SchemeName",
    );
    // A v1-era signature that was altered does not migrate.
    let (private, public, v1_sig) = v0_pair();
    let mut bad = v1_sig.clone();
    bad[50] ^= 1;
    let altered = public.replace(&hex::encode(&v1_sig), &hex::encode(&bad));
    let err = case("v0sig", &private, &altered)
        .load_pair()
        .expect_err("altered");
    assert!(err.to_string().contains("node.public"), "{err}");
    // The private key of another pair.
    let (other_private, _, _) = v0_pair();
    let err = case("mismatch", &other_private, DEMO_PUBLIC)
        .load_pair()
        .expect_err("mismatch");
    assert!(matches!(err, KeyError::Mismatch { .. }), "{err}");
    assert!(err.to_string().contains("node.private") && err.to_string().contains("node.public"));
    // Not TOML at all.
    let err = case("toml", "Key = \n", DEMO_PUBLIC)
        .load_pair()
        .expect_err("toml");
    assert!(
        err.to_string().contains("node.private") && err.to_string().contains("TOML"),
        "{err}"
    );
    // Missing files say how to make them.
    let err = KeyStore::new(tmp.path().join("none"))
        .load_pair()
        .expect_err("missing");
    assert!(err.to_string().contains("keys generate"), "{err}");
    // `keys show` on a damaged file exits 2 naming file and field.
    let show = beacon_node(&[
        "keys",
        "show",
        "--dir",
        tmp.path().join("nothex").to_str().expect("utf-8"),
    ]);
    assert_eq!(show.code, 2);
    assert!(
        show.stderr.contains("node.private") && show.stderr.contains("`Key`"),
        "{}",
        show.stderr
    );
    // `keys show` reports (exit 1) a well-formed signature that does not verify: here
    // another member's self-signature (demo group member 0).
    let other_sig = "8b48047c4e9e87af9c6955ae4dcddbc6b2356b24c2e2a6f7ab0b6a4058dfa18c82d3e8e95abe027ac8ab156fb29636bd173462aaabd83d5977c56313e9c42d3f99470f289f6ff92eed8a45915defa16c27fbb138ee656955f20a591bc4066701";
    let store = case(
        "othersig",
        DEMO_PRIVATE,
        &DEMO_PUBLIC.replace(DEMO_SIG, other_sig),
    );
    let msg = expect_field_error(&store, "node.public", "Signature");
    assert!(msg.contains("does not verify"), "{msg}");
    let show = beacon_node(&[
        "keys",
        "show",
        "--dir",
        tmp.path().join("othersig").to_str().expect("utf-8"),
    ]);
    assert_eq!(show.code, 1, "{}{}", show.stdout, show.stderr);
    assert!(show.stdout.contains("DOES NOT VERIFY"), "{}", show.stdout);
}

// The v2 demo group of reference §7.2, all six members (the reference shows the first; the
// source it cites, storswiftlabs/drand-rs src/key/toml.rs, has the full file, generated by
// drand's Go demo). Member 4 is the demo key pair above; dist_key.private is its share.
const DEMO_GROUP: &str = r#"Threshold = 4
Period = "3s"
CatchupPeriod = "1s"
GenesisTime = 1736058215
TransitionTime = 1736058215
GenesisSeed = "023779ea9eac851bf27c35cdff64b8e55774ad8b20752c0258fce264fa70b57c"
SchemeID = "pedersen-bls-chained"
ID = "default"

[[Nodes]]
  Address = "127.0.0.1:36023"
  Key = "8f759c785b9395ca8b3e069da592f50e934c618aa5d0abbd256706f356c8511361243c90f34a22a28374cb2e23e3691b"
  Signature = "8b48047c4e9e87af9c6955ae4dcddbc6b2356b24c2e2a6f7ab0b6a4058dfa18c82d3e8e95abe027ac8ab156fb29636bd173462aaabd83d5977c56313e9c42d3f99470f289f6ff92eed8a45915defa16c27fbb138ee656955f20a591bc4066701"
  SchemeName = "pedersen-bls-chained"
  Index = 0

[[Nodes]]
  Address = "127.0.0.1:44901"
  Key = "9692fb81be90f5754dd6514ddcabccce4d16d20d52ce4d130d94c63268ca744d2e4784cdcdb319824a16ff36d4b26d30"
  Signature = "9222bb2f3ee82d55de320396efb136d43f9876590acc627c679afe69aec189907bf0cd721ba8b415fa373a0eae3d7545020116b134e9238a81f19bca03c04112a198f783e47cd69f4cdd9206f0e09526aea45ab6b1d3483c9bb2a724ec132f49"
  SchemeName = "pedersen-bls-chained"
  Index = 1

[[Nodes]]
  Address = "127.0.0.1:40733"
  Key = "96c69742f60912fcce8e544d0b5bea4bcca556aac4a8b2b39d4e7cfa8b5eebbce54712a657a6a411e8814ac5844234d3"
  Signature = "997fa9dd0d6cf0985d2d23d0bc1d36eba1ff7f41585f6a2395d0574e9aaa79396ccd2ef119f435cb5c59cc5cba4677cd18a47e527e27dfc6202ea752acdb8a68c75c1ed9791e21fc872cd603614c9071059c6db39cd4f08680c3a9a67a3db696"
  SchemeName = "pedersen-bls-chained"
  Index = 2

[[Nodes]]
  Address = "127.0.0.1:34689"
  Key = "aa975e6d8140506f721edfe0df1c602cf7b2385871d35d9164e37ac68bc071ff5e9cf64bacc17d8a3bb8caa85e06e12b"
  Signature = "b9e4f1c9076bcb05acf74e3fdb952e1c48420c3cb14038bbb4eb95876a85118a56096f8a7f2407ebdeb00adb557263070debd3a09c022267436c33f91420736418929bc72fd4037f08e7ba1516e7a6b2a846f4fb34819e54ee7617035782b9d9"
  SchemeName = "pedersen-bls-chained"
  Index = 3

[[Nodes]]
  Address = "127.0.0.1:38161"
  Key = "ab37151b401ba77a9a5bf002d8381b7a9b45f789dc4c3dc40faf0421b7d409c1496e487626ae45482517fffa3de12741"
  Signature = "a28ad77f42e540230a475412f860cdc2ff35a98a8ccd93c01f3e1652fd8dcc4c50def4c81718b007e7876f387e45308017b7bbeb69ef658a851b9328178aed2be06a38197d795d709d5a89f247bc698a051866c293714b718576eaccfd8b069d"
  SchemeName = "pedersen-bls-chained"
  Index = 4

[[Nodes]]
  Address = "127.0.0.1:40743"
  Key = "ad4fab7573351bd57066c487f391c1e52cebbe58d8c69cbc4b5586add6e6315f5b1d935ce412f7406b013c946f00b015"
  Signature = "964c4dd662a469e405e79825d73a1362168f1479aa3e077d23a1602fbecc8a8ee71abefb41d3f7456f65e469557ef62b0e598bd9ad6e12662a97724e2432bf7d5dde064cfbcfd4fbc4285810cdcf5d2f0fc18f482fd6a548cb3519c68c9d6aeb"
  SchemeName = "pedersen-bls-chained"
  Index = 5

[PublicKey]
  Coefficients = ["b86ba00f3eb8bda9cd60723ad45402a01c36329dae25e6cc84800572e3ec1dd6b9efebf0ea7fd46ae7abb7b760076635", "96fce82b8a327b1b986ce23dc18b8b39423512e7bac610672f4f6dff1682944248e21571498ef9c615348bbf9a1ec9a3", "ad1caaff9c1c90d10a33cf89a5497dbcb70de64aed07efe997c912a2d70c024dd4afafc89c374191c27147da5b7ea916", "8d37571eed924b8e4df483914b714bbac9356c50045ab9c7f22f2c42edde46ef163ee69c8d65b235e51c3b4906f2977e"]
"#;

const DEMO_SHARE: &str = r#"Index = 4
Share = "675431249f101cf5001b4dd0dd8f25107a2c547b77b0693309731906b12fca98"
Commits = ["b86ba00f3eb8bda9cd60723ad45402a01c36329dae25e6cc84800572e3ec1dd6b9efebf0ea7fd46ae7abb7b760076635", "96fce82b8a327b1b986ce23dc18b8b39423512e7bac610672f4f6dff1682944248e21571498ef9c615348bbf9a1ec9a3", "ad1caaff9c1c90d10a33cf89a5497dbcb70de64aed07efe997c912a2d70c024dd4afafc89c374191c27147da5b7ea916", "8d37571eed924b8e4df483914b714bbac9356c50045ab9c7f22f2c42edde46ef163ee69c8d65b235e51c3b4906f2977e"]
SchemeName = "pedersen-bls-chained"
"#;

// A drand v1-era group file (format version 0): `TLS = true` and v1 identity signatures
// (drand/drand internal/test/default.toml, the incentinet group of 2022).
const V1_ERA_GROUP: &str = r#"Threshold = 2
Period = "30s"
CatchupPeriod = "2s"
GenesisTime = 1649948280
TransitionTime = 1662041790
GenesisSeed = "4c194718915cb446103b4959d132286176033ef9ab31824ced291ceaf9eb9b59"
SchemeID = "pedersen-bls-chained"
ID = "default"

[[Nodes]]
  Address = "pl2-rpc.incentinet.drand.sh:443"
  Key = "8467b7a234c93e7e54d4e8295605c0ccf59e56606b44c4b21714b215e4f7a240f125c66cc5e5c0a73dc9ca602070f1e4"
  TLS = true
  Signature = "ad1a464fb51a938c2997fada84026715c7fa999869b245d6fa7c68d7b4274f67ee6025bd9e7239375cd31643353a69b90b7a81d18781d298939944adab402046c8bb52164b012156e1487a5226c3aa9448025ac65936446763f5169777537e72"
  Index = 0

[[Nodes]]
  Address = "pl1-rpc.incentinet.drand.sh:443"
  Key = "8a5d883e0b363958c74b7c476e6a3e3c29b54f37caebfaba0c24b84a7ccf3d238e91f5e5a789f0251181d8996ec79d72"
  TLS = true
  Signature = "b4d62c493617999ba34bab9153699a57464b3a68164c84fa2ae95e1ebfe0be3c4e1c04b166d16883d4a72251a4b1bcb207a8f15fb10de1f26927569e221db7deb666feb6b893e38470043344b76660ddd5d44c0f7de21cf12185c6b03e0d0e21"
  Index = 1

[[Nodes]]
  Address = "pl3-rpc.incentinet.drand.sh:443"
  Key = "a5a93fb91b52d4840a265a119b1d7a089f294e596ee9e3b7286530e9846848805fd4aafd413524e3d9ea994b3cf34bf9"
  TLS = true
  Signature = "9604b1efbde1171af8281ee807ac27b9c866a22cba14ba31f53ab3247476f733b57a21f7d130fcab290c8826d56a5e8a07a1fa6936443fbd69dc673a1cf54316b5eb73b490411243c6a5ae0dab3ab2634d4a026b046f715bd46b4a9c7c3b11f7"
  Index = 2

[PublicKey]
  Coefficients = ["88a8227b75dba145599d894d33eebde3b36fef900d456ae2cc4388867adb4769c40359f783750a41b4d17e40f578bfdb", "88300382e9af80b7fb7b78fed9425a108d2fc66f264c3cacace9bea7464d9d9a036410cb546ab1949ab014f893847373"]
"#;

fn write_group(dir: &Path, group: &str, share: Option<&str>) -> KeyStore {
    let store = KeyStore::new(dir);
    std::fs::create_dir_all(store.group_dir()).expect("mkdir");
    std::fs::write(store.group_path(), group).expect("write");
    if let Some(share) = share {
        std::fs::write(store.share_path(), share).expect("write");
    }
    store
}

#[test]
fn drand_demo_group_and_share_load_and_check_out() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = write_group(tmp.path(), DEMO_GROUP, Some(DEMO_SHARE));
    let loaded = store.load_group().expect("demo group");
    assert_eq!(loaded.format_version, 1);
    let group = loaded.value;
    assert_eq!(group.threshold, 4);
    assert_eq!(group.nodes.len(), 6);
    assert_eq!(group.period.as_secs(), 3);
    assert_eq!(group.catchup_period.as_secs(), 1);
    assert!(group.nodes.iter().all(|n| n.signature.is_some()));
    // drand's group hash of the first group is the chain's genesis seed.
    assert_eq!(
        hex::encode(group.hash()),
        "023779ea9eac851bf27c35cdff64b8e55774ad8b20752c0258fce264fa70b57c"
    );
    let info = group.chain_info().expect("chain info");
    assert_eq!(
        hex::encode(info.public_key.to_bytes()),
        "b86ba00f3eb8bda9cd60723ad45402a01c36329dae25e6cc84800572e3ec1dd6b9efebf0ea7fd46ae7abb7b760076635"
    );
    assert_eq!(info.period, 3);
    assert_eq!(info.genesis_time, 1736058215);
    assert_eq!(hex::encode(&info.genesis_seed), hex::encode(group.hash()));
    assert_eq!(info.scheme, Scheme::PedersenBlsChained);
    assert_eq!(info.beacon_id, "default");

    let share = store.load_share(&group).expect("demo share").value;
    assert_eq!(share.index(), 4);
    assert_eq!(share.public_key(), group.public_key());
    // The demo key pair is member 4, the share's index.
    let demo = write_pair(&tmp.path().join("pair"), DEMO_PRIVATE, DEMO_PUBLIC)
        .load_pair()
        .expect("pair")
        .value;
    assert_eq!(
        group.node_with_key(demo.public_key()).map(|n| n.index),
        Some(4)
    );

    // Saved in our format (FormatVersion 2), reloaded identical; modes owner-only.
    let out = KeyStore::new(tmp.path().join("saved"));
    out.save_group(&group).expect("save group");
    out.save_share(&share).expect("save share");
    assert_eq!(mode(&out.group_path()), 0o600);
    assert_eq!(mode(&out.share_path()), 0o600);
    assert_eq!(mode(&out.group_dir()), 0o700);
    let text = std::fs::read_to_string(out.group_path()).expect("read");
    assert!(
        text.contains("Period = \"3s\"") && text.contains("FormatVersion = 2"),
        "{text}"
    );
    let again = out.load_group().expect("reload");
    assert_eq!(again.format_version, 2);
    assert_eq!(again.value, group);
    let share_again = out.load_share(&group).expect("reload share");
    assert_eq!(share_again.format_version, 2);
    assert_eq!(share_again.value, share);
}

#[test]
fn older_group_and_share_formats_migrate() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Version 0: drand v1's group file. Its v1 member signatures verify as such, and are dropped
    // (they prove nothing to v2 peers and are fetched again at the next ceremony).
    let store = write_group(&tmp.path().join("v0"), V1_ERA_GROUP, None);
    let loaded = store.load_group().expect("v1-era group");
    assert_eq!(loaded.format_version, 0);
    let group = loaded.value;
    assert_eq!(group.nodes.len(), 3);
    assert!(group.nodes.iter().all(|n| n.signature.is_none()));
    let info = group.chain_info().expect("chain info");
    assert_eq!(info.period, 30);
    assert_eq!(
        hex::encode(&info.genesis_seed),
        "4c194718915cb446103b4959d132286176033ef9ab31824ced291ceaf9eb9b59"
    );
    // Without SchemeID either (older still): the default scheme.
    let store = write_group(
        &tmp.path().join("v0-noscheme"),
        &V1_ERA_GROUP.replace("SchemeID = \"pedersen-bls-chained\"\n", ""),
        None,
    );
    assert_eq!(
        store.load_group().expect("no SchemeID").value.scheme,
        Scheme::DEFAULT
    );
    // An altered v1 signature is an error naming the member's field.
    let altered = V1_ERA_GROUP.replace("b4d62c49", "b4d62c48");
    let err = write_group(&tmp.path().join("v0-bad"), &altered, None)
        .load_group()
        .expect_err("altered signature");
    assert!(err.to_string().contains("Nodes[1].Signature"), "{err}");

    // Share version 0: no SchemeName; it takes its group's.
    let v0_share = DEMO_SHARE.replace("SchemeName = \"pedersen-bls-chained\"\n", "");
    let store = write_group(&tmp.path().join("share-v0"), DEMO_GROUP, Some(&v0_share));
    let group = store.load_group().expect("group").value;
    let share = store.load_share(&group).expect("v0 share");
    assert_eq!(share.format_version, 0);
    assert_eq!(share.value.scheme, Scheme::PedersenBlsChained);
}

#[test]
fn group_and_share_checks_name_the_field() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cases: [(&str, String, &str); 5] = [
        (
            "threshold",
            DEMO_GROUP.replace("Threshold = 4", "Threshold = 3"),
            "Threshold",
        ),
        (
            "threshold-high",
            DEMO_GROUP.replace("Threshold = 4", "Threshold = 7"),
            "Threshold",
        ),
        ("period", DEMO_GROUP.replace("Period = \"3s\"", "Period = \"1.5s\""), "Period"),
        (
            "coefficient",
            DEMO_GROUP.replace("\"8d37571eed924b8e4df483914b714bbac9356c50045ab9c7f22f2c42edde46ef163ee69c8d65b235e51c3b4906f2977e\"]", "]"),
            "PublicKey.Coefficients",
        ),
        (
            "member-sig",
            DEMO_GROUP.replace("9222bb2f", "9222bb2e"),
            "Nodes[1].Signature",
        ),
    ];
    for (name, text, field) in cases {
        let err = write_group(&tmp.path().join(name), &text, None)
            .load_group()
            .expect_err(name);
        let msg = err.to_string();
        assert!(
            msg.contains("group.toml") && msg.contains(&format!("`{field}`")),
            "{name}: {msg}"
        );
    }
    let store = write_group(&tmp.path().join("ok"), DEMO_GROUP, None);
    let group = store.load_group().expect("group").value;
    for (name, share, field) in [
        ("value", DEMO_SHARE.replace("675431249f", "675431249e"), "Share"),
        ("index", DEMO_SHARE.replace("Index = 4", "Index = 3"), "Share"),
        (
            "commits",
            DEMO_SHARE.replace("\"b86ba00f3eb8bda9cd60723ad45402a01c36329dae25e6cc84800572e3ec1dd6b9efebf0ea7fd46ae7abb7b760076635\", ", ""),
            "Share",
        ),
        ("hex", DEMO_SHARE.replace("675431249f", "67543124zz"), "Share"),
    ] {
        std::fs::write(store.share_path(), share).expect("write");
        let err = store.load_share(&group).expect_err(name);
        let msg = err.to_string();
        assert!(
            msg.contains("share.private") && msg.contains(&format!("`{field}`")),
            "{name}: {msg}"
        );
    }
}
