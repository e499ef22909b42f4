//! `beacon-node testnet`: a whole local network in one command. Keys, a throwaway CA and
//! certificates, N node processes on 127.0.0.1, the first ceremony through the control API,
//! then every new beacon printed until Ctrl-C, when every node is stopped cleanly.
//!
//! `DIR/testnet-config.json` records the network when it is created, so that running the
//! command again on the same DIR restarts the same network with its keys and chain;
//! `DIR/testnet.json` (chain hash, and per node its URLs, addresses, pid and folder) is written
//! once the first beacon exists.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use beacon_core::crypto::Scheme;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::keys::{minimum_threshold, KeyPair, KeyStore};
use crate::net::pki::TestCa;
use crate::net::proto::control::command_request::Command as Cmd;
use crate::net::proto::control::{CommandRequest, Execute, InitialProposal, Join, StatusRequest};

use super::dkg::control_client;
use super::EXIT_BAD_INPUT;

const CONFIG_FILE: &str = "testnet-config.json";
const CONFIG_VERSION: u32 = 1;

#[derive(Debug, clap::Args)]
pub struct TestnetArgs {
    /// Number of nodes.
    #[arg(long, default_value = "4")]
    pub nodes: usize,
    /// Signatures needed for a beacon (default: a majority, floor(n/2)+1).
    #[arg(long)]
    pub threshold: Option<usize>,
    /// Seconds between beacons.
    #[arg(long, default_value = "3", value_name = "SECONDS")]
    pub period: u32,
    #[arg(long, default_value = "bls-unchained-g1-rfc9380")]
    pub scheme: String,
    /// The network's folder: created when missing; an existing testnet folder is restarted.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Config {
    format_version: u32,
    threshold: usize,
    period: u32,
    scheme: String,
    nodes: Vec<NodeConfig>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct NodeConfig {
    name: String,
    dir: PathBuf,
    peer: SocketAddr,
    http: SocketAddr,
    control: SocketAddr,
}

#[derive(Debug, Serialize, Deserialize)]
struct Running {
    chain_hash: String,
    nodes: Vec<RunningNode>,
}

#[derive(Debug, Serialize, Deserialize)]
struct RunningNode {
    name: String,
    url: String,
    peer: String,
    control: String,
    pid: u32,
    dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
enum TestnetError {
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Failed(String),
}

fn input(s: impl Into<String>) -> TestnetError {
    TestnetError::Input(s.into())
}

fn failed(s: impl Into<String>) -> TestnetError {
    TestnetError::Failed(s.into())
}

fn free_port() -> Result<u16, TestnetError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| failed(format!("cannot find a free port on 127.0.0.1: {e}")))
}

fn create(args: &TestnetArgs) -> Result<Config, TestnetError> {
    let scheme: Scheme = args
        .scheme
        .parse()
        .map_err(|e| input(format!("--scheme: {e}")))?;
    scheme
        .ensure_can_sign()
        .map_err(|e| input(format!("--scheme: {e}")))?;
    if args.nodes == 0 || args.nodes > 64 {
        return Err(input("--nodes: between 1 and 64"));
    }
    let threshold = args.threshold.unwrap_or(minimum_threshold(args.nodes));
    if threshold < minimum_threshold(args.nodes) || threshold > args.nodes {
        return Err(input(format!(
            "--threshold {threshold}: must be between {} (a majority) and {} (--nodes)",
            minimum_threshold(args.nodes),
            args.nodes
        )));
    }
    if args.period == 0 {
        return Err(input("--period: at least 1 second"));
    }
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| input(format!("--dir {}: {e}", args.dir.display())))?;
    let ca = TestCa::new("beacon-node testnet CA (throwaway)")
        .map_err(|e| failed(format!("cannot make the test CA: {e}")))?;
    let mut nodes = Vec::new();
    for i in 0..args.nodes {
        let name = format!("node{i}");
        let dir = args.dir.join(&name);
        let peer: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let http: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let control: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let pair = KeyPair::generate(scheme, &peer.to_string(), &mut rand::rngs::OsRng)
            .map_err(|e| failed(e.to_string()))?;
        KeyStore::new(&dir)
            .save_new_pair(&pair)
            .map_err(|e| failed(e.to_string()))?;
        ca.write_tls_dir(&dir.join("tls"), &["127.0.0.1".to_owned()])
            .map_err(|e| failed(format!("cannot write certificates: {e}")))?;
        nodes.push(NodeConfig {
            name,
            dir,
            peer,
            http,
            control,
        });
    }
    let config = Config {
        format_version: CONFIG_VERSION,
        threshold,
        period: args.period,
        scheme: scheme.id().to_owned(),
        nodes,
    };
    let json = serde_json::to_vec_pretty(&config).map_err(|e| failed(e.to_string()))?;
    std::fs::write(args.dir.join(CONFIG_FILE), json)
        .map_err(|e| failed(format!("cannot write {CONFIG_FILE}: {e}")))?;
    Ok(config)
}

fn load_or_create(args: &TestnetArgs) -> Result<(Config, bool), TestnetError> {
    let path = args.dir.join(CONFIG_FILE);
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| input(format!("{}: {e}", path.display())))?;
        let config: Config = serde_json::from_str(&text).map_err(|e| {
            input(format!(
                "{}: not a testnet of this version ({e}); use another --dir",
                path.display()
            ))
        })?;
        if config.format_version != CONFIG_VERSION {
            return Err(input(format!(
                "{}: format {} is not {CONFIG_VERSION}; use another --dir",
                path.display(),
                config.format_version
            )));
        }
        return Ok((config, true));
    }
    let holds_something = std::fs::read_dir(&args.dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if holds_something {
        return Err(input(format!(
            "--dir {}: the folder holds something other than a testnet (no {CONFIG_FILE}); give an empty or new folder",
            args.dir.display()
        )));
    }
    Ok((create(args)?, false))
}

/// Every node's ports must be free before anything starts.
fn check_ports(config: &Config) -> Result<(), TestnetError> {
    for n in &config.nodes {
        for (what, addr) in [("peer", n.peer), ("HTTP", n.http), ("control", n.control)] {
            TcpListener::bind(addr).map_err(|e| {
                input(format!(
                    "{}'s {what} port {addr} is taken ({e}); is this testnet already running, or another program using the port?",
                    n.name
                ))
            })?;
        }
    }
    Ok(())
}

/// The node processes; stopped (SIGTERM, then SIGKILL after 10 s) when dropped.
struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            #[cfg(unix)]
            if let Ok(pid) = i32::try_from(c.id()) {
                // SAFETY: kill(2) on our own child's pid has no memory effects.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for c in &mut self.0 {
            loop {
                match c.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    }
}

fn spawn(config: &Config) -> Result<Nodes, TestnetError> {
    let exe = std::env::current_exe()
        .map_err(|e| failed(format!("cannot find this program's path: {e}")))?;
    let mut nodes = Nodes(Vec::new());
    for n in &config.nodes {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(n.dir.join("node.log"))
            .map_err(|e| failed(format!("{}: {e}", n.dir.display())))?;
        let child = Command::new(&exe)
            .arg("start")
            .arg("--dir")
            .arg(&n.dir)
            .args(["--peer-listen", &n.peer.to_string()])
            .args(["--public-listen", &n.http.to_string()])
            .args(["--control-listen", &n.control.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| failed(format!("cannot start {}: {e}", n.name)))?;
        nodes.0.push(child);
    }
    Ok(nodes)
}

async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((code, body))
}

async fn wait_for<F, Fut>(what: &str, within: Duration, mut f: F) -> Result<(), TestnetError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < within {
        if f().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(failed(format!(
        "timed out after {within:?} waiting for {what}; see the node.log files"
    )))
}

async fn dkg_state(control: SocketAddr) -> Option<(String, u64)> {
    let mut c = control_client(control).await.ok()?;
    let reply = c.dkg_status(StatusRequest {}).await.ok()?.into_inner();
    let v: serde_json::Value = serde_json::from_str(&reply.json).ok()?;
    Some((
        v["current"]["state"].as_str()?.to_owned(),
        v["current"]["epoch"].as_u64()?,
    ))
}

async fn command(control: SocketAddr, cmd: Cmd) -> Result<(), TestnetError> {
    let mut c = control_client(control)
        .await
        .map_err(|e| failed(e.to_string()))?;
    c.command(CommandRequest { command: Some(cmd) })
        .await
        .map_err(|s| failed(format!("{control}: {}", s.message())))?;
    Ok(())
}

async fn ceremony(config: &Config) -> Result<(), TestnetError> {
    let leader = &config.nodes[0];
    let genesis_delay = 10 + 2 * config.period;
    println!(
        "running the first ceremony: {} nodes, threshold {}, period {}s, {}",
        config.nodes.len(),
        config.threshold,
        config.period,
        config.scheme
    );
    command(
        leader.control,
        Cmd::Initial(InitialProposal {
            joining: config.nodes.iter().map(|n| n.peer.to_string()).collect(),
            threshold: u32::try_from(config.threshold).unwrap_or(u32::MAX),
            period_seconds: config.period,
            scheme: config.scheme.clone(),
            catchup_period_seconds: (config.period / 2).max(1),
            genesis_delay_seconds: genesis_delay,
            window_seconds: 3600,
        }),
    )
    .await?;
    for n in &config.nodes[1..] {
        wait_for(
            "the proposal to reach every node",
            Duration::from_secs(60),
            || async { dkg_state(n.control).await.map(|s| s.0) == Some("Proposed".into()) },
        )
        .await?;
        command(n.control, Cmd::Join(Join::default())).await?;
    }
    command(leader.control, Cmd::Execute(Execute {})).await?;
    for n in &config.nodes {
        wait_for(
            "the ceremony to complete",
            Duration::from_secs(120),
            || async { dkg_state(n.control).await == Some(("Complete".into(), 1)) },
        )
        .await?;
    }
    println!("ceremony complete; the first beacon comes at genesis");
    Ok(())
}

async fn latest(http: SocketAddr) -> Option<serde_json::Value> {
    match http_get(http, "/public/latest").await {
        Some((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

async fn run_async(args: &TestnetArgs) -> Result<(), TestnetError> {
    let (config, existing) = load_or_create(args)?;
    if existing {
        println!("restarting the testnet in {}", args.dir.display());
    }
    check_ports(&config)?;
    let nodes = spawn(&config)?;
    for n in &config.nodes {
        wait_for(
            &format!("{}'s control API", n.name),
            Duration::from_secs(30),
            || async { control_client(n.control).await.is_ok() },
        )
        .await?;
    }
    let has_group = config
        .nodes
        .iter()
        .all(|n| KeyStore::new(&n.dir).group_path().exists());
    if !has_group {
        ceremony(&config).await?;
    }
    let first = &config.nodes[0];
    let wait = Duration::from_secs(60 + 3 * u64::from(config.period));
    wait_for("the first beacon", wait, || async {
        latest(first.http).await.is_some()
    })
    .await?;
    let info = http_get(first.http, "/info")
        .await
        .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
        .ok_or_else(|| failed("node0 serves no /info"))?;
    let chain_hash = info["hash"].as_str().unwrap_or_default().to_owned();
    let running = Running {
        chain_hash: chain_hash.clone(),
        nodes: config
            .nodes
            .iter()
            .zip(&nodes.0)
            .map(|(n, c)| RunningNode {
                name: n.name.clone(),
                url: format!("http://{}", n.http),
                peer: n.peer.to_string(),
                control: n.control.to_string(),
                pid: c.id(),
                dir: n.dir.clone(),
            })
            .collect(),
    };
    let json = serde_json::to_vec_pretty(&running).map_err(|e| failed(e.to_string()))?;
    let out = args.dir.join("testnet.json");
    std::fs::write(&out, json).map_err(|e| failed(format!("{}: {e}", out.display())))?;
    println!("chain {chain_hash}");
    println!(
        "beacons: http://{}/public/latest   (details: {})",
        first.http,
        out.display()
    );
    print_beacons(&config).await;
    println!("stopping {} nodes", config.nodes.len());
    drop(nodes);
    Ok(())
}

/// Prints each new beacon until Ctrl-C or SIGTERM.
async fn print_beacons(config: &Config) {
    let first = &config.nodes[0];
    let mut last = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {
                if let Some(b) = latest(first.http).await {
                    let round = b["round"].as_u64().unwrap_or(0);
                    if round > last {
                        last = round;
                        println!("round {round} randomness {}", b["randomness"].as_str().unwrap_or(""));
                    }
                }
            }
        }
    }
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

pub fn run(args: &TestnetArgs) -> ExitCode {
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| failed(format!("cannot start the async runtime: {e}")))
        .and_then(|rt| rt.block_on(run_async(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                TestnetError::Input(_) => ExitCode::from(EXIT_BAD_INPUT),
                TestnetError::Failed(_) => ExitCode::from(1),
            }
        }
    }
}
