//! A local network of real `beacon-node` processes on 127.0.0.x with TLS from a test CA, and
//! either a group dealt in test code or none (the nodes then run a ceremony over the network).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use beacon_core::chain::{ChainInfo, PublishedBeacon};
use beacon_core::crypto::{PriPoly, Scheme};
use beacon_node::control::client::{ControlClientConfig, NodeControl};
use beacon_node::keys::KeyStore;
use beacon_node::keys::{Group, GroupNode, KeyPair, Share};
use beacon_node::net::pki::{IssuedCert, TestCa};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

pub struct TestNode {
    pub dir: PathBuf,
    pub ip: String,
    pub peer: SocketAddr,
    pub http: SocketAddr,
    pub control: SocketAddr,
    /// The operator control listener's address (used when the net has an operator CA).
    pub operator: SocketAddr,
    pub log: PathBuf,
    child: Option<Child>,
    restarts: u32,
}

/// One network at a time: node networks are timing-sensitive (DKG phase timeouts, round
/// boundaries) and the CI machine has 2 cores, so networks of different tests do not share them.
static ONE_NETWORK: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn one_network() -> std::sync::MutexGuard<'static, ()> {
    ONE_NETWORK.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct TestNet {
    /// Holds every node's folder until the test ends.
    _root: tempfile::TempDir,
    _turn: std::sync::MutexGuard<'static, ()>,
    pub nodes: Vec<TestNode>,
    /// With [`TestNet::with_operator`]: every node opens its operator listener for this CA.
    pub operator: Option<OperatorCa>,
}

/// The operator's own control CA (not the peers'), its file, and a client certificate from it.
pub struct OperatorCa {
    pub ca_file: PathBuf,
    pub client: IssuedCert,
}

fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on loopback")
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl TestNet {
    /// n nodes with keys and certificates but no group: they get one from a ceremony.
    pub fn without_group(n: usize, scheme: Scheme, first_ip: u8) -> TestNet {
        let mut rng = ChaCha20Rng::seed_from_u64(n as u64 * 7 + first_ip as u64);
        let turn = one_network();
        let (root, nodes, _) = Self::keys(n, scheme, first_ip, &mut rng);
        TestNet {
            _root: root,
            _turn: turn,
            nodes,
            operator: None,
        }
    }

    /// Nodes started from now on also serve the control API to the operator: a control CA of
    /// its own (ca.crt in the net's folder) and a client certificate from it.
    pub fn with_operator(mut self) -> TestNet {
        let ca = TestCa::new("beacon operator control CA").expect("operator CA");
        let ca_file = self._root.path().join("operator-ca.crt");
        std::fs::write(&ca_file, ca.ca_pem()).expect("write operator CA");
        let client = ca
            .issue(&["beacon-operator".to_owned()])
            .expect("operator client certificate");
        self.operator = Some(OperatorCa { ca_file, client });
        self
    }

    /// A client of node `i`'s operator listener, as the operator makes one: the node's CA
    /// (its ca.crt) and the operator's client certificate.
    pub fn operator_client(&self, i: usize) -> NodeControl {
        let op = self.operator.as_ref().expect("a net with_operator");
        self.control_client(
            i,
            self.nodes[i].operator,
            &op.client.cert_pem,
            &op.client.key_pem,
        )
    }

    /// A client of `addr` with node `i`'s CA and the given client certificate. Call it inside
    /// a Tokio runtime (`Runtime::enter`).
    pub fn control_client(
        &self,
        i: usize,
        addr: SocketAddr,
        cert_pem: &str,
        key_pem: &str,
    ) -> NodeControl {
        let ca = std::fs::read(self.nodes[i].dir.join("tls/ca.crt")).expect("node CA");
        let mut config = ControlClientConfig::new(
            addr.to_string(),
            ca,
            cert_pem.as_bytes(),
            key_pem.as_bytes(),
        );
        config.call_timeout = Duration::from_secs(20);
        NodeControl::new(&config).expect("control client")
    }

    fn keys(
        n: usize,
        scheme: Scheme,
        first_ip: u8,
        rng: &mut ChaCha20Rng,
    ) -> (tempfile::TempDir, Vec<TestNode>, Vec<KeyPair>) {
        let root = tempfile::tempdir().expect("tempdir");
        let ca = TestCa::new("beacon test CA").expect("CA");
        let mut nodes = Vec::new();
        let mut pairs = Vec::new();
        for i in 0..n {
            let ip = format!("127.0.0.{}", first_ip as usize + i);
            let peer: SocketAddr = format!("{ip}:{}", free_port(&ip)).parse().expect("addr");
            let http: SocketAddr = format!("{ip}:{}", free_port(&ip)).parse().expect("addr");
            let control: SocketAddr = format!("{ip}:{}", free_port(&ip)).parse().expect("addr");
            let operator: SocketAddr = format!("{ip}:{}", free_port(&ip)).parse().expect("addr");
            let dir = root.path().join(format!("node{i}"));
            std::fs::create_dir_all(&dir).expect("node dir");
            let pair = KeyPair::generate(scheme, &peer.to_string(), rng).expect("key pair");
            KeyStore::new(&dir).save_new_pair(&pair).expect("save key");
            ca.write_tls_dir(&dir.join("tls"), std::slice::from_ref(&ip))
                .expect("tls");
            pairs.push(pair);
            nodes.push(TestNode {
                log: dir.join("node.log"),
                dir,
                ip,
                peer,
                http,
                control,
                operator,
                child: None,
                restarts: 0,
            });
        }
        (root, nodes, pairs)
    }

    /// n nodes, threshold t, period seconds; genesis `genesis_in` seconds from now.
    pub fn new(
        n: usize,
        t: usize,
        period: u64,
        scheme: Scheme,
        genesis_in: i64,
        first_ip: u8,
    ) -> TestNet {
        let turn = one_network();
        let mut rng = ChaCha20Rng::seed_from_u64(n as u64 * 1000 + t as u64);
        let (root, nodes, pairs) = Self::keys(n, scheme, first_ip, &mut rng);
        // The dealer: test code only.
        let poly = PriPoly::random(t, None, &mut rng);
        let public = poly.commit(scheme.key_group());
        let genesis = unix_now() + genesis_in;
        let mut group = Group {
            threshold: t as u32,
            period: Duration::from_secs(period),
            catchup_period: Duration::from_millis(500),
            genesis_time: genesis,
            transition_time: genesis,
            genesis_seed: Vec::new(),
            scheme,
            beacon_id: "default".into(),
            nodes: pairs
                .iter()
                .enumerate()
                .map(|(i, p)| GroupNode {
                    index: i as u32,
                    address: p.identity().address.clone(),
                    key: p.identity().key,
                    signature: Some(p.identity().signature),
                })
                .collect(),
            public_key: public.clone(),
        };
        group.genesis_seed = group.hash().to_vec();
        for (i, node) in nodes.iter().enumerate() {
            let store = KeyStore::new(&node.dir);
            store.save_group(&group).expect("group");
            store
                .save_share(&Share {
                    share: poly.eval(i as u32),
                    commits: public.clone(),
                    scheme,
                })
                .expect("share");
        }
        TestNet {
            _root: root,
            _turn: turn,
            nodes,
            operator: None,
        }
    }

    pub fn start(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "node {i} already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_beacon-node"));
        command.arg("start");
        if let Some(op) = &self.operator {
            command
                .arg("--operator-listen")
                .arg(node.operator.to_string())
                .arg("--operator-ca")
                .arg(&op.ca_file);
        }
        let child = command
            .arg("--dir")
            .arg(&node.dir)
            .arg("--peer-listen")
            .arg(node.peer.to_string())
            .arg("--public-listen")
            .arg(node.http.to_string())
            .arg("--control-listen")
            .arg(node.control.to_string())
            .args(["--log-format", "json", "--tls-reload-seconds", "1"])
            .env("RUST_LOG", "info,beacon_node::dkg=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn beacon-node");
        node.child = Some(child);
        node.restarts += 1;
    }

    pub fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
    }

    /// SIGTERM, then wait for the process to exit (it closes its store cleanly). Falls back to
    /// kill -9 after 20 s.
    pub fn stop(&mut self, i: usize) {
        let Some(mut c) = self.nodes[i].child.take() else {
            return;
        };
        if let Ok(pid) = libc::pid_t::try_from(c.id()) {
            // SAFETY: kill(2) on our own child's pid, which has not been waited for yet.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        panic!("node {i} did not stop within 20 s of SIGTERM");
    }

    /// The chain store file of node `i`.
    pub fn store_path(&self, i: usize) -> PathBuf {
        self.nodes[i].dir.join("db").join("chain.redb")
    }

    /// kill -9
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs `beacon-node <args> --control <node i's control address>`: (exit code, stdout,
    /// stderr).
    pub fn ctl(&self, i: usize, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_beacon-node"))
            .args(args)
            .arg("--control")
            .arg(self.nodes[i].control.to_string())
            .output()
            .expect("run beacon-node");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Like [`TestNet::ctl`], and the command must succeed.
    pub fn ctl_ok(&self, i: usize, args: &[&str]) -> String {
        let (code, out, err) = self.ctl(i, args);
        assert_eq!(code, 0, "beacon-node {args:?} on node {i}: {out}{err}");
        out
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    pub fn info(&self, i: usize) -> ChainInfo {
        let (status, body) = http_get(self.nodes[i].http, "/info");
        assert_eq!(status, 200, "{body}");
        ChainInfo::from_json(&body).expect("node serves valid chain info")
    }

    /// The latest round a node serves, 0 when none or unreachable.
    pub fn latest(&self, i: usize) -> u64 {
        match try_http_get(self.nodes[i].http, "/public/latest") {
            Some((200, body)) => serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["round"].as_u64())
                .unwrap_or(0),
            _ => 0,
        }
    }

    pub fn beacon(&self, i: usize, round: u64) -> Option<PublishedBeacon> {
        match try_http_get(self.nodes[i].http, &format!("/public/{round}")) {
            Some((200, body)) => {
                let v: serde_json::Value = serde_json::from_str(&body).ok()?;
                PublishedBeacon::from_value(&v).ok()
            }
            _ => None,
        }
    }

    pub fn wait_until(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let logs: Vec<String> = (0..self.nodes.len())
            .map(|i| {
                let l = self.log(i);
                let tail: Vec<&str> = l.lines().rev().take(15).collect();
                format!(
                    "--- node {i} (latest {})\n{}",
                    self.latest(i),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect();
        panic!(
            "timed out after {timeout:?} waiting for {what}\n{}",
            logs.join("\n")
        );
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

pub fn try_http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    // Chunked bodies (axum streams some): good enough to take the JSON between the sizes.
    let body = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body
    };
    Some((status, body))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    try_http_get(addr, path).unwrap_or_else(|| panic!("GET http://{addr}{path} failed"))
}

pub fn metrics(addr: SocketAddr) -> String {
    http_get(addr, "/metrics").1
}

/// The sum of a metric's samples whose labels contain `label` (all samples if empty).
pub fn metric_sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && (label.is_empty() || l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
