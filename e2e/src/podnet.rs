//! The pod network of a test control plane: a Linux bridge with a /24 of its own on the host,
//! and one network namespace per pod, joined to the bridge by a veth pair.
//!
//! - The subnet `10.X.Y.0/24` is picked at random among those no interface or route of the
//!   host uses, and locked with `flock` (`/run/beacon-e2e/subnet-10.X.Y.lock`) for as long as
//!   the network lives, so parallel test processes never share one. The host holds `.1` on the
//!   bridge (kube-apiserver binds there); pods get `.2` to `.254`.
//! - A pod's namespace has `lo` up (its own loopback, as in a cluster) and `eth0` with the pod
//!   IP. There is no default route and the host does not forward (`ip_forward` is left as it
//!   is): a pod reaches the bridge's /24 and nothing else, so no pod traffic can leave this
//!   machine.
//! - Names carry the owning process's pid (base 36): bridge `bkb<pid>-<n>`, namespaces
//!   `bkn<pid>-<n>`, host-side veths `bkv<pid>-<n>`. A harness killed with SIGKILL cannot
//!   remove its network, so every start first removes the leftovers of dead pids
//!   ([`remove_leftovers`]); drop removes ours.
//!
//! Everything is done with iproute2's `ip`, which must be installed (root, CAP_NET_ADMIN).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::lock::FileLock;

/// Where subnet locks live (shared by every harness process on the machine).
const LOCK_DIR: &str = "/run/beacon-e2e";
const NETNS_DIR: &str = "/run/netns";

/// Every bridge, namespace and veth of this process gets a new number.
static NEXT_NAME: AtomicU64 = AtomicU64::new(0);

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

fn name(kind: char, seq: u64) -> String {
    format!(
        "bk{kind}{}-{}",
        base36(u64::from(std::process::id())),
        base36(seq)
    )
}

fn next_name(kind: char) -> String {
    name(kind, NEXT_NAME.fetch_add(1, Ordering::Relaxed))
}

/// The pid an object of ours was created by, from its name (`bk?<pid base 36>-<n>`).
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("bk")?;
    let mut chars = rest.chars();
    if !matches!(chars.next(), Some('b' | 'n' | 'v')) {
        return None;
    }
    let (pid, seq) = chars.as_str().split_once('-')?;
    if pid.is_empty() || seq.is_empty() || !seq.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    u32::from_str_radix(pid, 36).ok()
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Runs `ip args…`; the error names the command and what `ip` said.
pub fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip").args(args).output().map_err(|e| {
        Error::Network(format!(
            "cannot run `ip {}`: {e}; the pod network needs iproute2 (`apt-get install \
             iproute2`)",
            args.join(" ")
        ))
    })?;
    if !out.status.success() {
        return Err(Error::Network(format!(
            "`ip {}` failed ({}): {}; the pod network needs root with CAP_NET_ADMIN and \
             CAP_SYS_ADMIN",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Removes the bridges and namespaces of harness processes that no longer run (a SIGKILLed
/// harness leaves them behind). Returns what was removed.
pub fn remove_leftovers() -> Vec<String> {
    let mut removed = Vec::new();
    if let Ok(entries) = std::fs::read_dir(NETNS_DIR) {
        for entry in entries.flatten() {
            let Some(ns) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if owner_pid(&ns).is_some_and(|pid| !pid_alive(pid))
                && ip(&["netns", "delete", &ns]).is_ok()
            {
                removed.push(format!("netns {ns}"));
            }
        }
    }
    if let Ok(links) = ip(&["-o", "link", "show"]) {
        for link in links.lines() {
            // "7: bkb1a2b-0: <BROADCAST,...>" or "8: bkv1a2b-3@if2: <...>"
            let Some(dev) = link.split(": ").nth(1) else {
                continue;
            };
            let dev = dev.split('@').next().unwrap_or(dev);
            if owner_pid(dev).is_some_and(|pid| !pid_alive(pid))
                && ip(&["link", "delete", dev]).is_ok()
            {
                removed.push(format!("link {dev}"));
            }
        }
    }
    removed
}

/// The bridges, namespaces and links on this machine whose names say process `pid` made them.
pub fn objects_of(pid: u32) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(NETNS_DIR) {
        for entry in entries.flatten() {
            if let Some(ns) = entry.file_name().to_str() {
                if owner_pid(ns) == Some(pid) {
                    found.push(format!("netns {ns}"));
                }
            }
        }
    }
    if let Ok(links) = ip(&["-o", "link", "show"]) {
        for link in links.lines() {
            if let Some(dev) = link.split(": ").nth(1) {
                let dev = dev.split('@').next().unwrap_or(dev);
                if owner_pid(dev) == Some(pid) {
                    found.push(format!("link {dev}"));
                }
            }
        }
    }
    found
}

/// The first pod octet (2..=254) after `last`, wrapping, that is not leased.
fn next_free(leases: &BTreeSet<u8>, last: u8) -> Option<u8> {
    let start = u16::from(last.clamp(1, 254)) + 1;
    (start..=254)
        .chain(2..start)
        .filter_map(|o| u8::try_from(o).ok())
        .find(|o| !leases.contains(o))
}

/// The `10.X.Y` prefixes the host already uses (addresses and routes).
fn used_prefixes() -> Result<BTreeSet<(u8, u8)>> {
    let mut used = BTreeSet::new();
    let text = format!(
        "{}\n{}",
        ip(&["-o", "-4", "addr", "show"])?,
        ip(&["-4", "route", "show", "table", "all"])?
    );
    for word in text.split(|c: char| c.is_whitespace() || c == '/') {
        let mut parts = word.split('.');
        if parts.next() == Some("10") {
            if let (Some(Ok(x)), Some(Ok(y))) =
                (parts.next().map(str::parse), parts.next().map(str::parse))
            {
                used.insert((x, y));
            }
        }
    }
    Ok(used)
}

/// A bridge with its /24, owned by this process. Dropping it deletes the bridge and every
/// pod namespace still attached.
#[derive(Debug)]
pub struct PodNetwork {
    bridge: String,
    prefix: (u8, u8),
    /// Host octets handed out (`.2` to `.254`).
    leases: Mutex<BTreeSet<u8>>,
    /// The last octet handed out: the next pod gets the next free one after it, as
    /// host-local IPAM does, so a just-freed address is not given again at once (the host's
    /// neighbour cache may still point it at the deleted pod's veth, and a test then reached
    /// nothing at the new pod's address).
    last: Mutex<u8>,
    namespaces: Mutex<BTreeSet<String>>,
    _lock: FileLock,
}

impl PodNetwork {
    /// Removes leftovers of dead harnesses, then creates a bridge on a free, locked subnet.
    pub fn create() -> Result<PodNetwork> {
        let removed = remove_leftovers();
        if !removed.is_empty() {
            eprintln!(
                "e2e: removed the network leftovers of dead harness processes: {}",
                removed.join(", ")
            );
        }
        let used = used_prefixes()?;
        for _ in 0..64 {
            let x: u8 = rand::Rng::gen_range(&mut rand::thread_rng(), 100..=250);
            let y: u8 = rand::random();
            if used.contains(&(x, y)) {
                continue;
            }
            let lock_path = PathBuf::from(LOCK_DIR).join(format!("subnet-10.{x}.{y}.lock"));
            let Some(lock) = FileLock::try_acquire(&lock_path, "cannot lock a pod subnet")? else {
                continue;
            };
            // Another harness may have taken it between our look and the lock.
            if used_prefixes()?.contains(&(x, y)) {
                continue;
            }
            let bridge = next_name('b');
            let network = PodNetwork {
                bridge: bridge.clone(),
                prefix: (x, y),
                leases: Mutex::new(BTreeSet::new()),
                last: Mutex::new(1),
                namespaces: Mutex::new(BTreeSet::new()),
                _lock: lock,
            };
            ip(&["link", "add", &bridge, "type", "bridge"])?;
            let host = format!("{}/24", network.host_ip());
            ip(&["addr", "add", &host, "dev", &bridge])?;
            ip(&["link", "set", &bridge, "up"])?;
            return Ok(network);
        }
        Err(Error::Network(
            "no free 10.X.Y.0/24 subnet for the pod network after 64 tries; remove stale \
             bridges (`ip -br link show type bridge`) or free some subnets"
                .into(),
        ))
    }

    /// The bridge's address on the host (`10.X.Y.1`).
    pub fn host_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.prefix.0, self.prefix.1, 1)
    }

    /// `10.X.Y.0/24`.
    pub fn cidr(&self) -> String {
        format!("10.{}.{}.0/24", self.prefix.0, self.prefix.1)
    }

    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The pod namespaces that exist now.
    pub fn namespaces(&self) -> Vec<String> {
        self.namespaces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Creates a namespace for one pod: `lo` up, `eth0` with a fresh address on the bridge.
    pub fn add_pod(&self) -> Result<PodNamespace> {
        let octet = {
            let mut leases = self
                .leases
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut last = self
                .last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let free = next_free(&leases, *last).ok_or_else(|| {
                Error::Network(format!(
                    "the pod network {} is full (253 pods); delete some pods",
                    self.cidr()
                ))
            })?;
            leases.insert(free);
            *last = free;
            free
        };
        let ip_addr = Ipv4Addr::new(10, self.prefix.0, self.prefix.1, octet);
        let ns = next_name('n');
        let host_veth = next_name('v');
        let result = (|| -> Result<()> {
            ip(&["netns", "add", &ns])?;
            self.namespaces
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(ns.clone());
            ip(&[
                "link", "add", &host_veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["link", "set", &host_veth, "master", &self.bridge, "up"])?;
            let addr = format!("{ip_addr}/24");
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            Ok(())
        })();
        let pod = PodNamespace {
            name: ns,
            ip: ip_addr,
        };
        if let Err(e) = result {
            self.remove_pod(&pod);
            return Err(e);
        }
        Ok(pod)
    }

    /// Deletes a pod's namespace (its veth goes with it) and frees its address.
    pub fn remove_pod(&self, pod: &PodNamespace) {
        let _ = ip(&["netns", "delete", &pod.name]);
        self.namespaces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&pod.name);
        let [_, _, _, octet] = pod.ip.octets();
        self.leases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&octet);
    }

    /// Deletes every namespace and the bridge. Safe to call more than once.
    pub fn remove(&self) {
        let namespaces = std::mem::take(
            &mut *self
                .namespaces
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for ns in namespaces {
            let _ = ip(&["netns", "delete", &ns]);
        }
        if Path::new(&format!("/sys/class/net/{}", self.bridge)).exists() {
            let _ = ip(&["link", "delete", &self.bridge]);
        }
    }
}

impl Drop for PodNetwork {
    fn drop(&mut self) {
        self.remove();
    }
}

/// One pod's network namespace.
#[derive(Debug, Clone)]
pub struct PodNamespace {
    pub name: String,
    pub ip: Ipv4Addr,
}

impl PodNamespace {
    /// `/run/netns/<name>`, which `setns(2)` enters.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_go_round_and_a_freed_one_is_not_given_again_at_once() {
        let mut leases = BTreeSet::new();
        assert_eq!(next_free(&leases, 1), Some(2));
        leases.extend([2, 3]);
        assert_eq!(next_free(&leases, 3), Some(4));
        // .2 was freed, .4 is the last given: .5 comes next, not .2.
        leases.remove(&2);
        leases.insert(4);
        assert_eq!(next_free(&leases, 4), Some(5));
        // At the end it wraps to the lowest free one.
        assert_eq!(next_free(&leases, 254), Some(2));
        let full: BTreeSet<u8> = (2..=254).collect();
        assert_eq!(next_free(&full, 100), None);
    }

    #[test]
    fn names_carry_the_owner_pid() {
        let n = name('n', 1234);
        assert!(n.len() <= 15, "{n} is longer than IFNAMSIZ - 1");
        assert_eq!(owner_pid(&n), Some(std::process::id()));
        assert_eq!(
            owner_pid(&format!("bkv{}-zz", base36(4_194_304))),
            Some(4_194_304)
        );
        for other in ["eth0", "bkx12-1", "bkb-1", "bkb12-", "docker0", "bkb12"] {
            assert_eq!(owner_pid(other), None, "{other}");
        }
        let longest = format!("bkv{}-{}", base36(4_194_304), base36(2_000_000_000));
        assert!(longest.len() <= 15, "{longest}");
    }
}
