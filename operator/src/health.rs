//! The background health collector (design.md, section 5): one task per network polls each
//! local member's `/health` every period (and its control status, for the version, less
//! often) and caches what it saw. Reconciles read the cache and never wait on a node.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use crate::control::client::{Clients, Endpoint};

/// `namespace/name` of a network.
pub type NetworkKey = (String, String);

/// One member to poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub member: String,
    /// `http://host:8080`.
    pub http_base: String,
    /// Its control listener (for the version), when the operator can reach it.
    pub control: Option<Endpoint>,
    /// Which run of the member this is (pod uid and container restarts): a new one restarts
    /// the poll task, whose first poll asks for the version again (a restarted member may
    /// run another build).
    pub incarnation: String,
    /// Its pod runs (phase Running). A member whose pod does not is not asked anything: its
    /// name does not resolve yet, and with many such members the lookups (each on a thread
    /// of the blocking pool, outliving the request's timeout) piled up to 155 threads.
    pub running: bool,
}

/// What one poll of a member found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberHealth {
    /// When this was observed.
    pub at: Option<SystemTime>,
    /// The HTTP API answered.
    pub reachable: bool,
    /// Its latest round (`/health` `current`); None without a chain.
    pub round: Option<u64>,
    /// The round its clock expects (`/health` `expected`); None without a chain.
    pub expected: Option<u64>,
    /// `/health` said 200 (latest is expected or expected - 1).
    pub following: bool,
    /// The version its control API reports.
    pub version: Option<String>,
    /// Its chain hash (hex), from `/info`.
    pub chain_hash: Option<String>,
    /// Why the last poll failed or what it said.
    pub error: Option<String>,
}

impl MemberHealth {
    /// Rounds behind its own expected round.
    pub fn lag(&self) -> Option<u64> {
        Some(self.expected?.saturating_sub(self.round?))
    }
}

struct Entry {
    targets: Vec<Target>,
    period: Duration,
    seen: Arc<Mutex<BTreeMap<String, MemberHealth>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The cache, shared by the controllers.
#[derive(Clone)]
pub struct HealthCache {
    entries: Arc<Mutex<HashMap<NetworkKey, Entry>>>,
    controls: Clients,
    http: Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
}

/// How long one HTTP request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(3);
/// The version is asked for every this many polls (it changes only with a restart).
const VERSION_EVERY: u32 = 10;

#[derive(Deserialize)]
struct HealthDoc {
    current: u64,
    expected: u64,
}

#[derive(Deserialize)]
struct InfoDoc {
    hash: String,
}

impl HealthCache {
    pub fn new(controls: Clients) -> HealthCache {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_connect_timeout(Some(HTTP_TIMEOUT));
        connector.set_nodelay(true);
        HealthCache {
            entries: Arc::new(Mutex::new(HashMap::new())),
            controls,
            http: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// Polls `targets` of `key` every `period` from now on (restarting the task when they
    /// changed; a no-op otherwise).
    pub fn watch(&self, key: NetworkKey, targets: Vec<Target>, period: Duration) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = entries.get(&key) {
            if e.targets == targets && e.period == period {
                return;
            }
        }
        let seen = entries
            .get(&key)
            .map(|e| e.seen.clone())
            .unwrap_or_default();
        // Forget members that left.
        {
            let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
            s.retain(|m, _| targets.iter().any(|t| &t.member == m));
        }
        let task = tokio::spawn(poll_loop(
            self.clone(),
            targets.clone(),
            period,
            seen.clone(),
        ));
        entries.insert(
            key,
            Entry {
                targets,
                period,
                seen,
                task,
            },
        );
    }

    /// Stops polling a deleted network.
    pub fn forget(&self, key: &NetworkKey) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// What was last seen of each member of `key`.
    pub fn snapshot(&self, key: &NetworkKey) -> BTreeMap<String, MemberHealth> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .map(|e| e.seen.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .unwrap_or_default()
    }

    /// Number of networks being watched.
    pub fn watched(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    async fn get(&self, url: &str) -> Result<(u16, Bytes), String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let call = async {
            let response = self
                .http
                .get(uri)
                .await
                .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("GET {url}: reading the body: {e}"))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(HTTP_TIMEOUT, call)
            .await
            .map_err(|_| format!("GET {url}: no answer within {HTTP_TIMEOUT:?}"))?
    }

    /// One poll of one member.
    async fn poll(
        &self,
        target: &Target,
        previous: &MemberHealth,
        ask_version: bool,
    ) -> MemberHealth {
        let mut h = MemberHealth {
            at: Some(SystemTime::now()),
            version: previous.version.clone(),
            chain_hash: previous.chain_hash.clone(),
            ..MemberHealth::default()
        };
        if !target.running {
            h.error = Some("its pod is not running".into());
            return h;
        }
        match self.get(&format!("{}/health", target.http_base)).await {
            Err(e) => {
                h.error = Some(e);
                return h;
            }
            Ok((status, body)) => {
                h.reachable = true;
                match serde_json::from_slice::<HealthDoc>(&body) {
                    // A node without a chain answers 503 with expected 0.
                    Ok(doc) if doc.expected > 0 => {
                        h.round = Some(doc.current);
                        h.expected = Some(doc.expected);
                        h.following = status == 200;
                    }
                    Ok(_) => h.error = Some("no chain yet (waiting for its first ceremony)".into()),
                    Err(e) => h.error = Some(format!("/health: {e}")),
                }
            }
        }
        if h.round.is_some() && h.chain_hash.is_none() {
            if let Ok((200, body)) = self.get(&format!("{}/info", target.http_base)).await {
                h.chain_hash = serde_json::from_slice::<InfoDoc>(&body)
                    .ok()
                    .map(|i| i.hash);
            }
        }
        if let Some(ep) = &target.control {
            if ask_version || h.version.is_none() {
                match self.controls.node_status(ep).await {
                    // The build's version (what an upgrade changes); the protocol version from a
                    // node that predates the field.
                    Ok(doc) if !doc.build.is_empty() => h.version = Some(doc.build),
                    Ok(doc) => h.version = Some(doc.version),
                    Err(e) => {
                        if h.error.is_none() {
                            h.error = Some(format!("control: {e}"));
                        }
                    }
                }
            }
        }
        h
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn poll_loop(
    cache: HealthCache,
    targets: Vec<Target>,
    period: Duration,
    seen: Arc<Mutex<BTreeMap<String, MemberHealth>>>,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u32 = 0;
    loop {
        tick.tick().await;
        let ask_version = n.is_multiple_of(VERSION_EVERY);
        n = n.wrapping_add(1);
        let polls = targets.iter().map(|t| {
            let previous = seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&t.member)
                .cloned()
                .unwrap_or_default();
            let cache = cache.clone();
            async move {
                (
                    t.member.clone(),
                    cache.poll(t, &previous, ask_version).await,
                )
            }
        });
        let results = futures::future::join_all(polls).await;
        let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
        for (member, health) in results {
            s.insert(member, health);
        }
    }
}
