//! The public HTTP API over a real socket: drand's bodies byte for byte, every header, every
//! status code, the wait for the next round, /health, /metrics, and junk paths.
//!
//! Beacons are drand's own (mainnet default and quicknet, from the core vectors); the tests of
//! the wait for the next round use a chain signed here (a real BLS chain with a known key),
//! because they need rounds that drand's vectors do not have.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use beacon_core::chain::{Beacon, ChainInfo, PublishedBeacon};
use beacon_core::crypto::{Scalar, Scheme};
use beacon_node::http::{router, BeaconSource, Clock, MemorySource, SERVER};
use beacon_node::metrics::NodeMetrics;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const VECTORS: &str = include_str!("../../core/tests/vectors/drand-beacons.json");

const QUICKNET_HASH: &str = "52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971";
const MAINNET_HASH: &str = "8990e7a9aaed2ffed73dbd7092123d6f289930540d7651336225dc172e51b2ce";

fn vectors() -> Value {
    serde_json::from_str(VECTORS).expect("the vectors are JSON")
}

/// A chain of the vectors with its beacons stored.
fn drand_chain(name: &str, beacon_id: &str) -> Arc<MemorySource> {
    let v = vectors();
    let info = ChainInfo::from_value(&v[name]["info"]).expect("vector info parses");
    let source = MemorySource::new(beacon_id, Some(info));
    for b in v[name]["beacons"].as_array().expect("beacons") {
        source.store(
            PublishedBeacon::from_value(b)
                .expect("vector beacon")
                .beacon,
        );
    }
    Arc::new(source)
}

/// drand's node JSON for a vector beacon, written from the vector's fields (not by our
/// serializer): round, signature, previous_signature (when present), randomness.
fn expected_beacon_json(name: &str, round: u64) -> String {
    let v = vectors();
    let b = v[name]["beacons"]
        .as_array()
        .expect("beacons")
        .iter()
        .find(|b| b["round"] == round)
        .expect("round in the vectors")
        .clone();
    let s = |k: &str| b[k].as_str().expect("hex field").to_owned();
    match b.get("previous_signature") {
        Some(_) => format!(
            r#"{{"round":{round},"signature":"{}","previous_signature":"{}","randomness":"{}"}}"#,
            s("signature"),
            s("previous_signature"),
            s("randomness")
        ),
        None => format!(
            r#"{{"round":{round},"signature":"{}","randomness":"{}"}}"#,
            s("signature"),
            s("randomness")
        ),
    }
}

/// drand's v1 /info body from the vector's fields, with Go's `json.Encoder` newline.
fn expected_info_json(name: &str) -> String {
    let v = vectors();
    let i = &v[name]["info"];
    format!(
        "{{\"public_key\":\"{}\",\"period\":{},\"genesis_time\":{},\"hash\":\"{}\",\"groupHash\":\"{}\",\"schemeID\":\"{}\",\"metadata\":{{\"beaconID\":\"{}\"}}}}\n",
        i["public_key"].as_str().expect("pk"),
        i["period"],
        i["genesis_time"],
        i["hash"].as_str().expect("hash"),
        i["groupHash"].as_str().expect("groupHash"),
        i["schemeID"].as_str().expect("scheme"),
        i["metadata"]["beaconID"].as_str().expect("id"),
    )
}

struct FixedClock(Arc<Mutex<SystemTime>>);

impl FixedClock {
    fn at(unix_secs: f64) -> (FixedClock, Clock) {
        let cell = Arc::new(Mutex::new(UNIX_EPOCH));
        let c = FixedClock(cell.clone());
        c.set(unix_secs);
        let clock: Clock = Arc::new(move || *cell.lock().expect("clock lock"));
        (c, clock)
    }
    fn set(&self, unix_secs: f64) {
        *self.0.lock().expect("clock lock") = UNIX_EPOCH + Duration::from_secs_f64(unix_secs);
    }
}

async fn serve(
    chains: Vec<Arc<dyn BeaconSource>>,
    clock: Clock,
    metrics: Option<Arc<NodeMetrics>>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = router(chains, clock, metrics);
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    addr
}

#[derive(Debug)]
struct Reply {
    status: u16,
    /// Lowercased names, in the order received.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    fn body(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf-8 body")
    }
    /// The header names, minus hyper's own (`date`, `content-length`, and `connection`,
    /// which echoes our `Connection: close`).
    fn names(&self) -> BTreeSet<&str> {
        self.headers
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| !matches!(*n, "date" | "content-length" | "connection"))
            .collect()
    }
    fn assert_common(&self) {
        assert_eq!(self.header("server"), Some(SERVER), "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        assert_eq!(
            self.header("access-control-allow-origin"),
            Some("*"),
            "{self:?}"
        );
        assert!(self.header("date").is_some());
        if let Some(len) = self.header("content-length") {
            assert_eq!(len.parse::<usize>().ok(), Some(self.body.len()), "{self:?}");
        }
    }
}

/// One HTTP/1.1 request on a fresh connection, raw, so that any path can be sent as is.
async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    parse_reply(&raw)
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, &[]).await
}

fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..split]).expect("ascii head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

fn names(list: &[&'static str]) -> BTreeSet<&'static str> {
    list.iter().copied().collect()
}

fn quicknet_round_time(round: u64) -> f64 {
    (1_692_803_367 + (round - 1) * 3) as f64
}

/// mainnet default (the default beacon) and quicknet on one node, the clock 1.25 s into
/// quicknet's round 123, the last one stored.
async fn two_chain_node() -> (SocketAddr, FixedClock, Arc<NodeMetrics>) {
    let metrics = Arc::new(NodeMetrics::new("test").expect("metrics"));
    let (clock, c) = FixedClock::at(quicknet_round_time(123) + 1.25);
    let chains: Vec<Arc<dyn BeaconSource>> = vec![
        drand_chain("mainnet-quicknet", "quicknet"),
        drand_chain("mainnet-default", "default"),
    ];
    let addr = serve(chains, c, Some(metrics.clone())).await;
    (addr, clock, metrics)
}

#[tokio::test]
async fn info_is_drands_v1_json() {
    let (addr, _clock, _) = two_chain_node().await;
    // Unprefixed: the chain whose beacon ID is "default", though quicknet was given first.
    for (path, name, genesis) in [
        (
            "/info".to_owned(),
            "mainnet-default",
            "Wed, 22 Jul 2020 15:17:30 GMT",
        ),
        (
            format!("/{MAINNET_HASH}/info"),
            "mainnet-default",
            "Wed, 22 Jul 2020 15:17:30 GMT",
        ),
        (
            format!("/{QUICKNET_HASH}/info"),
            "mainnet-quicknet",
            "Wed, 23 Aug 2023 15:09:27 GMT",
        ),
        // Go's hex decoder takes upper case; drand finds the chain.
        (
            format!("/{}/info", QUICKNET_HASH.to_uppercase()),
            "mainnet-quicknet",
            "Wed, 23 Aug 2023 15:09:27 GMT",
        ),
    ] {
        let r = get(addr, &path).await;
        assert_eq!(r.status, 200, "{path}");
        r.assert_common();
        assert_eq!(r.body(), expected_info_json(name), "{path}");
        assert_eq!(
            r.header("cache-control"),
            Some("public, max-age=604800, immutable")
        );
        assert_eq!(r.header("last-modified"), Some(genesis));
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        assert_eq!(
            r.names(),
            names(&[
                "server",
                "content-type",
                "access-control-allow-origin",
                "cache-control",
                "last-modified",
                "accept-ranges"
            ])
        );
    }
}

#[tokio::test]
async fn latest_is_cached_until_the_next_round() {
    let (addr, clock, _) = two_chain_node().await;
    for path in [
        format!("/{QUICKNET_HASH}/public/latest"),
        format!("/{QUICKNET_HASH}/public/0"),
    ] {
        let r = get(addr, &path).await;
        assert_eq!(r.status, 200, "{path}");
        r.assert_common();
        assert_eq!(r.body(), expected_beacon_json("mainnet-quicknet", 123));
        // 1.75 s to round 124, rounded up; drand's "max-age:" with a colon.
        assert_eq!(r.header("cache-control"), Some("max-age:2, public"));
        assert_eq!(r.header("expires"), Some("Wed, 23 Aug 2023 15:15:36 GMT"));
        assert_eq!(
            r.header("last-modified"),
            Some("Wed, 23 Aug 2023 15:15:33 GMT")
        );
        assert_eq!(
            r.names(),
            names(&[
                "server",
                "content-type",
                "access-control-allow-origin",
                "cache-control",
                "expires",
                "last-modified"
            ])
        );
    }
    // mainnet default, chained (previous_signature present), long behind the clock: drand
    // then caches for half a period from now.
    let r = get(addr, "/public/latest").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body(), expected_beacon_json("mainnet-default", 72785));
    assert_eq!(r.header("cache-control"), Some("max-age:15, public"));
    assert_eq!(r.header("expires"), Some("Wed, 23 Aug 2023 15:15:49 GMT"));
    assert_eq!(
        r.header("last-modified"),
        Some("Sun, 16 Aug 2020 21:49:30 GMT")
    );

    // Exactly at round 124's start, with 123 still the latest: half a period from now again.
    clock.set(quicknet_round_time(124));
    let r = get(addr, &format!("/{QUICKNET_HASH}/public/latest")).await;
    assert_eq!(r.header("cache-control"), Some("max-age:2, public"));
    assert_eq!(r.header("expires"), Some("Wed, 23 Aug 2023 15:15:37 GMT"));
}

#[tokio::test]
async fn stored_rounds_are_immutable() {
    let (addr, _clock, _) = two_chain_node().await;
    for (path, name, round, modified) in [
        (
            format!("/{QUICKNET_HASH}/public/42"),
            "mainnet-quicknet",
            42,
            "Wed, 23 Aug 2023 15:11:30 GMT",
        ),
        (
            format!("/{QUICKNET_HASH}/public/123"),
            "mainnet-quicknet",
            123,
            "Wed, 23 Aug 2023 15:15:33 GMT",
        ),
        (
            "/public/1".to_owned(),
            "mainnet-default",
            1,
            "Wed, 22 Jul 2020 15:17:30 GMT",
        ),
        (
            "/public/72785".to_owned(),
            "mainnet-default",
            72785,
            "Sun, 16 Aug 2020 21:49:30 GMT",
        ),
        // Leading zeros, as Go's ParseUint reads them.
        (
            "/public/0001".to_owned(),
            "mainnet-default",
            1,
            "Wed, 22 Jul 2020 15:17:30 GMT",
        ),
    ] {
        let r = get(addr, &path).await;
        assert_eq!(r.status, 200, "{path}");
        r.assert_common();
        assert_eq!(r.body(), expected_beacon_json(name, round), "{path}");
        assert_eq!(
            r.header("cache-control"),
            Some("public, max-age=604800, immutable")
        );
        assert_eq!(r.header("last-modified"), Some(modified));
        assert_eq!(
            r.names(),
            names(&[
                "server",
                "content-type",
                "access-control-allow-origin",
                "cache-control",
                "last-modified",
                "accept-ranges"
            ])
        );
    }
}

#[tokio::test]
async fn conditional_range_and_head_requests_follow_go() {
    let (addr, _clock, _) = two_chain_node().await;
    let path = format!("/{QUICKNET_HASH}/public/42");
    let full = expected_beacon_json("mainnet-quicknet", 42);

    let r = request(
        addr,
        "GET",
        &path,
        &[("If-Modified-Since", "Wed, 23 Aug 2023 15:11:30 GMT")],
    )
    .await;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-type"), None, "Go drops it on 304");
    assert_eq!(
        r.header("last-modified"),
        Some("Wed, 23 Aug 2023 15:11:30 GMT")
    );
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=604800, immutable")
    );
    assert_eq!(r.header("server"), Some(SERVER));

    let r = request(
        addr,
        "GET",
        &path,
        &[("If-Modified-Since", "Wed, 23 Aug 2023 15:11:29 GMT")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body(), full);
    let r = request(addr, "GET", &path, &[("If-Modified-Since", "yesterday")]).await;
    assert_eq!(r.status, 200);
    let r = request(addr, "GET", &path, &[("If-None-Match", "*")]).await;
    assert_eq!(r.status, 304);
    let r = request(
        addr,
        "GET",
        &path,
        &[("If-Unmodified-Since", "Wed, 23 Aug 2023 15:11:29 GMT")],
    )
    .await;
    assert_eq!(r.status, 412);
    let r = request(addr, "GET", &path, &[("If-Match", "\"abc\"")]).await;
    assert_eq!(r.status, 412);

    let r = request(addr, "GET", &path, &[("Range", "bytes=0-9")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body(), &full[..10]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-9/{}", full.len()).as_str())
    );
    let r = request(addr, "GET", &path, &[("Range", "bytes=-5")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body(), &full[full.len() - 5..]);
    let r = request(addr, "GET", &path, &[("Range", "bytes=10000-")]).await;
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{}", full.len()).as_str())
    );
    let r = request(addr, "GET", &path, &[("Range", "bytes=5-1")]).await;
    assert_eq!(r.status, 416);
    // If-Range with another date: the range is ignored.
    let r = request(
        addr,
        "GET",
        &path,
        &[
            ("Range", "bytes=0-9"),
            ("If-Range", "Wed, 23 Aug 2023 15:11:31 GMT"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body(), full);

    let r = request(addr, "HEAD", &path, &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(
        r.header("content-length"),
        Some(full.len().to_string().as_str())
    );
    assert_eq!(
        r.header("last-modified"),
        Some("Wed, 23 Aug 2023 15:11:30 GMT")
    );
    // chi routes every method to the handlers; so do we.
    let r = request(addr, "POST", "/info", &[("Content-Length", "0")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body(), expected_info_json("mainnet-default"));
}

#[tokio::test]
async fn rounds_not_there_get_drands_404s() {
    let (addr, clock, _) = two_chain_node().await;
    // Past but not stored.
    let r = get(addr, &format!("/{QUICKNET_HASH}/public/100")).await;
    assert_eq!(r.status, 404);
    r.assert_common();
    assert!(r.body.is_empty());
    assert_eq!(
        r.header("cache-control"),
        Some("must-revalidate, no-cache, max-age=0")
    );
    // More than a period ahead: cache until the round's time (229.75 s, truncated).
    let r = get(addr, &format!("/{QUICKNET_HASH}/public/200")).await;
    assert_eq!(r.status, 404);
    r.assert_common();
    assert!(r.body.is_empty());
    assert_eq!(
        r.header("cache-control"),
        Some("public, must-revalidate, max-age=229")
    );
    // The last round there is: drand's time overflow guard, and Go's Duration saturating at
    // 2^63-1 ns.
    let r = get(
        addr,
        &format!("/{QUICKNET_HASH}/public/18446744073709551615"),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.header("cache-control"),
        Some("public, must-revalidate, max-age=9223372036")
    );
    // Exactly a period ahead is not "the future" (and latest+2, so no wait either): drand's
    // not-available 404.
    clock.set(quicknet_round_time(124));
    let r = get(addr, &format!("/{QUICKNET_HASH}/public/125")).await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.header("cache-control"),
        Some("must-revalidate, no-cache, max-age=0")
    );
}

#[tokio::test]
async fn bad_rounds_and_chain_hashes_get_400_or_404() {
    let (addr, _clock, _) = two_chain_node().await;
    for round in [
        "abc",
        "-1",
        "+1",
        "18446744073709551616",
        "99999999999999999999999999",
        "1.5",
        "1e3",
        "0x10",
        "%31",
        "1%20",
        "%00",
        "",
    ] {
        for prefix in ["", &format!("/{QUICKNET_HASH}")] {
            let path = format!("{prefix}/public/{round}");
            let r = get(addr, &path).await;
            assert_eq!(r.status, 400, "{path}");
            r.assert_common();
            assert!(r.body.is_empty(), "{path}: drand sends no body");
        }
    }
    // The round is checked before the chain hash, as drand does.
    assert_eq!(get(addr, "/zz/public/abc").await.status, 400);
    for path in [
        "/zz/info",
        "/abc/info",
        "/public/public/latest",
        "/g0/health",
        "/xyz/public/1",
    ] {
        let r = get(addr, path).await;
        assert_eq!(r.status, 400, "{path}");
        r.assert_common();
        let e: Value = serde_json::from_slice(&r.body).expect("JSON error");
        assert!(
            e["error"]
                .as_str()
                .expect("error")
                .starts_with("unable to decode chain hash"),
            "{path}: {e}"
        );
    }
    let unknown = "00".repeat(32);
    for path in [
        format!("/{unknown}/info"),
        format!("/{unknown}/public/latest"),
        format!("/{unknown}/public/1"),
        format!("/{unknown}/health"),
        "/abcd/info".to_owned(),
    ] {
        let r = get(addr, &path).await;
        assert_eq!(r.status, 404, "{path}");
        r.assert_common();
        let e: Value = serde_json::from_slice(&r.body).expect("JSON error");
        assert!(e["error"]
            .as_str()
            .expect("error")
            .contains("no chain with hash"));
    }
    for path in [
        "/",
        "/nope",
        "/info/",
        "//info",
        "/public",
        "/public/1/2",
        "/chains/x",
        "/metrics/x",
    ] {
        let r = get(addr, path).await;
        assert_eq!(r.status, 404, "{path}");
        r.assert_common();
    }
}

#[tokio::test]
async fn health_is_200_only_when_caught_up() {
    let (addr, clock, _) = two_chain_node().await;
    let health = format!("/{QUICKNET_HASH}/health");
    // Round 123 in progress, 123 stored.
    let r = get(addr, &health).await;
    assert_eq!(r.status, 200);
    r.assert_common();
    assert_eq!(r.body(), r#"{"current":123,"expected":123}"#);
    assert_eq!(
        r.header("cache-control"),
        Some("public, must-revalidate, max-age=1")
    );
    assert_eq!(
        r.names(),
        names(&[
            "server",
            "content-type",
            "access-control-allow-origin",
            "cache-control"
        ])
    );
    // Round 124 in progress: one behind is still healthy.
    clock.set(quicknet_round_time(124) + 0.5);
    let r = get(addr, &health).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body(), r#"{"current":123,"expected":124}"#);
    assert_eq!(
        r.header("cache-control"),
        Some("public, must-revalidate, max-age=2")
    );
    // Two behind: 503.
    clock.set(quicknet_round_time(125));
    let r = get(addr, &health).await;
    assert_eq!(r.status, 503);
    r.assert_common();
    assert_eq!(r.body(), r#"{"current":123,"expected":125}"#);
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    // The default chain (mainnet) is years behind this clock.
    let r = get(addr, "/health").await;
    assert_eq!(r.status, 503);
    let v: Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(v["current"], 72785);
    // Ahead of the clock (a stored round the clock has not reached) is not caught up either.
    clock.set(quicknet_round_time(121));
    let r = get(addr, &health).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body(), r#"{"current":123,"expected":121}"#);
}

#[tokio::test]
async fn chains_lists_the_hashes_sorted() {
    let (addr, _clock, _) = two_chain_node().await;
    let r = get(addr, "/chains").await;
    assert_eq!(r.status, 200);
    r.assert_common();
    assert_eq!(r.body(), format!(r#"["{QUICKNET_HASH}","{MAINNET_HASH}"]"#));
    assert_eq!(r.header("cache-control"), Some("max-age=300"));
}

#[tokio::test]
async fn before_the_dkg_every_route_says_so() {
    let (_clock, c) = FixedClock::at(quicknet_round_time(123));
    let pending = Arc::new(MemorySource::new("default", None));
    let addr = serve(vec![pending.clone()], c, None).await;
    for path in ["/info", "/public/latest", "/public/0", "/public/5"] {
        let r = get(addr, path).await;
        assert_eq!(r.status, 404, "{path}");
        r.assert_common();
        assert_eq!(
            r.body(),
            r#"{"error":"no chain yet: the node has not completed its DKG"}"#,
            "{path}"
        );
    }
    let r = get(addr, "/health").await;
    assert_eq!(r.status, 503);
    r.assert_common();
    assert_eq!(
        r.body(),
        r#"{"current":0,"expected":0,"error":"no chain yet: the node has not completed its DKG"}"#
    );
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    let r = get(addr, "/chains").await;
    assert_eq!(r.body(), "[]");
    // A hash cannot name a chain that has none yet.
    assert_eq!(
        get(addr, &format!("/{QUICKNET_HASH}/info")).await.status,
        404
    );

    // The DKG completes: the same router serves the chain.
    let v = vectors();
    pending.set_info(ChainInfo::from_value(&v["mainnet-quicknet"]["info"]).expect("info"));
    let r = get(addr, "/public/latest").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body(), r#"{"error":"no beacon stored yet"}"#);
    assert_eq!(
        r.header("cache-control"),
        Some("must-revalidate, no-cache, max-age=0")
    );
    pending.store(
        PublishedBeacon::from_value(&v["mainnet-quicknet"]["beacons"][1])
            .expect("b")
            .beacon,
    );
    let r = get(addr, "/public/latest").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body(), expected_beacon_json("mainnet-quicknet", 123));
    assert_eq!(get(addr, "/health").await.status, 200);
    assert_eq!(
        get(addr, &format!("/{QUICKNET_HASH}/info")).await.status,
        200
    );
}

#[tokio::test]
async fn unprefixed_routes_need_a_default_or_a_single_chain() {
    let (_clock, c) = FixedClock::at(quicknet_round_time(123) + 1.0);
    // The only chain is served unprefixed even though its ID is not "default".
    let addr = serve(
        vec![drand_chain("mainnet-quicknet", "quicknet")],
        c.clone(),
        None,
    )
    .await;
    let r = get(addr, "/info").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body(), expected_info_json("mainnet-quicknet"));
    // Two chains, neither the default.
    let addr = serve(
        vec![
            drand_chain("mainnet-quicknet", "quicknet"),
            drand_chain("testnet-unchained-3s", "testnet"),
        ],
        c,
        None,
    )
    .await;
    for path in ["/info", "/public/latest", "/public/1", "/health"] {
        let r = get(addr, path).await;
        assert_eq!(r.status, 404, "{path}");
        let e: Value = serde_json::from_slice(&r.body).expect("JSON error");
        assert!(e["error"]
            .as_str()
            .expect("error")
            .starts_with("no default chain"));
    }
    assert_eq!(
        get(addr, &format!("/{QUICKNET_HASH}/info")).await.status,
        200
    );
}

/// A chain signed here: bls-unchained-g1-rfc9380 (quicknet's scheme), period 1 s.
struct OwnChain {
    secret: Scalar,
    info: ChainInfo,
}

impl OwnChain {
    fn new() -> OwnChain {
        let scheme = Scheme::BlsUnchainedG1Rfc9380;
        let secret = Scalar::from(0x5eed_u64);
        let info = ChainInfo {
            public_key: scheme.public_key(&secret),
            period: 1,
            genesis_time: 1_700_000_000,
            genesis_seed: vec![7; 32],
            scheme,
            beacon_id: "own".to_owned(),
        };
        OwnChain { secret, info }
    }
    fn beacon(&self, round: u64) -> Beacon {
        let msg = self.info.scheme.digest(round, &[]);
        let sig = self.info.scheme.sign(&self.secret, &msg).expect("sign");
        let beacon = Beacon {
            round,
            signature: sig.to_bytes(),
            previous_signature: vec![],
        };
        let published = PublishedBeacon {
            beacon: beacon.clone(),
            randomness: None,
        };
        assert!(self.info.verify_beacon(&published).is_ok());
        beacon
    }
}

#[tokio::test]
async fn the_next_round_is_answered_as_soon_as_it_is_stored() {
    let chain = OwnChain::new();
    let source = Arc::new(MemorySource::new("own", Some(chain.info.clone())));
    for round in 1..=10 {
        source.store(chain.beacon(round));
    }
    let genesis = chain.info.genesis_time as f64;
    // Half a second before round 11 starts.
    let (clock, c) = FixedClock::at(genesis + 9.5);
    let addr = serve(vec![source.clone()], c, None).await;
    let hash = chain.info.hash_hex();

    let waiting = tokio::spawn(async move { get(addr, &format!("/{hash}/public/11")).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a request for latest+1 waits for it"
    );
    let stored = chain.beacon(11);
    let started = Instant::now();
    source.store(stored.clone());
    let r = tokio::time::timeout(Duration::from_secs(1), waiting)
        .await
        .expect("answered within a second of the store")
        .expect("task");
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(r.status, 200);
    r.assert_common();
    assert_eq!(r.body(), beacon_node::http::node_beacon_json(&stored));
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=604800, immutable")
    );

    // Nothing comes: the wait ends after period + 1 s with drand's not-available 404.
    clock.set(genesis + 10.5);
    let started = Instant::now();
    let r = get(addr, &format!("/{}/public/12", chain.info.hash_hex())).await;
    let waited = started.elapsed();
    assert_eq!(r.status, 404);
    assert_eq!(
        r.header("cache-control"),
        Some("must-revalidate, no-cache, max-age=0")
    );
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(3),
        "waited {waited:?}"
    );

    // A missing past round that is not latest+1 is answered at once.
    let started = Instant::now();
    let r = get(addr, "/public/0").await;
    assert_eq!(r.body(), beacon_node::http::node_beacon_json(&stored));
    let source2 = Arc::new(MemorySource::new("own", Some(chain.info.clone())));
    for round in [1, 2, 4] {
        source2.store(chain.beacon(round));
    }
    let (_clock2, c2) = FixedClock::at(genesis + 9.5);
    let addr2 = serve(vec![source2], c2, None).await;
    assert_eq!(get(addr2, "/public/3").await.status, 404);
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_code() {
    let (addr, _clock, metrics) = two_chain_node().await;
    get(addr, "/info").await;
    get(addr, "/public/abc").await;
    get(addr, &format!("/{QUICKNET_HASH}/public/42")).await;
    metrics.beacon_stored("quicknet", 123, Duration::from_millis(20));
    let r = get(addr, "/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = r.body();
    for line in [
        "beacon_http_requests_total{code=\"200\",route=\"/info\"} 1",
        "beacon_http_requests_total{code=\"400\",route=\"/public/{round}\"} 1",
        "beacon_http_requests_total{code=\"200\",route=\"/{chainhash}/public/{round}\"} 1",
        "last_beacon_round{beacon_id=\"quicknet\"} 123",
        "beacon_build_info{version=\"test\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    // Without metrics, /metrics is just an unknown path.
    let (_c, clock) = FixedClock::at(0.0);
    let plain = serve(
        vec![drand_chain("mainnet-quicknet", "quicknet")],
        clock,
        None,
    )
    .await;
    assert_eq!(get(plain, "/metrics").await.status, 404);
}

#[tokio::test]
async fn junk_paths_never_get_a_server_error() {
    let (addr, _clock, _) = two_chain_node().await;
    let mut rng = beacon_node::fuzz::SplitMix64::new(0xbeac0);
    let segments = [
        "public",
        "latest",
        "info",
        "health",
        "chains",
        "metrics",
        "0",
        "1",
        "42",
        "123",
        "-1",
        "18446744073709551615",
        "18446744073709551616",
        "%00",
        "%zz",
        "%2F",
        "..",
        ".",
        "",
        "zz",
        "ffff",
        QUICKNET_HASH,
        MAINNET_HASH,
        "%C3%A9",
        "~",
        "a;b",
        "a,b",
        "@",
        "!$&'()*+",
    ];
    let charset = b"abcdefghijklmnopqrstuvwxyzABCDEF0123456789-._~%!$&'()*+,;=:@";
    let mut statuses = BTreeSet::new();
    for i in 0..1500 {
        let n = rng.below(5);
        let mut path = String::new();
        for _ in 0..=n {
            path.push('/');
            if rng.below(4) == 0 {
                let len = rng.below(70);
                for _ in 0..len {
                    path.push(charset[rng.below(charset.len())] as char);
                }
            } else {
                path.push_str(segments[rng.below(segments.len())]);
            }
        }
        if rng.below(8) == 0 {
            path.push_str("?round=1&x=%zz");
        }
        let method = ["GET", "HEAD", "POST", "OPTIONS", "DELETE"][rng.below(5)];
        let headers: &[(&str, &str)] = match rng.below(6) {
            0 => &[("Range", "bytes=-0,5-")],
            1 => &[("If-Modified-Since", "Wed, 99 Aug 2023 15:11:30 GMT")],
            2 => &[("Range", "bytes=18446744073709551616-")],
            _ => &[("Content-Length", "0")],
        };
        let r = request(addr, method, &path, headers).await;
        // 503 is /health's "not caught up" (the default chain is years behind this clock);
        // no other 5xx is acceptable.
        let health = r.status == 503
            && path
                .split('?')
                .next()
                .is_some_and(|p| p.ends_with("/health"));
        assert!(
            r.status < 500 || health,
            "#{i} {method} {path} -> {}",
            r.status
        );
        // Whatever hyper itself refuses carries no Server header; everything else is ours.
        if r.header("server").is_some() && method != "HEAD" {
            r.assert_common_or_metrics(&path);
        }
        statuses.insert(r.status);
    }
    // The generator reached more than one kind of answer.
    assert!(
        statuses.contains(&200) && statuses.contains(&400) && statuses.contains(&404),
        "{statuses:?}"
    );
    // Long and odd paths, too.
    for path in [
        format!("/{}", "a".repeat(8000)),
        format!("/{}/info", "0".repeat(4000)),
        format!("/public/{}", "9".repeat(5000)),
        "/public/latest/".to_owned(),
        "/%FF%FE/info".to_owned(),
    ] {
        let r = get(addr, &path).await;
        assert!(
            r.status < 500,
            "{} -> {}",
            &path[..path.len().min(40)],
            r.status
        );
    }
}

impl Reply {
    fn assert_common_or_metrics(&self, path: &str) {
        if self.header("content-type") == Some("text/plain; version=0.0.4; charset=utf-8") {
            assert!(path.starts_with("/metrics"));
            return;
        }
        if self.status == 304 {
            assert_eq!(self.header("server"), Some(SERVER));
            return;
        }
        self.assert_common();
    }
}
