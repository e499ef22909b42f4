//! A beacon network whose members are drand nodes, our nodes, or both, and its ceremonies:
//! the first one and resharings, led by either implementation, each step through the
//! leader's and the members' own CLIs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use beacon_core::chain::ChainInfo;
use beacon_node::net::pki::TestCa;

use super::drand::{self, DrandNode};
use super::ours::{self, OurNode};
use super::tools::GoTools;
use super::{http, memory_kib};
use crate::error::{Error, Result};

/// Which implementation a member runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Drand,
    Ours,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Drand => "drand",
            Kind::Ours => "ours",
        })
    }
}

// A handful per network, each a whole process: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Member {
    Drand(DrandNode),
    Ours(OurNode),
}

impl Member {
    pub fn kind(&self) -> Kind {
        match self {
            Member::Drand(_) => Kind::Drand,
            Member::Ours(_) => Kind::Ours,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Member::Drand(d) => &d.name,
            Member::Ours(o) => &o.name,
        }
    }

    /// The peer address (group files, proposals).
    pub fn address(&self) -> String {
        match self {
            Member::Drand(d) => d.address.to_string(),
            Member::Ours(o) => o.address.to_string(),
        }
    }

    /// The public HTTP API.
    pub fn http(&self) -> SocketAddr {
        match self {
            Member::Drand(d) => d.http,
            Member::Ours(o) => o.http,
        }
    }

    pub fn log(&self) -> &Path {
        match self {
            Member::Drand(d) => d.log(),
            Member::Ours(o) => o.log(),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        match self {
            Member::Drand(d) => d.pid(),
            Member::Ours(o) => o.pid(),
        }
    }

    pub fn group_file(&self) -> PathBuf {
        match self {
            Member::Drand(d) => d.group_file(),
            Member::Ours(o) => o.group_file(),
        }
    }

    pub fn start(&mut self, runtime: &tokio::runtime::Handle) -> Result<()> {
        match self {
            Member::Drand(d) => d.start(runtime),
            Member::Ours(o) => o.start(),
        }
    }

    pub fn stop(&mut self) {
        match self {
            Member::Drand(d) => d.stop(),
            Member::Ours(o) => o.stop(),
        }
    }

    /// (state, epoch) of the current ceremony as the member reports it.
    pub fn dkg_state(&self) -> Option<(String, u32)> {
        match self {
            Member::Drand(d) => d.dkg_state().map(|s| (s.state, s.epoch)),
            Member::Ours(o) => o.dkg_state().map(|s| (s.state, s.epoch)),
        }
    }

    fn wait_state(&self, state: &str, epoch: u32, within: Duration) -> Result<()> {
        match self {
            Member::Drand(d) => drand::wait_dkg_state(d, state, epoch, within),
            Member::Ours(o) => ours::wait_dkg_state(o, state, epoch, within),
        }
    }

    /// Accepts the proposal as a joiner (`previous_group` for a resharing's joiner).
    fn join(&self, previous_group: Option<&Path>) -> Result<()> {
        match self {
            Member::Drand(d) => d.dkg_join(previous_group),
            Member::Ours(o) => {
                let group = previous_group.map(|p| p.display().to_string());
                let mut args = vec!["join"];
                if let Some(g) = &group {
                    args.extend(["--group", g]);
                }
                o.dkg(&args).map(|_| ())
            }
        }
    }

    /// Accepts the proposal as a remainer.
    fn accept(&self) -> Result<()> {
        match self {
            Member::Drand(d) => d.dkg_accept(),
            Member::Ours(o) => o.dkg(&["accept"]).map(|_| ()),
        }
    }

    /// Resident and peak memory (KiB) of the member's process.
    pub fn memory_kib(&self) -> Option<(u64, u64)> {
        memory_kib(self.pid()?)
    }
}

/// The terms of a ceremony.
#[derive(Clone, Debug)]
pub struct Ceremony {
    /// The member that proposes and executes.
    pub leader: usize,
    pub joining: Vec<usize>,
    pub remaining: Vec<usize>,
    pub leaving: Vec<usize>,
    pub threshold: usize,
    /// First ceremony only.
    pub period_seconds: u32,
    /// First ceremony only: genesis = proposal time + this.
    pub genesis_delay: Duration,
}

/// How long the phases of a ceremony took, as seen from the harness.
#[derive(Clone, Copy, Debug)]
pub struct CeremonyTimes {
    /// From the leader's proposal command to every member having answered.
    pub answered: Duration,
    /// From the leader's execute command until every member reported Complete (includes
    /// the 5 s kickoff grace both implementations give before the first deal).
    pub executed: Duration,
}

/// How long the proposal stays open (both implementations time the ceremony out after it).
const WINDOW: Duration = Duration::from_secs(600);

pub struct Network {
    root: tempfile::TempDir,
    ca: TestCa,
    ca_file: PathBuf,
    runtime: tokio::runtime::Runtime,
    pub scheme: String,
    pub tools: GoTools,
    pub node_binary: PathBuf,
    pub members: Vec<Member>,
    epoch: u32,
}

impl Network {
    /// Members of the given kinds (created, not started), all with certificates from one CA.
    pub fn new(
        kinds: &[Kind],
        scheme: &str,
        tools: GoTools,
        node_binary: PathBuf,
    ) -> Result<Network> {
        let root = tempfile::Builder::new()
            .prefix("beacon-interop-")
            .tempdir()
            .map_err(Error::io(
                "cannot create a temporary folder",
                std::env::temp_dir(),
            ))?;
        let ca =
            TestCa::new("interop test CA").map_err(|e| Error::Invalid(format!("test CA: {e}")))?;
        let ca_file = root.path().join("ca.crt");
        std::fs::write(&ca_file, ca.ca_pem())
            .map_err(Error::io("cannot write the CA", &ca_file))?;
        // The TLS terminators in front of drand's plaintext listeners.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("interop-tls-front")
            .enable_all()
            .build()
            .map_err(|e| Error::Invalid(format!("cannot start the async runtime: {e}")))?;
        let mut net = Network {
            root,
            ca,
            ca_file,
            runtime,
            scheme: scheme.to_owned(),
            tools,
            node_binary,
            members: Vec::new(),
            epoch: 0,
        };
        for &kind in kinds {
            net.add(kind)?;
        }
        Ok(net)
    }

    /// Adds a member (not started); its index.
    pub fn add(&mut self, kind: Kind) -> Result<usize> {
        let i = self.members.len();
        let name = format!("{kind}{i}");
        let member = match kind {
            Kind::Drand => Member::Drand(DrandNode::create(
                self.root.path(),
                &name,
                &self.scheme,
                &self.ca,
                &self.ca_file,
                &self.tools.drand,
            )?),
            Kind::Ours => Member::Ours(OurNode::create(
                self.root.path(),
                &name,
                &self.scheme,
                &self.ca,
                &self.node_binary,
            )?),
        };
        self.members.push(member);
        Ok(i)
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The network's CA certificate (PEM file): the only trust root of every member.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    pub fn runtime(&self) -> &tokio::runtime::Handle {
        self.runtime.handle()
    }

    /// The epoch of the last completed ceremony (0 before the first).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    pub fn start(&mut self, i: usize) -> Result<()> {
        let handle = self.runtime.handle().clone();
        self.members[i].start(&handle)
    }

    pub fn start_all(&mut self) -> Result<()> {
        for i in 0..self.members.len() {
            self.start(i)?;
        }
        Ok(())
    }

    pub fn stop(&mut self, i: usize) {
        self.members[i].stop();
    }

    fn addresses(&self, list: &[usize]) -> Vec<String> {
        list.iter().map(|&i| self.members[i].address()).collect()
    }

    /// Runs a ceremony to completion on every joiner and remainer: proposal by the leader,
    /// each member's answer through its own CLI once the proposal reached it, execution.
    /// For a resharing, joiners get the previous group file from a remainer.
    pub fn ceremony(&mut self, c: &Ceremony) -> Result<CeremonyTimes> {
        let epoch = self.epoch + 1;
        let proposed = Instant::now();
        let initial = epoch == 1;
        let leader = &self.members[c.leader];
        let joining = self.addresses(&c.joining);
        let remaining = self.addresses(&c.remaining);
        let leaving = self.addresses(&c.leaving);
        match leader {
            Member::Drand(d) => {
                let proposal = self.root.path().join(format!("proposal-{epoch}.toml"));
                d.generate_proposal(&joining, &remaining, &leaving, &proposal)?;
                if initial {
                    d.dkg_init(
                        &proposal,
                        c.threshold,
                        c.period_seconds,
                        c.genesis_delay,
                        WINDOW,
                    )?;
                } else {
                    d.dkg_reshare(&proposal, c.threshold, WINDOW)?;
                }
            }
            Member::Ours(o) => {
                let threshold = c.threshold.to_string();
                let window = format!("{}s", WINDOW.as_secs());
                let mut args = vec!["propose", "--threshold", &threshold, "--window", &window];
                let (j, r, l) = (joining.join(","), remaining.join(","), leaving.join(","));
                let period = format!("{}s", c.period_seconds);
                let delay = format!("{}s", c.genesis_delay.as_secs());
                args.extend(["--joining", &j]);
                if initial {
                    args.extend(["--period", &period, "--genesis-delay", &delay]);
                } else {
                    args.extend(["--remaining", &r]);
                    if !l.is_empty() {
                        args.extend(["--leaving", &l]);
                    }
                }
                o.dkg(&args)?;
            }
        }
        // A resharing's joiners need the previous group; any remainer has it.
        let previous_group = if initial {
            None
        } else {
            let from = c
                .remaining
                .iter()
                .find(|&&i| i != c.leader)
                .copied()
                .unwrap_or(c.leader);
            let src = self.members[from].group_file();
            let dst = self
                .root
                .path()
                .join(format!("group-epoch-{}.toml", epoch - 1));
            std::fs::copy(&src, &dst).map_err(Error::io("cannot copy the previous group", &src))?;
            Some(dst)
        };
        let answer_within = Duration::from_secs(60);
        for &i in c.joining.iter().chain(&c.remaining) {
            if i == c.leader {
                continue;
            }
            let m = &self.members[i];
            m.wait_state("Proposed", epoch, answer_within)?;
            if c.joining.contains(&i) {
                m.join(previous_group.as_deref())?;
            } else {
                m.accept()?;
            }
        }
        for &i in c.joining.iter().chain(&c.remaining) {
            if i == c.leader {
                continue;
            }
            let expected = if c.joining.contains(&i) {
                "Joined"
            } else {
                "Accepted"
            };
            self.members[i].wait_state(expected, epoch, answer_within)?;
        }
        if let Member::Ours(o) = &self.members[c.leader] {
            // Our leader records every remainer's answer; execute once it has them all
            // (drand's joiners send nothing, so their joins cannot be seen from here).
            let start = Instant::now();
            loop {
                let answered = o.dkg_status().is_some_and(|doc| {
                    doc.current
                        .members
                        .iter()
                        .filter(|m| m.role == "remaining" && !m.me)
                        .all(|m| m.answer == "accepted")
                });
                if answered || start.elapsed() > answer_within {
                    break;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        let answered = proposed.elapsed();
        let executed = Instant::now();
        match &self.members[c.leader] {
            Member::Drand(d) => d.dkg_execute()?,
            Member::Ours(o) => {
                o.dkg(&["execute"])?;
            }
        }
        let done_within = Duration::from_secs(120);
        for &i in c.joining.iter().chain(&c.remaining) {
            self.members[i].wait_state("Complete", epoch, done_within)?;
        }
        let executed = executed.elapsed();
        self.epoch = epoch;
        Ok(CeremonyTimes { answered, executed })
    }

    /// The chain info member `i` serves.
    pub fn info(&self, i: usize) -> Result<ChainInfo> {
        http::info(self.members[i].http()).ok_or_else(|| {
            Error::Invalid(format!(
                "{} serves no valid /info (log {})",
                self.members[i].name(),
                self.members[i].log().display()
            ))
        })
    }

    pub fn latest(&self, i: usize) -> u64 {
        http::latest_round(self.members[i].http())
    }

    /// Waits until every member in `which` serves round `round` or later.
    pub fn wait_round(&self, which: &[usize], round: u64, within: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            let behind: Vec<String> = which
                .iter()
                .filter(|&&i| self.latest(i) < round)
                .map(|&i| format!("{} at {}", self.members[i].name(), self.latest(i)))
                .collect();
            if behind.is_empty() {
                return Ok(());
            }
            if start.elapsed() > within {
                return Err(Error::Timeout {
                    what: format!(
                        "round {round} on every member (behind: {}); logs under {}",
                        behind.join(", "),
                        self.root.path().display()
                    ),
                    seconds: within.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The last lines of every member's log, for failure messages.
    pub fn log_tails(&self, lines: usize) -> String {
        self.members
            .iter()
            .map(|m| {
                format!(
                    "--- {} ({}), latest {}\n{}",
                    m.name(),
                    m.address(),
                    http::latest_round(m.http()),
                    crate::error::log_tail(m.log(), lines)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Keeps the folder (logs, keys, stores) instead of deleting it, and returns its path.
    pub fn keep(self) -> PathBuf {
        let Network { root, members, .. } = self;
        drop(members);
        root.keep()
    }
}
