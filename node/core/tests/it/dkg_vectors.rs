//! The DKG's wire and crypto details against other implementations: drand's Go kyber (Schnorr,
//! ECIES, bundle hashes and signatures, a whole 3-node DKG), and the v2 demo group of the
//! reference (identity self-signatures, group hash, share).

use beacon_core::crypto::{ecies, schnorr, CurveGroup, Point, PubPoly, Scalar, Scheme};
use beacon_core::dkg::group::{Group, GroupNode};
use beacon_core::dkg::{
    Bundle, Deal, DealBundle, Justification, JustificationBundle, Participant, Response,
    ResponseBundle,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::Value;

use crate::dkg_go_vectors::GO_KYBER_VECTORS;

fn vectors() -> Value {
    serde_json::from_str(GO_KYBER_VECTORS).expect("vector JSON")
}

fn hx(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("hex")
}

fn scalar(v: &Value) -> Scalar {
    let b: [u8; 32] = hx(v).try_into().expect("32 bytes");
    Option::<Scalar>::from(Scalar::from_bytes_be(&b)).expect("canonical scalar")
}

fn group_of(name: &str) -> CurveGroup {
    if name == "G1" {
        CurveGroup::G1
    } else {
        CurveGroup::G2
    }
}

#[test]
fn go_schnorr_signatures_verify_and_tampering_fails() {
    let v = vectors();
    for name in ["G1", "G2"] {
        let s = &v[format!("schnorr_{name}")];
        let group = group_of(name);
        let public = Point::decode(group, &hx(&s["public"])).unwrap();
        assert_eq!(Point::generator(group).mul(&scalar(&s["secret"])), public);
        let msg = hx(&s["msg"]);
        let sig = hx(&s["sig"]);
        assert_eq!(sig.len(), schnorr::signature_len(group));
        schnorr::verify(&public, &msg, &sig).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut other = msg.clone();
        other[0] ^= 1;
        assert!(schnorr::verify(&public, &other, &sig).is_err());
    }
}

#[test]
fn go_ecies_ciphertexts_decrypt() {
    let v = vectors();
    for name in ["G1", "G2"] {
        let e = &v[format!("ecies_{name}")];
        let plain = ecies::decrypt(group_of(name), &scalar(&e["secret"]), &hx(&e["ciphertext"]))
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(plain, hx(&e["plaintext"]));
    }
}

fn deal_bundle(v: &Value) -> DealBundle {
    DealBundle {
        dealer_index: v["dealer_index"].as_u64().unwrap() as u32,
        commits: v["commits"].as_array().unwrap().iter().map(hx).collect(),
        deals: v["deals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| Deal {
                share_index: d["share_index"].as_u64().unwrap() as u32,
                encrypted_share: hx(&d["encrypted_share"]),
            })
            .collect(),
        session_id: hx(&v["session_id"]),
        signature: hx(&v["signature"]),
    }
}

/// A fresh DKG run entirely by Go kyber: our bundle hashes equal Go's, Go's Schnorr signatures
/// verify, each holder decrypts its deals and checks them against the dealer's commitments at
/// x = index + 1, and the shares and commitments add up to Go's final result.
#[test]
fn a_go_kyber_dkg_checks_out_bundle_by_bundle() {
    let v = vectors();
    let d = &v["dkg_G1"];
    let g = CurveGroup::G1;
    let secrets: Vec<Scalar> = d["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(scalar)
        .collect();
    let publics: Vec<Point> = secrets.iter().map(|s| Point::generator(g).mul(s)).collect();
    let nonce = hx(&d["nonce"]);
    assert_eq!(nonce, beacon_core::dkg::session_id(1).to_vec());
    let deals: Vec<DealBundle> = d["deals"]
        .as_array()
        .unwrap()
        .iter()
        .map(deal_bundle)
        .collect();
    let mut commits = Vec::new();
    for (dv, b) in d["deals"].as_array().unwrap().iter().zip(&deals) {
        let bundle = Bundle::Deal(b.clone());
        assert_eq!(
            bundle.hash().to_vec(),
            hx(&dv["hash"]),
            "deal hash of dealer {}",
            b.dealer_index
        );
        bundle
            .verify(&publics[b.dealer_index as usize])
            .expect("Go's deal signature");
        let poly = PubPoly::decode(g, &b.commits).unwrap();
        commits.push(poly);
    }
    let final_commits = PubPoly::decode(
        g,
        &d["commits"]
            .as_array()
            .unwrap()
            .iter()
            .map(hx)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let summed = commits[1..]
        .iter()
        .fold(commits[0].clone(), |acc, p| acc.add(p).unwrap());
    assert_eq!(
        summed, final_commits,
        "the group polynomial is the sum of the dealers'"
    );
    let shares: Vec<Scalar> = d["shares"].as_array().unwrap().iter().map(scalar).collect();
    for (holder, sk) in secrets.iter().enumerate() {
        let holder = holder as u32;
        let mut received = Scalar::from(0u64);
        for b in &deals {
            for deal in b.deals.iter().filter(|x| x.share_index == holder) {
                let plain = ecies::decrypt(g, sk, &deal.encrypted_share).expect("our deal");
                let s = scalar(&Value::String(hex::encode(plain)));
                assert_eq!(
                    Point::generator(g).mul(&s),
                    commits[b.dealer_index as usize].eval(holder),
                    "deal of {} for {holder}",
                    b.dealer_index
                );
                received += s;
            }
        }
        // Go keeps each dealer's own share out of its bundle; the rest adds up.
        let own = shares[holder as usize] - received;
        assert_eq!(
            Point::generator(g).mul(&own),
            commits[holder as usize].eval(holder)
        );
        assert_eq!(
            Point::generator(g).mul(&shares[holder as usize]),
            final_commits.eval(holder)
        );
    }
    for rv in d["responses"].as_array().unwrap() {
        let b = Bundle::Response(ResponseBundle {
            share_index: rv["share_index"].as_u64().unwrap() as u32,
            responses: rv["responses"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| Response {
                    dealer_index: r["dealer_index"].as_u64().unwrap() as u32,
                    status: r["status"].as_bool().unwrap(),
                })
                .collect(),
            session_id: hx(&rv["session_id"]),
            signature: hx(&rv["signature"]),
        });
        assert_eq!(b.hash().to_vec(), hx(&rv["hash"]));
        b.verify(&publics[b.index() as usize])
            .expect("Go's response signature");
    }
    let jv = &d["justification"];
    let j = Bundle::Justification(JustificationBundle {
        dealer_index: 0,
        justifications: jv["justifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| Justification {
                share_index: x["share_index"].as_u64().unwrap() as u32,
                share: hx(&x["share"]),
            })
            .collect(),
        session_id: hx(&jv["session_id"]),
        signature: hx(&jv["signature"]),
    });
    assert_eq!(
        j.hash().to_vec(),
        hx(&jv["hash"]),
        "justification hash (sorted by index)"
    );
    j.verify(&publics[0]).expect("Go's justification signature");
}

/// Values made by our code from a fixed seed, pinned here, and checked at development time
/// with Go kyber (`schnorr.Verify`, `ecies.Decrypt`): the pin keeps them from drifting.
#[test]
fn rust_made_signature_and_ciphertext_are_pinned() {
    let mut rng = ChaCha20Rng::seed_from_u64(2024);
    let sk = Scalar::from(0x5eed_u64);
    let public = Point::generator(CurveGroup::G1).mul(&sk);
    let sig = schnorr::sign(CurveGroup::G1, &sk, b"beacon operator", &mut rng);
    let ct = ecies::encrypt(&public, b"0123456789abcdef0123456789abcdef", &mut rng);
    assert_eq!(hex::encode(&sig), PINNED_SCHNORR_G1);
    assert_eq!(hex::encode(&ct), PINNED_ECIES_G1);
    schnorr::verify(&public, b"beacon operator", &sig).unwrap();
}

const PINNED_SCHNORR_G1: &str = "b85e6fa5a1a07bd3d12de1f439308b95cb751ec9ae582826d5c7d6a8348caa9e152fcb3d7f8195f33a7009dca1f7985e26d3285a6fd2e67974d410a6506c92a8a26d34ba0a24e18480f928ef49c7874a";
const PINNED_ECIES_G1: &str = "ac2ff40d3d096de9c1cdb83e0c0be05bb4460311a66577d6bdc6bd399985eb33e609161c802beb86fb2822e0d1cb566d95276c19f94701d5ed0d6051b714a9f9650f02fdc6a11a4d164c11c3c2a3abc1df8c4cf03e21f796fe2d1f15393f6529";

/// The v2 demo group of the reference (§7.2, §9.5; from `storswiftlabs/drand-rs`
/// `src/key/toml.rs`, generated by drand's Go demo).
fn demo_group() -> Group {
    let nodes = [
        ("127.0.0.1:36023", "8f759c785b9395ca8b3e069da592f50e934c618aa5d0abbd256706f356c8511361243c90f34a22a28374cb2e23e3691b", "8b48047c4e9e87af9c6955ae4dcddbc6b2356b24c2e2a6f7ab0b6a4058dfa18c82d3e8e95abe027ac8ab156fb29636bd173462aaabd83d5977c56313e9c42d3f99470f289f6ff92eed8a45915defa16c27fbb138ee656955f20a591bc4066701"),
        ("127.0.0.1:44901", "9692fb81be90f5754dd6514ddcabccce4d16d20d52ce4d130d94c63268ca744d2e4784cdcdb319824a16ff36d4b26d30", "9222bb2f3ee82d55de320396efb136d43f9876590acc627c679afe69aec189907bf0cd721ba8b415fa373a0eae3d7545020116b134e9238a81f19bca03c04112a198f783e47cd69f4cdd9206f0e09526aea45ab6b1d3483c9bb2a724ec132f49"),
        ("127.0.0.1:40733", "96c69742f60912fcce8e544d0b5bea4bcca556aac4a8b2b39d4e7cfa8b5eebbce54712a657a6a411e8814ac5844234d3", "997fa9dd0d6cf0985d2d23d0bc1d36eba1ff7f41585f6a2395d0574e9aaa79396ccd2ef119f435cb5c59cc5cba4677cd18a47e527e27dfc6202ea752acdb8a68c75c1ed9791e21fc872cd603614c9071059c6db39cd4f08680c3a9a67a3db696"),
        ("127.0.0.1:34689", "aa975e6d8140506f721edfe0df1c602cf7b2385871d35d9164e37ac68bc071ff5e9cf64bacc17d8a3bb8caa85e06e12b", "b9e4f1c9076bcb05acf74e3fdb952e1c48420c3cb14038bbb4eb95876a85118a56096f8a7f2407ebdeb00adb557263070debd3a09c022267436c33f91420736418929bc72fd4037f08e7ba1516e7a6b2a846f4fb34819e54ee7617035782b9d9"),
        ("127.0.0.1:38161", "ab37151b401ba77a9a5bf002d8381b7a9b45f789dc4c3dc40faf0421b7d409c1496e487626ae45482517fffa3de12741", "a28ad77f42e540230a475412f860cdc2ff35a98a8ccd93c01f3e1652fd8dcc4c50def4c81718b007e7876f387e45308017b7bbeb69ef658a851b9328178aed2be06a38197d795d709d5a89f247bc698a051866c293714b718576eaccfd8b069d"),
        ("127.0.0.1:40743", "ad4fab7573351bd57066c487f391c1e52cebbe58d8c69cbc4b5586add6e6315f5b1d935ce412f7406b013c946f00b015", "964c4dd662a469e405e79825d73a1362168f1479aa3e077d23a1602fbecc8a8ee71abefb41d3f7456f65e469557ef62b0e598bd9ad6e12662a97724e2432bf7d5dde064cfbcfd4fbc4285810cdcf5d2f0fc18f482fd6a548cb3519c68c9d6aeb"),
    ];
    Group {
        beacon_id: "default".into(),
        scheme: Scheme::PedersenBlsChained,
        threshold: 4,
        period_seconds: 3,
        catchup_period_seconds: 1,
        genesis_time: 1736058215,
        transition_time: 1736058215,
        genesis_seed: hex::decode("023779ea9eac851bf27c35cdff64b8e55774ad8b20752c0258fce264fa70b57c").unwrap(),
        nodes: nodes
            .iter()
            .enumerate()
            .map(|(i, (address, key, sig))| GroupNode {
                index: i as u32,
                identity: Participant {
                    address: (*address).into(),
                    key: hex::decode(key).unwrap(),
                    signature: hex::decode(sig).unwrap(),
                },
            })
            .collect(),
        public_key: [
            "b86ba00f3eb8bda9cd60723ad45402a01c36329dae25e6cc84800572e3ec1dd6b9efebf0ea7fd46ae7abb7b760076635",
            "96fce82b8a327b1b986ce23dc18b8b39423512e7bac610672f4f6dff1682944248e21571498ef9c615348bbf9a1ec9a3",
            "ad1caaff9c1c90d10a33cf89a5497dbcb70de64aed07efe997c912a2d70c024dd4afafc89c374191c27147da5b7ea916",
            "8d37571eed924b8e4df483914b714bbac9356c50045ab9c7f22f2c42edde46ef163ee69c8d65b235e51c3b4906f2977e",
        ]
        .iter()
        .map(|h| hex::decode(h).unwrap())
        .collect(),
    }
}

#[test]
fn demo_group_identities_group_hash_and_share() {
    let group = demo_group();
    let scheme = Scheme::PedersenBlsChained;
    for n in &group.nodes {
        n.identity
            .verify_identity(scheme)
            .unwrap_or_else(|e| panic!("node {}: {e}", n.index));
        // The same signature is not a v2 identity under another scheme name.
        assert!(n
            .identity
            .verify_identity(Scheme::PedersenBlsUnchained)
            .is_err());
    }
    // drand_id.private of node 4 gives its public key.
    let sk = scalar(&Value::String(
        "4dee50f69880dce2b793ed2bad9966bc1d333c0ab28f2eff2794753e65202747".into(),
    ));
    assert_eq!(
        scheme.public_key(&sk).to_bytes(),
        group.nodes[4].identity.key
    );
    // Group hash = the file's genesis seed.
    assert_eq!(group.hash().to_vec(), group.genesis_seed);
    // dist_key.private: share of index 4 against the commits at x = 5.
    let share = scalar(&Value::String(
        "675431249f101cf5001b4dd0dd8f25107a2c547b77b0693309731906b12fca98".into(),
    ));
    let poly = group.public_poly().unwrap();
    assert_eq!(Point::generator(CurveGroup::G1).mul(&share), poly.eval(4));
    // A tampered identity is refused with its address in the message.
    let mut bad = group.nodes[1].identity.clone();
    bad.signature = group.nodes[2].identity.signature.clone();
    let err = bad.verify_identity(scheme).unwrap_err().to_string();
    assert!(err.contains("127.0.0.1:44901"), "{err}");
}
