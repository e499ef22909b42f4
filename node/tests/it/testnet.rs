//! `beacon-node testnet`: one command brings up a network whose beacons verify with our
//! library and with drand's own JavaScript client; Ctrl-C stops every node; a second run on the
//! same folder restarts the same chain; a run while it is up refuses (ports taken).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use beacon_core::chain::ChainInfo;
use serde_json::Value;

use crate::netharness::{one_network, try_http_get, unix_now};

const DRAND_CLIENT: &str = "drand-client@1.4.2";

struct Testnet(Child);

impl Drop for Testnet {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path) -> Testnet {
    let log = std::fs::File::create(dir.with_extension("log")).expect("log");
    Testnet(
        Command::new(env!("CARGO_BIN_EXE_beacon-node"))
            .args([
                "testnet",
                "--nodes",
                "4",
                "--threshold",
                "3",
                "--period",
                "1",
            ])
            .args(["--scheme", "bls-unchained-g1-rfc9380", "--dir"])
            .arg(dir)
            .env("RUST_LOG", "warn")
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn testnet"),
    )
}

fn wait_for_file(path: &Path, within: Duration, child: &mut Testnet) -> Value {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("testnet exited early with {status}");
        }
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(v) = serde_json::from_str(&text) {
                return v;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{} did not appear within {within:?}", path.display());
}

fn sigterm(t: &mut Testnet) -> std::process::ExitStatus {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(t.0.id() as i32, libc::SIGTERM);
    }
    let start = Instant::now();
    loop {
        if let Ok(Some(s)) = t.0.try_wait() {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "testnet did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
}

/// drand's JavaScript client, installed once per machine from the npm registry.
fn drand_client() -> Option<PathBuf> {
    let npm = ["npm", "/usr/bin/npm", "/usr/local/bin/npm"]
        .into_iter()
        .find(|n| Command::new(n).arg("--version").output().is_ok())?;
    let home = std::env::var_os("HOME").map(PathBuf::from)?;
    let dir = home.join(".cache/beacon-operator/npm/drand-client-1.4.2");
    if !dir.join("node_modules/drand-client/package.json").exists() {
        std::fs::create_dir_all(&dir).ok()?;
        let ok = Command::new(npm)
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg(DRAND_CLIENT)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "npm install {DRAND_CLIENT} failed");
    }
    std::fs::write(
        dir.join("verify.mjs"),
        r#"import { HttpCachingChain, HttpChainClient, fetchBeacon } from 'drand-client'
const [url, chainHash, publicKey, rounds] = process.argv.slice(2)
const options = { disableBeaconVerification: false, noCache: true, chainVerificationParams: { chainHash, publicKey } }
const client = new HttpChainClient(new HttpCachingChain(url, options), options)
for (const r of rounds.split(',').map(Number)) {
  const b = await fetchBeacon(client, r)
  console.log(`round ${b.round}: verified ${b.randomness}`)
}
"#,
    )
    .ok()?;
    Some(dir)
}

#[test]
fn one_command_brings_up_a_network_that_drands_client_verifies() {
    let _turn = one_network();
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("net");
    let mut t = start(&dir);
    let running = wait_for_file(&dir.join("testnet.json"), Duration::from_secs(180), &mut t);
    let hash = running["chain_hash"]
        .as_str()
        .expect("chain_hash")
        .to_owned();
    let nodes = running["nodes"].as_array().cloned().expect("nodes");
    assert_eq!(nodes.len(), 4);
    let url = nodes[1]["url"].as_str().expect("url").to_owned();
    let http: std::net::SocketAddr = url.trim_start_matches("http://").parse().expect("addr");

    // Beacons verify with our library...
    let (code, body) = try_http_get(http, "/info").expect("info");
    assert_eq!(code, 200);
    let info = ChainInfo::from_json(&body).expect("info");
    assert_eq!(info.hash_hex(), hash);
    let wait = Instant::now();
    let mut latest = 0;
    while latest < 3 && wait.elapsed() < Duration::from_secs(60) {
        latest = try_http_get(http, "/public/latest")
            .and_then(|(c, b)| (c == 200).then_some(b))
            .and_then(|b| serde_json::from_str::<Value>(&b).ok())
            .and_then(|v| v["round"].as_u64())
            .unwrap_or(0);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(latest >= 3, "beacons flow");
    for round in 1..=3u64 {
        let (code, body) = try_http_get(http, &format!("/public/{round}")).expect("beacon");
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).expect("json");
        let b = beacon_core::chain::PublishedBeacon::from_value(&v).expect("beacon");
        info.verify_beacon(&b).expect("verifies");
    }

    // ...and with drand's own JavaScript client, which also refuses a wrong chain hash.
    let client = drand_client().expect("node and npm are on this machine");
    let pk = hex::encode(info.public_key.to_bytes());
    let out = Command::new("node")
        .current_dir(&client)
        .args(["verify.mjs", &url, &hash, &pk, "1,2,3"])
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "drand-client: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches(": verified").count(), 3, "{stdout}");
    let wrong = format!("{}00", &hash[..hash.len() - 2]);
    let out = Command::new("node")
        .current_dir(&client)
        .args(["verify.mjs", &url, &wrong, &pk, "1"])
        .output()
        .expect("node");
    assert!(!out.status.success(), "a wrong chain hash must fail");

    // While it runs, a second run on the same folder refuses: its ports are taken.
    let again = Command::new(env!("CARGO_BIN_EXE_beacon-node"))
        .args(["testnet", "--dir"])
        .arg(&dir)
        .output()
        .expect("run");
    assert_eq!(again.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is taken"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // A folder that holds something else is refused.
    let other = root.path().join("other");
    std::fs::create_dir_all(&other).expect("dir");
    std::fs::write(other.join("notes.txt"), "mine").expect("file");
    let refused = Command::new(env!("CARGO_BIN_EXE_beacon-node"))
        .args(["testnet", "--dir"])
        .arg(&other)
        .output()
        .expect("run");
    assert_eq!(refused.status.code(), Some(2));

    // Ctrl-C (SIGTERM) stops every node cleanly.
    let status = sigterm(&mut t);
    assert!(status.success(), "testnet exit: {status}");
    for n in &nodes {
        let pid = n["pid"].as_u64().expect("pid");
        assert!(!alive(pid), "node pid {pid} still running");
    }

    // Run again: the same network with its keys and chain.
    std::fs::remove_file(dir.join("testnet.json")).expect("rm");
    let before = unix_now();
    let mut t = start(&dir);
    let running = wait_for_file(&dir.join("testnet.json"), Duration::from_secs(120), &mut t);
    assert_eq!(running["chain_hash"].as_str(), Some(hash.as_str()));
    let (code, body) = try_http_get(http, "/public/1").expect("round 1 still there");
    assert_eq!(code, 200, "{body}");
    assert!(unix_now() - before < 120);
    sigterm(&mut t);
}
