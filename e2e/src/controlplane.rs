//! A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver (own CA, service-account
//! keys, RBAC) and kube-controller-manager, each a child process of the harness.
//!
//! ```no_run
//! # async fn demo() -> e2e::Result<()> {
//! let cp = e2e::ControlPlane::start().await?;
//! let client = cp.client().await?;
//! println!("KUBECONFIG={}", cp.kubeconfig().display());
//! # drop(client); Ok(()) }
//! ```
//!
//! Dropping the [`ControlPlane`] stops the processes (controllers first, etcd last) and
//! removes its temporary directory; if the harness dies instead, the kernel kills them (see
//! [`crate::process`]).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::binaries::ControlPlaneBinaries;
use crate::error::{log_tail, Error, Result};
use crate::kubelet::{Attach, Kubelet, KubeletOptions};
use crate::pki::Pki;
use crate::podnet::PodNetwork;
use crate::process::ManagedProcess;

/// The Service ClusterIP range handed to the API server (addresses are only allocated, never
/// routed: no traffic goes there).
pub const SERVICE_CIDR: &str = "10.0.0.0/24";

/// How the harness user authenticates in a kubeconfig.
#[derive(Debug, Clone)]
pub enum Credentials {
    ClientCert { cert: PathBuf, key: PathBuf },
    Token(String),
}

/// Settings for [`ControlPlane::start_with`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Start kube-controller-manager (default true).
    pub controller_manager: bool,
    /// How long each component may take to become ready.
    pub start_timeout: Duration,
    /// Keep the temporary directory (logs, etcd data, PKI) after drop.
    pub keep_dir: bool,
    /// Where to put the temporary directory (default: the system temp dir).
    pub parent_dir: Option<PathBuf>,
    /// Create a pod network first ([`crate::podnet`]) and serve the API on its bridge
    /// address, so that pods reach the API server (needs root; implied by `kubelet`).
    pub pod_network: bool,
    /// Start the test kubelet ([`crate::kubelet`]) once the control plane is up.
    pub kubelet: Option<KubeletOptions>,
}

impl Default for Options {
    /// Defaults, overridable by `BEACON_E2E_START_TIMEOUT` (seconds) and `BEACON_E2E_KEEP=1`.
    fn default() -> Self {
        let start_timeout = std::env::var("BEACON_E2E_START_TIMEOUT")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map_or(Duration::from_secs(120), Duration::from_secs);
        let keep_dir = std::env::var("BEACON_E2E_KEEP").is_ok_and(|v| v == "1" || v == "true");
        Options {
            controller_manager: true,
            start_timeout,
            keep_dir,
            parent_dir: None,
            pod_network: false,
            kubelet: None,
        }
    }
}

/// Seconds each start-up phase took.
#[derive(Debug, Clone, Default)]
pub struct StartTimes {
    pub binaries: f64,
    pub etcd: f64,
    pub apiserver: f64,
    pub controller_manager: f64,
    pub total: f64,
}

/// A running control plane. See the module documentation.
#[derive(Debug)]
pub struct ControlPlane {
    /// Stopped before anything else.
    kubelet: OnceLock<Kubelet>,
    /// Processes started later against this control plane (cert-manager, …), stopped first.
    extra: Mutex<Vec<ManagedProcess>>,
    controller_manager: Option<ManagedProcess>,
    apiserver: Option<ManagedProcess>,
    etcd: Option<ManagedProcess>,
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    keep_dir: bool,
    pki: Pki,
    server: String,
    kubeconfig: PathBuf,
    times: StartTimes,
    /// Removed after every process has stopped.
    network: Option<Arc<PodNetwork>>,
    apiserver_port: u16,
    start_timeout: Duration,
}

impl ControlPlane {
    /// Builds the binaries if needed and starts etcd, kube-apiserver and
    /// kube-controller-manager with default [`Options`].
    pub async fn start() -> Result<ControlPlane> {
        Self::start_with(Options::default()).await
    }

    /// Like [`ControlPlane::start`], with options.
    pub async fn start_with(options: Options) -> Result<ControlPlane> {
        let started = Instant::now();
        let mut times = StartTimes::default();
        let bins = tokio::task::spawn_blocking(ControlPlaneBinaries::ensure)
            .await
            .map_err(|e| Error::Invalid(format!("the binary build task failed: {e}")))??;
        times.binaries = started.elapsed().as_secs_f64();

        let mut builder = tempfile::Builder::new();
        builder.prefix("beacon-e2e-");
        let dir = match &options.parent_dir {
            Some(parent) => builder.tempdir_in(parent),
            None => builder.tempdir(),
        }
        .map_err(Error::io(
            "cannot create the control plane's temporary directory",
            options
                .parent_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir),
        ))?;
        let path = dir.path().to_path_buf();
        let mkdir = |name: &str| -> Result<PathBuf> {
            let p = path.join(name);
            std::fs::create_dir_all(&p).map_err(Error::io("cannot create a directory", &p))?;
            Ok(p)
        };
        let pki_dir = mkdir("pki")?;
        let logs = mkdir("logs")?;
        let etcd_data = mkdir("etcd")?;
        let network = if options.pod_network || options.kubelet.is_some() {
            Some(Arc::new(
                tokio::task::spawn_blocking(PodNetwork::create)
                    .await
                    .map_err(|e| Error::Invalid(format!("the pod network task failed: {e}")))??,
            ))
        } else {
            None
        };
        // With a pod network, the API server listens on the bridge: reachable from the host
        // and from every pod (127.0.0.1 inside a pod is the pod's own loopback).
        let api_ip = network
            .as_ref()
            .map_or(Ipv4Addr::LOCALHOST, |n| n.host_ip());
        let pki = Pki::generate(&pki_dir, &[IpAddr::V4(api_ip)])?;

        let [etcd_client, etcd_peer] = free_ports::<2>()?;
        // On its own bridge address the API server can have 443, as `kubernetes.default.svc`
        // has in a cluster (in-cluster clients that use the name with no port then work).
        let apiserver_port = match &network {
            Some(_) if TcpListener::bind((api_ip, 443)).is_ok() => 443,
            _ => free_ports_on::<1>(api_ip)?[0],
        };
        let server = format!("https://{api_ip}:{apiserver_port}");
        let kubeconfig = path.join("admin.kubeconfig");
        write_kubeconfig(
            &kubeconfig,
            &server,
            &pki.ca_cert,
            "admin",
            &Credentials::ClientCert {
                cert: pki.admin.cert.clone(),
                key: pki.admin.key.clone(),
            },
        )?;
        let kcm_kubeconfig = path.join("kube-controller-manager.kubeconfig");
        write_kubeconfig(
            &kcm_kubeconfig,
            &server,
            &pki.ca_cert,
            "system:kube-controller-manager",
            &Credentials::ClientCert {
                cert: pki.controller_manager.cert.clone(),
                key: pki.controller_manager.key.clone(),
            },
        )?;

        let mut cp = ControlPlane {
            kubelet: OnceLock::new(),
            extra: Mutex::new(Vec::new()),
            controller_manager: None,
            apiserver: None,
            etcd: None,
            dir: Some(dir),
            path: path.clone(),
            keep_dir: options.keep_dir,
            pki,
            server,
            kubeconfig,
            times,
            network,
            apiserver_port,
            start_timeout: options.start_timeout,
        };
        let timeout = options.start_timeout;

        // etcd
        let phase = Instant::now();
        let etcd_url = format!("http://127.0.0.1:{etcd_client}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer}");
        let etcd_args = vec![
            "--name=e2e".to_string(),
            format!("--data-dir={}", etcd_data.display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=e2e={peer_url}"),
            "--initial-cluster-state=new".to_string(),
            // Test data: no need to survive a power cut, and fsync dominates on small disks.
            "--unsafe-no-fsync=true".to_string(),
            "--log-level=warn".to_string(),
        ];
        let etcd = ManagedProcess::spawn("etcd", &bins.etcd, &etcd_args, &logs.join("etcd.log"))?;
        let etcd = cp.etcd.insert(etcd);
        wait_etcd(etcd, etcd_client, timeout).await?;
        cp.times.etcd = phase.elapsed().as_secs_f64();

        // kube-apiserver
        let phase = Instant::now();
        let p = &cp.pki;
        let apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            format!("--bind-address={api_ip}"),
            format!("--advertise-address={api_ip}"),
            format!("--secure-port={apiserver_port}"),
            format!("--tls-cert-file={}", p.apiserver.cert.display()),
            format!("--tls-private-key-file={}", p.apiserver.key.display()),
            format!("--client-ca-file={}", p.ca_cert.display()),
            "--authorization-mode=Node,RBAC".to_string(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_string(),
            format!("--service-account-key-file={}", p.sa_pub.display()),
            format!("--service-account-signing-key-file={}", p.sa_key.display()),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            // 127.0.0.1 is not a valid Endpoints address; no Pod would reach it anyway.
            "--endpoint-reconciler-type=none".to_string(),
            "--allow-privileged=true".to_string(),
            "--profiling=false".to_string(),
            format!("--cert-dir={}", pki_dir.display()),
            "--v=1".to_string(),
        ];
        let apiserver = ManagedProcess::spawn(
            "kube-apiserver",
            &bins.kube_apiserver,
            &apiserver_args,
            &logs.join("kube-apiserver.log"),
        )?;
        cp.apiserver = Some(apiserver);
        let client = cp.client().await?;
        cp.wait_apiserver(&client, timeout).await?;
        cp.times.apiserver = phase.elapsed().as_secs_f64();

        // kube-controller-manager
        if options.controller_manager {
            let phase = Instant::now();
            let p = &cp.pki;
            let kcm_args = vec![
                format!("--kubeconfig={}", kcm_kubeconfig.display()),
                "--controllers=*".to_string(),
                "--use-service-account-credentials=true".to_string(),
                format!("--root-ca-file={}", p.ca_cert.display()),
                format!("--service-account-private-key-file={}", p.sa_key.display()),
                format!("--cluster-signing-cert-file={}", p.ca_cert.display()),
                format!("--cluster-signing-key-file={}", p.ca_key.display()),
                format!("--service-cluster-ip-range={SERVICE_CIDR}"),
                "--leader-elect=false".to_string(),
                // No serving port: nothing scrapes it, and readiness is checked through the
                // API server (the `default` ServiceAccount appears).
                "--secure-port=0".to_string(),
                "--v=1".to_string(),
            ];
            let kcm = ManagedProcess::spawn(
                "kube-controller-manager",
                &bins.kube_controller_manager,
                &kcm_args,
                &logs.join("kube-controller-manager.log"),
            )?;
            cp.controller_manager = Some(kcm);
            cp.wait_controller_manager(&client, timeout).await?;
            cp.times.controller_manager = phase.elapsed().as_secs_f64();
        }
        if let Some(kubelet) = options.kubelet {
            cp.start_kubelet(kubelet).await?;
        }
        cp.times.total = started.elapsed().as_secs_f64();
        Ok(cp)
    }

    /// Starts the test kubelet (once; needs a control plane started with
    /// [`Options::pod_network`]) and returns it.
    pub async fn start_kubelet(&self, options: KubeletOptions) -> Result<&Kubelet> {
        if let Some(k) = self.kubelet.get() {
            return Ok(k);
        }
        let network = self.network.clone().ok_or_else(|| {
            Error::Invalid(
                "the test kubelet needs a pod network: start the control plane with \
                 Options { pod_network: true, .. } (or Options::kubelet)"
                    .into(),
            )
        })?;
        let attach = Attach {
            kubeconfig: self.kubeconfig.clone(),
            network,
            dir: self.path.join("kubelet"),
            apiserver_port: self.apiserver_port,
        };
        let timeout = self.start_timeout;
        let kubelet = tokio::task::spawn_blocking(move || Kubelet::start(attach, options, timeout))
            .await
            .map_err(|e| Error::Invalid(format!("the kubelet start task failed: {e}")))??;
        Ok(self.kubelet.get_or_init(|| kubelet))
    }

    /// The test kubelet, if started.
    pub fn kubelet(&self) -> Option<&Kubelet> {
        self.kubelet.get()
    }

    /// The pod network, if the control plane has one.
    pub fn network(&self) -> Option<&PodNetwork> {
        self.network.as_deref()
    }

    /// The API server's URL (`https://127.0.0.1:PORT`).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The admin kubeconfig (client certificate of `admin`, group `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The control plane's PKI files.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The temporary directory holding logs, PKI and etcd data.
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// Where a component's log is written (`logs/<name>.log`).
    pub fn log_path(&self, component: &str) -> PathBuf {
        self.path.join("logs").join(format!("{component}.log"))
    }

    /// How long start-up took.
    pub fn start_times(&self) -> &StartTimes {
        &self.times
    }

    /// A new client authenticated as `admin` (`system:masters`). Each Tokio runtime (each
    /// `#[tokio::test]`) needs its own client.
    pub async fn client(&self) -> Result<Client> {
        client_from_kubeconfig_file(&self.kubeconfig).await
    }

    /// A new client that authenticates with a bearer `token` (e.g. a service account's).
    pub async fn client_with_token(&self, token: &str) -> Result<Client> {
        let yaml = kubeconfig_json(
            &self.server,
            &self.pki.ca_cert,
            "token-user",
            &Credentials::Token(token.to_string()),
        );
        client_from_kubeconfig_text(&yaml).await
    }

    /// Writes a kubeconfig for other credentials against this control plane.
    pub fn write_kubeconfig(
        &self,
        path: &Path,
        user: &str,
        credentials: &Credentials,
    ) -> Result<()> {
        write_kubeconfig(path, &self.server, &self.pki.ca_cert, user, credentials)
    }

    /// Starts another process against this control plane; it is stopped before the control
    /// plane. Its output goes to `logs/<name>.log`.
    pub fn spawn_extra(&self, name: &str, program: &Path, args: &[String]) -> Result<()> {
        let process = ManagedProcess::spawn(name, program, args, &self.log_path(name))?;
        self.extra
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(process);
        Ok(())
    }

    /// Fails with the log's tail if an extra process named `name` has exited.
    pub fn check_extra(&self, name: &str) -> Result<()> {
        let mut extra = self
            .extra
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for p in extra.iter_mut().filter(|p| p.name() == name) {
            if let Some(status) = p.exited() {
                return Err(p.exited_error(status));
            }
        }
        Ok(())
    }

    /// Fails if any control-plane process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        for p in [
            &mut self.etcd,
            &mut self.apiserver,
            &mut self.controller_manager,
        ]
        .into_iter()
        .flatten()
        {
            if let Some(status) = p.exited() {
                return Err(p.exited_error(status));
            }
        }
        Ok(())
    }

    /// The process ids of every process this control plane started.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .extra
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter_map(ManagedProcess::pid)
            .collect();
        pids.extend(
            [&self.controller_manager, &self.apiserver, &self.etcd]
                .into_iter()
                .flatten()
                .filter_map(ManagedProcess::pid),
        );
        pids
    }

    /// The last `lines` lines of every component's log, for failure reports.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        let logs = self.path.join("logs");
        let Ok(entries) = std::fs::read_dir(&logs) else {
            return out;
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            out.push_str(&format!(
                "----- {} (last {lines} lines) -----\n{}\n",
                path.display(),
                log_tail(&path, lines)
            ));
        }
        out
    }

    /// Stops every process (the kubelet's pods, then the controllers) and removes the
    /// network and the directory unless kept.
    pub fn stop(&mut self) {
        if let Some(kubelet) = self.kubelet.take() {
            kubelet.shutdown();
        }
        let extra = std::mem::take(
            &mut *self
                .extra
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for mut p in extra.into_iter().rev() {
            p.stop();
        }
        for p in [
            &mut self.controller_manager,
            &mut self.apiserver,
            &mut self.etcd,
        ] {
            if let Some(mut p) = p.take() {
                p.stop();
            }
        }
        if let Some(network) = &self.network {
            network.remove();
        }
        if let Some(dir) = self.dir.take() {
            if self.keep_dir {
                let kept = dir.keep();
                eprintln!("e2e: kept the control plane's directory {}", kept.display());
            }
        }
    }

    /// Stops every process and removes the directory through a shared reference: for a
    /// control plane kept in a `static` (shared by the tests of one binary), from an
    /// `atexit` handler. Safe to call more than once; the control plane is unusable after.
    pub fn shutdown_now(&self) {
        if let Some(kubelet) = self.kubelet.get() {
            kubelet.shutdown();
        }
        for pid in self.pids() {
            crate::process::stop_group_by_pid(pid, Duration::from_secs(10));
        }
        if let Some(network) = &self.network {
            network.remove();
        }
        if !self.keep_dir && self.dir.is_some() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }

    async fn wait_apiserver(&mut self, client: &Client, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            if let Some(p) = self.apiserver.as_mut() {
                if let Some(status) = p.exited() {
                    return Err(p.exited_error(status));
                }
            }
            let request = http::Request::get("/readyz")
                .body(Vec::new())
                .map_err(|e| Error::Invalid(format!("bad /readyz request: {e}")))?;
            match client.request_text(request).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                Ok(body) => last = format!("/readyz said {body:?}"),
                Err(e) => last = format!("/readyz: {e}"),
            }
            if Instant::now() >= deadline {
                return Err(self.not_ready("kube-apiserver", timeout, last));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_controller_manager(&mut self, client: &Client, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let mut last;
        loop {
            if let Some(p) = self.controller_manager.as_mut() {
                if let Some(status) = p.exited() {
                    return Err(p.exited_error(status));
                }
            }
            // The serviceaccount and root-ca-cert-publisher controllers have run.
            match (
                sas.get_opt("default").await,
                cms.get_opt("kube-root-ca.crt").await,
            ) {
                (Ok(Some(_)), Ok(Some(_))) => return Ok(()),
                (Ok(None), _) => last = "no `default` ServiceAccount yet".into(),
                (_, Ok(None)) => last = "no `kube-root-ca.crt` ConfigMap yet".into(),
                (Err(e), _) | (_, Err(e)) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(self.not_ready("kube-controller-manager", timeout, last));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn not_ready(&self, component: &str, timeout: Duration, detail: String) -> Error {
        let log = self.log_path(component);
        Error::NotReady {
            component: component.to_string(),
            seconds: timeout.as_secs(),
            detail,
            tail: log_tail(&log, 40),
            log,
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "e2e: a test failed while the control plane in {} was running; component logs:\n{}",
                self.path.display(),
                self.log_tails(25)
            );
        }
        self.stop();
    }
}

async fn wait_etcd(etcd: &mut ManagedProcess, port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last;
    loop {
        if let Some(status) = etcd.exited() {
            return Err(etcd.exited_error(status));
        }
        match etcd_health(port) {
            Ok(true) => return Ok(()),
            Ok(false) => last = "/health did not report healthy".into(),
            Err(e) => last = format!("/health: {e}"),
        }
        if Instant::now() >= deadline {
            return Err(Error::NotReady {
                component: "etcd".into(),
                seconds: timeout.as_secs(),
                detail: last,
                log: etcd.log().to_path_buf(),
                tail: log_tail(etcd.log(), 40),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET /health` on etcd's plain-HTTP client port.
fn etcd_health(port: u16) -> std::io::Result<bool> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.take(64 * 1024).read_to_string(&mut response)?;
    let status_ok = response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200");
    Ok(status_ok && response.contains("\"health\":\"true\""))
}

/// `N` distinct free TCP ports on 127.0.0.1 (held together while picking, so they differ).
pub fn free_ports<const N: usize>() -> Result<[u16; N]> {
    free_ports_on(Ipv4Addr::LOCALHOST)
}

/// `N` distinct free TCP ports on `ip`.
pub fn free_ports_on<const N: usize>(ip: Ipv4Addr) -> Result<[u16; N]> {
    let mut listeners = Vec::with_capacity(N);
    let mut ports = [0u16; N];
    for port in ports.iter_mut() {
        let listener = TcpListener::bind((ip, 0)).map_err(Error::NoPort)?;
        *port = listener.local_addr().map_err(Error::NoPort)?.port();
        listeners.push(listener);
    }
    Ok(ports)
}

/// A kubeconfig (JSON, which is YAML too) with one cluster, user and context.
pub fn kubeconfig_json(server: &str, ca: &Path, user: &str, credentials: &Credentials) -> String {
    let user_entry = match credentials {
        Credentials::ClientCert { cert, key } => serde_json::json!({
            "client-certificate": cert.display().to_string(),
            "client-key": key.display().to_string(),
        }),
        Credentials::Token(token) => serde_json::json!({ "token": token }),
    };
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "beacon-e2e",
            "cluster": {
                "server": server,
                "certificate-authority": ca.display().to_string(),
            },
        }],
        "users": [{ "name": user, "user": user_entry }],
        "contexts": [{
            "name": "beacon-e2e",
            "context": { "cluster": "beacon-e2e", "user": user, "namespace": "default" },
        }],
        "current-context": "beacon-e2e",
        "preferences": {},
    });
    let mut text = serde_json::to_string_pretty(&config).unwrap_or_default();
    text.push('\n');
    text
}

fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca: &Path,
    user: &str,
    credentials: &Credentials,
) -> Result<()> {
    std::fs::write(path, kubeconfig_json(server, ca, user, credentials))
        .map_err(Error::io("cannot write a kubeconfig", path))
}

/// A client from a kubeconfig file.
pub async fn client_from_kubeconfig_file(path: &Path) -> Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path)
        .map_err(|e| Error::Kubeconfig(format!("{}: {e}", path.display())))?;
    client_from_kubeconfig(kubeconfig).await
}

async fn client_from_kubeconfig_text(text: &str) -> Result<Client> {
    let kubeconfig = Kubeconfig::from_yaml(text).map_err(|e| Error::Kubeconfig(e.to_string()))?;
    client_from_kubeconfig(kubeconfig).await
}

async fn client_from_kubeconfig(kubeconfig: Kubeconfig) -> Result<Client> {
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Kubeconfig(e.to_string()))?;
    Client::try_from(config).map_err(Error::kube("building a client"))
}
