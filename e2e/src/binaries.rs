//! Builds the control-plane binaries from the Go modules under `e2e/go/` and caches them.
//!
//! Each component is built once per machine with `go build` into
//! `$HOME/.cache/beacon-operator/bin/<component>-<version>-<hash>/` (the hash covers the
//! module's `go.mod` and `go.sum`, so a changed dependency pin builds anew). A build is
//! written into a temporary directory and renamed into place, so an interrupted build never
//! leaves a half binary behind; an exclusive lock file keeps two test processes from
//! building the same thing at once. `GOCACHE` and `GOMODCACHE` stay at Go's defaults (under
//! the home directory), so even a new version reuses what was already compiled.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::error::{log_tail, Error, Result};
use crate::lock::FileLock;

/// The oldest Go that builds the pinned versions (Kubernetes 1.37 says `go 1.26.0`).
pub const MIN_GO: &str = "1.26";

/// A program the harness builds from a Go module of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    Etcd,
    KubeApiserver,
    KubeControllerManager,
    Kubectl,
    /// cert-manager's controller (`cmd/controller`); its CRDs are cached beside it in `crds/`.
    CertManagerController,
    /// helm, which the chart tests run against charts/beacon-operator.
    Helm,
    /// drand's Go node (`cmd/drand`), the reference implementation the interop tests and the
    /// side-by-side benchmark run against.
    Drand,
    /// `drand-check`, our small Go program that verifies beacons with drand's own client code
    /// (`e2e/go/drandclient`).
    DrandCheck,
}

impl Component {
    /// All components, in the order `e2e build` builds them.
    pub const ALL: [Component; 8] = [
        Component::Etcd,
        Component::KubeApiserver,
        Component::KubeControllerManager,
        Component::Kubectl,
        Component::CertManagerController,
        Component::Helm,
        Component::Drand,
        Component::DrandCheck,
    ];

    /// Whether the tests use it (kubectl is only for people).
    pub fn needed_by_tests(self) -> bool {
        self != Component::Kubectl
    }

    /// The binary's file name.
    pub fn name(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::KubeApiserver => "kube-apiserver",
            Component::KubeControllerManager => "kube-controller-manager",
            Component::Kubectl => "kubectl",
            Component::CertManagerController => "cert-manager-controller",
            Component::Helm => "helm",
            Component::Drand => "drand",
            Component::DrandCheck => "drand-check",
        }
    }

    /// Our Go module that builds it, relative to `e2e/go/`.
    fn module(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::KubeApiserver | Component::KubeControllerManager | Component::Kubectl => {
                "k8s"
            }
            Component::CertManagerController => "certmanager",
            Component::Helm => "helm",
            Component::Drand => "drand",
            Component::DrandCheck => "drandclient",
        }
    }

    /// The Go package of its `main`.
    pub fn package(self) -> &'static str {
        match self {
            Component::Etcd => "go.etcd.io/etcd/server/v3",
            Component::KubeApiserver => "k8s.io/kubernetes/cmd/kube-apiserver",
            Component::KubeControllerManager => "k8s.io/kubernetes/cmd/kube-controller-manager",
            Component::Kubectl => "k8s.io/kubernetes/cmd/kubectl",
            Component::CertManagerController => {
                "github.com/cert-manager/cert-manager/cmd/controller"
            }
            Component::Helm => "helm.sh/helm/v3/cmd/helm",
            Component::Drand => "github.com/drand/drand/v2/cmd/drand",
            // Our own main package, the module's root.
            Component::DrandCheck => ".",
        }
    }

    /// The upstream module whose pinned version names the build.
    pub fn upstream_module(self) -> &'static str {
        match self {
            Component::Etcd => "go.etcd.io/etcd/server/v3",
            Component::KubeApiserver | Component::KubeControllerManager | Component::Kubectl => {
                "k8s.io/kubernetes"
            }
            Component::CertManagerController => "github.com/cert-manager/cert-manager",
            Component::Helm => "helm.sh/helm/v3",
            Component::Drand => "github.com/drand/drand/v2",
            Component::DrandCheck => "github.com/drand/go-clients",
        }
    }

    /// The linker flags of its build: stripped, and stamped with the versions that the
    /// projects' own build scripts set with `-X` (a plain `go build` leaves placeholders):
    /// - Kubernetes (hack/lib/version.sh): without them kube-apiserver's `/version` says
    ///   `v0.0.0-master+$Format:%H$`, and clients that check the server's version (helm
    ///   against a chart's `kubeVersion`) refuse it;
    /// - helm (its Makefile): its version, and the Kubernetes version (the client-go pin's
    ///   minor) that `helm template` and `helm lint` assume without a cluster; without it they
    ///   assume 1.20 and refuse a chart whose `kubeVersion` needs newer.
    pub fn ldflags(self) -> Result<String> {
        let mut flags = "-s -w".to_string();
        match self {
            Component::KubeApiserver | Component::KubeControllerManager | Component::Kubectl => {
                let version = self.version()?;
                let minor = kubernetes_minor(&version, 1, self.upstream_module())?;
                for package in [
                    "k8s.io/component-base/version",
                    "k8s.io/client-go/pkg/version",
                ] {
                    flags.push_str(&format!(
                        " -X {package}.gitVersion={version} -X {package}.gitMajor=1 \
                         -X {package}.gitMinor={minor} -X {package}.gitTreeState=clean"
                    ));
                }
            }
            Component::Helm => {
                let go_mod = self.module_dir().join("go.mod");
                let text = std::fs::read_to_string(&go_mod)
                    .map_err(Error::io("cannot read the Go module file", &go_mod))?;
                let client_go = pinned_version(&text, "k8s.io/client-go").ok_or_else(|| {
                    Error::NoPinnedVersion {
                        module: "k8s.io/client-go".to_string(),
                        go_mod: go_mod.clone(),
                    }
                })?;
                // client-go v0.M.P goes with Kubernetes v1.M, as helm's Makefile derives it.
                let minor = kubernetes_minor(&client_go, 0, "k8s.io/client-go")?;
                flags.push_str(&format!(
                    " -X helm.sh/helm/v3/internal/version.version={}",
                    self.version()?
                ));
                for package in [
                    "helm.sh/helm/v3/pkg/chartutil",
                    "helm.sh/helm/v3/pkg/lint/rules",
                ] {
                    flags.push_str(&format!(
                        " -X {package}.k8sVersionMajor=1 -X {package}.k8sVersionMinor={minor}"
                    ));
                }
            }
            Component::Etcd
            | Component::CertManagerController
            | Component::Drand
            | Component::DrandCheck => {}
        }
        Ok(flags)
    }

    /// The directory of our Go module for it.
    pub fn module_dir(self) -> PathBuf {
        go_dir().join(self.module())
    }

    /// The pinned upstream version, read from our module's `go.mod`.
    pub fn version(self) -> Result<String> {
        let go_mod = self.module_dir().join("go.mod");
        let text = std::fs::read_to_string(&go_mod)
            .map_err(Error::io("cannot read the Go module file", &go_mod))?;
        pinned_version(&text, self.upstream_module()).ok_or_else(|| Error::NoPinnedVersion {
            module: self.upstream_module().to_string(),
            go_mod: go_mod.clone(),
        })
    }
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `e2e/go/`, where our Go modules live.
pub fn go_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("go")
}

/// Finds `module vX.Y.Z` in a go.mod's require lines (single or in a block).
fn pinned_version(go_mod: &str, module: &str) -> Option<String> {
    go_mod.lines().find_map(|line| {
        let line = line.trim();
        let line = line.strip_prefix("require ").unwrap_or(line).trim();
        let mut words = line.split_whitespace();
        if words.next()? != module {
            return None;
        }
        let version = words.next()?;
        version.starts_with('v').then(|| version.to_string())
    })
}

/// The minor of `vMAJOR.MINOR.PATCH` whose major is `major` (`v1.37.2` -> `37`).
fn kubernetes_minor(version: &str, major: u32, module: &str) -> Result<String> {
    let mut parts = version.trim_start_matches('v').split('.');
    let numeric = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    match (parts.next(), parts.next()) {
        (Some(m), Some(minor)) if m == major.to_string() && numeric(&minor) => {
            Ok(minor.to_string())
        }
        _ => Err(Error::Invalid(format!(
            "{module} {version} is not of the form v{major}.MINOR.PATCH; fix its pin in e2e/go"
        ))),
    }
}

/// The cache root: `$BEACON_E2E_CACHE`, else `$XDG_CACHE_HOME/beacon-operator`, else
/// `$HOME/.cache/beacon-operator`.
pub fn cache_root() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("BEACON_E2E_CACHE").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir).join("beacon-operator"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".cache").join("beacon-operator")),
        None => Err(Error::NoHome),
    }
}

/// Finds the `go` command: `$BEACON_E2E_GO`, else `go` on PATH, else `/usr/local/go/bin/go`.
pub fn go_command() -> Result<PathBuf> {
    find_go(
        std::env::var_os("BEACON_E2E_GO"),
        std::env::var_os("PATH"),
        Path::new("/usr/local/go/bin/go"),
    )
}

fn find_go(
    explicit: Option<std::ffi::OsString>,
    path: Option<std::ffi::OsString>,
    fallback: &Path,
) -> Result<PathBuf> {
    let mut tried = Vec::new();
    if let Some(go) = explicit.filter(|v| !v.is_empty()) {
        let go = PathBuf::from(go);
        if go.is_file() {
            return Ok(go);
        }
        tried.push(format!("BEACON_E2E_GO={}", go.display()));
    }
    if let Some(path) = path {
        for dir in std::env::split_paths(&path) {
            let go = dir.join("go");
            if go.is_file() {
                return Ok(go);
            }
        }
    }
    tried.push("`go` on PATH".to_string());
    if fallback.is_file() {
        return Ok(fallback.to_path_buf());
    }
    tried.push(fallback.display().to_string());
    Err(Error::GoMissing {
        tried: tried.join(", "),
        min_go: MIN_GO,
    })
}

/// The cache directory of one component's build.
pub fn build_dir(component: Component) -> Result<PathBuf> {
    let dir = component.module_dir();
    let mut hash = Sha256::new();
    // A module holding Go code of ours (drand-check) is keyed by that code too; the modules
    // that only pin upstream programs have none, so their keys stay as they were.
    let mut files = vec!["go.mod".to_string(), "go.sum".to_string()];
    let mut sources: Vec<String> = std::fs::read_dir(&dir)
        .map_err(Error::io("cannot list the Go module", &dir))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".go"))
        .collect();
    sources.sort();
    files.extend(sources);
    for file in &files {
        let path = dir.join(file);
        let bytes = std::fs::read(&path).map_err(Error::io("cannot read the Go module", &path))?;
        hash.update(file.as_bytes());
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
    }
    // The version stamps are part of what is built. Only flags beyond the plain "-s -w" go
    // into the key, so binaries cached before stamping existed keep their directories.
    let ldflags = component.ldflags()?;
    if ldflags != "-s -w" {
        hash.update(b"ldflags");
        hash.update(ldflags.as_bytes());
    }
    let hash = hex::encode(&hash.finalize()[..6]);
    Ok(cache_root()?.join("bin").join(format!(
        "{}-{}-{hash}",
        component.name(),
        component.version()?
    )))
}

/// Where the binary of `component` is (or will be) cached.
pub fn binary_path(component: Component) -> Result<PathBuf> {
    Ok(build_dir(component)?.join(component.name()))
}

/// What [`ensure`] did.
#[derive(Debug, Clone)]
pub struct Built {
    pub component: Component,
    pub path: PathBuf,
    /// True when this call ran `go build`; false when the cache had it.
    pub built: bool,
    pub seconds: f64,
}

/// Returns the cached binary of `component`, building it first if it is not cached.
pub fn ensure(component: Component) -> Result<Built> {
    let started = Instant::now();
    let dir = build_dir(component)?;
    let binary = dir.join(component.name());
    if binary.is_file() {
        return Ok(Built {
            component,
            path: binary,
            built: false,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let parent = dir
        .parent()
        .ok_or_else(|| Error::Invalid(format!("bad cache directory {}", dir.display())))?;
    std::fs::create_dir_all(parent)
        .map_err(Error::io("cannot create the cache directory", parent))?;

    // One builder at a time per component; the others wait and then find it cached.
    let lock_path = parent.join(format!(
        ".{}.lock",
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("build")
    ));
    let _lock = FileLock::acquire(&lock_path, "cannot lock the build")?;
    if binary.is_file() {
        return Ok(Built {
            component,
            path: binary,
            built: false,
            seconds: started.elapsed().as_secs_f64(),
        });
    }

    let go = go_command()?;
    let staging = parent.join(format!(
        ".{}.tmp-{}",
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("build"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)
        .map_err(Error::io("cannot create the build directory", &staging))?;
    let logs = cache_root()?.join("logs");
    std::fs::create_dir_all(&logs).map_err(Error::io("cannot create the log directory", &logs))?;
    let log_path = logs.join(format!("build-{}.log", component.name()));

    eprintln!(
        "e2e: building {} {} with `go build` (first run on this machine; a cold build of \
         everything took 35-60 minutes on 2 cores, see e2e/README.md), log: {}",
        component.name(),
        component.version()?,
        log_path.display()
    );
    let module_dir = component.module_dir();
    let ldflags = format!("-ldflags={}", component.ldflags()?);
    run_go(
        &go,
        &module_dir,
        &[
            "build",
            "-trimpath",
            &ldflags,
            "-o",
            &staging.join(component.name()).to_string_lossy(),
            component.package(),
        ],
        &log_path,
        component.package(),
    )?;
    if component == Component::CertManagerController {
        copy_cert_manager_crds(&go, &module_dir, &staging.join("crds"), &log_path)?;
    }
    // The rename publishes the whole directory at once.
    if let Err(e) = std::fs::rename(&staging, &dir) {
        let _ = std::fs::remove_dir_all(&staging);
        if !binary.is_file() {
            return Err(Error::Io {
                what: "cannot move the built binary into the cache".into(),
                path: dir,
                source: e,
            });
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("e2e: built {} in {seconds:.0} s", component.name());
    Ok(Built {
        component,
        path: binary,
        built: true,
        seconds,
    })
}

fn run_go(go: &Path, dir: &Path, args: &[&str], log_path: &Path, what: &str) -> Result<()> {
    let log = File::create(log_path).map_err(Error::io("cannot create the build log", log_path))?;
    let log2 = log
        .try_clone()
        .map_err(Error::io("cannot create the build log", log_path))?;
    let status = Command::new(go)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .status()
        .map_err(Error::io("cannot run go", go))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::GoBuild {
            package: what.to_string(),
            module_dir: dir.to_path_buf(),
            status: status.to_string(),
            log: log_path.to_path_buf(),
            tail: log_tail(log_path, 30),
        })
    }
}

/// Copies `deploy/crds/*.yaml` of the pinned cert-manager module (already in the module
/// cache after the build) into `dest`.
fn copy_cert_manager_crds(
    go: &Path,
    module_dir: &Path,
    dest: &Path,
    log_path: &Path,
) -> Result<()> {
    let module = Component::CertManagerController.upstream_module();
    let output = Command::new(go)
        .args(["list", "-m", "-f", "{{.Dir}}", module])
        .current_dir(module_dir)
        .stdin(Stdio::null())
        .output()
        .map_err(Error::io("cannot run go", go))?;
    let source = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || source.is_empty() {
        let _ = std::fs::write(log_path, &output.stderr);
        return Err(Error::GoBuild {
            package: format!("list -m {module}"),
            module_dir: module_dir.to_path_buf(),
            status: output.status.to_string(),
            log: log_path.to_path_buf(),
            tail: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    let crds = Path::new(&source).join("deploy").join("crds");
    std::fs::create_dir_all(dest).map_err(Error::io("cannot create the CRD directory", dest))?;
    let entries =
        std::fs::read_dir(&crds).map_err(Error::io("cannot list cert-manager's CRDs", &crds))?;
    let mut copied = 0;
    for entry in entries {
        let entry = entry.map_err(Error::io("cannot list cert-manager's CRDs", &crds))?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) == Some("yaml") {
            let target = dest.join(entry.file_name());
            std::fs::copy(&path, &target).map_err(Error::io("cannot copy a CRD", &path))?;
            copied += 1;
        }
    }
    if copied == 0 {
        return Err(Error::Invalid(format!(
            "no CRDs found in {}: the pinned cert-manager module has no deploy/crds",
            crds.display()
        )));
    }
    Ok(())
}

/// The directory of cert-manager's CRD manifests, building cert-manager first if needed.
pub fn cert_manager_crds() -> Result<PathBuf> {
    let built = ensure(Component::CertManagerController)?;
    built
        .path
        .parent()
        .map(|dir| dir.join("crds"))
        .ok_or_else(|| Error::Invalid("bad cert-manager cache path".into()))
}

/// The binaries a control plane needs.
#[derive(Debug, Clone)]
pub struct ControlPlaneBinaries {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
}

impl ControlPlaneBinaries {
    /// Builds (first time) or finds (afterwards) etcd, kube-apiserver and
    /// kube-controller-manager.
    pub fn ensure() -> Result<ControlPlaneBinaries> {
        Ok(ControlPlaneBinaries {
            etcd: ensure(Component::Etcd)?.path,
            kube_apiserver: ensure(Component::KubeApiserver)?.path,
            kube_controller_manager: ensure(Component::KubeControllerManager)?.path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pinned_versions() {
        let go_mod = "module x\n\nrequire k8s.io/kubernetes v1.37.2\n\nreplace (\n\tk8s.io/api => k8s.io/api v0.37.2\n)\n";
        assert_eq!(
            pinned_version(go_mod, "k8s.io/kubernetes").as_deref(),
            Some("v1.37.2")
        );
        assert_eq!(pinned_version(go_mod, "k8s.io/api"), None);
        let block = "require (\n\tgo.etcd.io/etcd/server/v3 v3.7.3 // indirect\n)\n";
        assert_eq!(
            pinned_version(block, "go.etcd.io/etcd/server/v3").as_deref(),
            Some("v3.7.3")
        );
    }

    #[test]
    fn missing_go_is_a_clear_error() {
        let nowhere = Path::new("/nonexistent/beacon-e2e/go");
        let err = find_go(
            Some(nowhere.into()),
            Some("/nonexistent/beacon-e2e".into()),
            nowhere,
        )
        .expect_err("no Go anywhere");
        let message = err.to_string();
        assert!(matches!(err, Error::GoMissing { .. }), "{message}");
        assert!(message.contains("install Go 1.26"), "{message}");
        assert!(message.contains("BEACON_E2E_GO"), "{message}");
    }

    #[test]
    fn kubernetes_and_helm_are_stamped_with_their_versions() {
        let flags = Component::Helm.ldflags().expect("helm ldflags");
        let version = Component::Helm.version().expect("helm version");
        assert!(
            flags.contains(&format!("internal/version.version={version}")),
            "{flags}"
        );
        assert!(
            flags.contains("pkg/chartutil.k8sVersionMajor=1 "),
            "{flags}"
        );
        assert!(flags.contains("pkg/lint/rules.k8sVersionMinor="), "{flags}");
        assert_eq!(Component::Etcd.ldflags().expect("etcd ldflags"), "-s -w");
        let apiserver = Component::KubeApiserver
            .ldflags()
            .expect("apiserver ldflags");
        let version = Component::KubeApiserver.version().expect("k8s version");
        assert!(
            apiserver.contains(&format!("component-base/version.gitVersion={version} ")),
            "{apiserver}"
        );
        assert!(kubernetes_minor("v0.37.0", 0, "m").is_ok_and(|m| m == "37"));
        assert!(kubernetes_minor("v1.37.2", 0, "m").is_err());
        assert!(kubernetes_minor("v1", 1, "m").is_err());
    }

    #[test]
    fn every_component_has_a_pinned_version() {
        for c in Component::ALL {
            let v = c.version().unwrap_or_else(|e| panic!("{c}: {e}"));
            assert!(v.starts_with('v'), "{c}: {v}");
        }
    }
}
