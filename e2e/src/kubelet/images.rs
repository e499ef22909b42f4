//! The test kubelet's "images": an explicit map from an image reference to a program on this
//! machine and extra environment. A container whose image is not in the map waits with
//! reason `ErrImagePull`, and the message names the known images.
//!
//! The default entries are the workspace's own binaries (`beacon-node`, and `beacon-operator`
//! once the operator crate has its binary), built on first use by running
//! `$CARGO build --locked --workspace --bins` with the profile and target directory of the
//! running executable, once per process, under a `flock` so that parallel test binaries wait
//! for one build. The whole workspace's binaries in one build, because that is the build the
//! workspace's tests have already done (`cargo test --workspace` builds every binary with the
//! same features): after it, this build is a no-op instead of a second compile of every
//! dependency, and it never replaces a binary the tests use with one of other features. The
//! binaries are then copied (copy and rename, under the lock) into `target/e2e-kubelet/bin/`,
//! so that a later cargo run cannot change a program under a pod that restarts.
//!
//! beacon-node's `test-hooks` feature (node/src/testhooks.rs) is on in every workspace build:
//! the `e2e` crate's dependency on beacon-node enables it. The release images build beacon-node
//! and beacon-operator on their own (`images/build-static.sh`), without it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::error::{log_tail, Error, Result};
use crate::lock::FileLock;

/// The workspace version, which the images' tags carry.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `ghcr.io/beacon-operator/beacon-node:<version>`.
pub fn beacon_node_image() -> String {
    format!("ghcr.io/beacon-operator/beacon-node:{VERSION}")
}

/// `ghcr.io/beacon-operator/beacon-operator:<version>`.
pub fn beacon_operator_image() -> String {
    format!("ghcr.io/beacon-operator/beacon-operator:{VERSION}")
}

/// Where an image's program comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// A file that exists already.
    Path(PathBuf),
    /// A binary target of this workspace, built by cargo when first needed.
    Cargo { package: String, bin: String },
}

/// One image: its program (the entrypoint) and environment added before the container's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub program: Program,
    pub env: Vec<(String, String)>,
}

impl Image {
    pub fn path(path: impl Into<PathBuf>) -> Image {
        Image {
            program: Program::Path(path.into()),
            env: Vec::new(),
        }
    }

    pub fn cargo(package: &str, bin: &str) -> Image {
        Image {
            program: Program::Cargo {
                package: package.into(),
                bin: bin.into(),
            },
            env: Vec::new(),
        }
    }

    pub fn with_env(mut self, key: &str, value: &str) -> Image {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// An image resolved to a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub program: PathBuf,
    pub env: Vec<(String, String)>,
}

/// Why an image cannot be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageError {
    /// Not in the map: `ErrImagePull`.
    Unknown { image: String, known: Vec<String> },
    /// In the map, but its program cannot be had (build failed, file missing).
    Unavailable { image: String, reason: String },
}

impl std::fmt::Display for ImageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageError::Unknown { image, known } => write!(
                f,
                "image {image:?} is not in the test kubelet's image map (known: {}); add it \
                 with Kubelet::images().insert(...)",
                known.join(", ")
            ),
            ImageError::Unavailable { image, reason } => write!(f, "image {image:?}: {reason}"),
        }
    }
}

/// The outcome of one cargo build: the binary, or what cargo said.
type Build = std::result::Result<PathBuf, String>;

/// The map, shared by the kubelet and the tests (which add entries while it runs).
#[derive(Debug, Clone, Default)]
pub struct ImageMap {
    entries: Arc<Mutex<BTreeMap<String, Image>>>,
    /// Cargo builds done by this map: (package, bin) -> path or error.
    built: Arc<Mutex<BTreeMap<(String, String), Build>>>,
}

impl ImageMap {
    /// The workspace's images: `beacon-node`, and `beacon-operator` when the operator crate
    /// has a binary target.
    pub fn with_defaults() -> ImageMap {
        let map = ImageMap::default();
        map.insert(
            &beacon_node_image(),
            Image::cargo("beacon-node", "beacon-node"),
        );
        if operator_has_binary() {
            map.insert(
                &beacon_operator_image(),
                Image::cargo("beacon-operator", "beacon-operator"),
            );
        }
        map
    }

    /// Adds or replaces an entry.
    pub fn insert(&self, image: &str, entry: Image) {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(image.to_string(), entry);
    }

    pub fn get(&self, image: &str) -> Option<Image> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(image)
            .cloned()
    }

    /// Every image reference in the map.
    pub fn known(&self) -> Vec<String> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// The image's program and environment, building it with cargo first if needed (this
    /// blocks; call it off the async runtime).
    pub fn resolve(&self, image: &str) -> std::result::Result<Resolved, ImageError> {
        let entry = self.get(image).ok_or_else(|| ImageError::Unknown {
            image: image.to_string(),
            known: self.known(),
        })?;
        let program = match &entry.program {
            Program::Path(path) => path.clone(),
            Program::Cargo { package, bin } => {
                self.cargo_build(package, bin)
                    .map_err(|reason| ImageError::Unavailable {
                        image: image.to_string(),
                        reason,
                    })?
            }
        };
        if !program.is_file() {
            return Err(ImageError::Unavailable {
                image: image.to_string(),
                reason: format!("its program {} does not exist", program.display()),
            });
        }
        Ok(Resolved {
            program,
            env: entry.env,
        })
    }

    /// Whether an image's program is ready without a build (for status messages).
    pub fn needs_build(&self, image: &str) -> bool {
        match self.get(image).map(|e| e.program) {
            Some(Program::Cargo { package, bin }) => !self
                .built
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains_key(&(package, bin)),
            _ => false,
        }
    }

    fn cargo_build(&self, package: &str, bin: &str) -> std::result::Result<PathBuf, String> {
        let key = (package.to_string(), bin.to_string());
        // One build per process and binary; later callers get the same answer.
        let mut built = self
            .built
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(done) = built.get(&key) {
            return done.clone();
        }
        let result = cargo_build(package, bin).map_err(|e| e.to_string());
        built.insert(key, result.clone());
        result
    }
}

/// The workspace root (this crate's parent folder, as it was when compiled).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn operator_has_binary() -> bool {
    let root = workspace_root().join("operator");
    root.join("src/main.rs").is_file()
        || std::fs::read_to_string(root.join("Cargo.toml")).is_ok_and(|t| t.contains("[[bin]]"))
}

/// The target directory and cargo profile of the running executable: `…/target/debug/e2e`
/// or `…/target/debug/deps/it-…` is (`…/target`, `dev`); `…/target/release/…` is `release`.
pub fn current_target() -> Result<(PathBuf, String)> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::Invalid(format!("cannot find the running executable: {e}")))?;
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir
        .file_name()
        .is_some_and(|n| n == "deps" || n == "examples")
    {
        dir.pop();
    }
    let profile_dir = dir
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{} is not in a cargo target directory",
                exe.display()
            ))
        })?;
    let target = dir.parent().map(Path::to_path_buf).ok_or_else(|| {
        Error::Invalid(format!(
            "{} is not in a cargo target directory",
            exe.display()
        ))
    })?;
    let profile = match profile_dir.as_str() {
        "debug" => "dev".to_string(),
        other => other.to_string(),
    };
    Ok((target, profile))
}

/// The outcome of this process's workspace build, once it ran.
static WORKSPACE_BUILD: Mutex<Option<std::result::Result<(), String>>> = Mutex::new(None);

/// Builds every binary of the workspace with the running executable's cargo, profile and
/// target directory (once per process), and returns a copy of `bin` that no later build
/// changes. `package` is named in errors only: one build makes them all.
pub fn cargo_build(package: &str, bin: &str) -> Result<PathBuf> {
    let (target, profile) = current_target()?;
    let profile_dir = target.join(if profile == "dev" { "debug" } else { &profile });
    let kubelet_dir = target.join("e2e-kubelet");
    let bin_dir = kubelet_dir.join("bin");
    std::fs::create_dir_all(&bin_dir).map_err(Error::io("cannot create a folder", &bin_dir))?;
    let _lock = FileLock::acquire(
        &kubelet_dir.join("build.lock"),
        "cannot lock the cargo build of the images' binaries",
    )?;
    {
        let mut done = WORKSPACE_BUILD
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if done.is_none() {
            *done =
                Some(build_workspace(&target, &profile, &kubelet_dir).map_err(|e| e.to_string()));
        }
        if let Some(Err(e)) = done.as_ref() {
            return Err(Error::Invalid(format!(
                "the build of {package} failed: {e}"
            )));
        }
    }
    let built = profile_dir.join(bin);
    if !built.is_file() {
        return Err(Error::Invalid(format!(
            "cargo built the workspace's binaries but {} does not exist (is {bin} a binary \
             target of package {package}?)",
            built.display()
        )));
    }
    // Copy, then rename over the old copy: a running process keeps its file, and a pod that
    // starts now never sees a half-written one.
    let copy = bin_dir.join(bin);
    let partial = bin_dir.join(format!(".{bin}.{}", std::process::id()));
    std::fs::copy(&built, &partial).map_err(Error::io("cannot copy a binary", &partial))?;
    std::fs::rename(&partial, &copy).map_err(Error::io("cannot move a binary", &copy))?;
    Ok(copy)
}

fn build_workspace(target: &Path, profile: &str, kubelet_dir: &Path) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let log = kubelet_dir.join("build.log");
    let log_file =
        std::fs::File::create(&log).map_err(Error::io("cannot create a log file", &log))?;
    let log_err = log_file
        .try_clone()
        .map_err(Error::io("cannot create a log file", &log))?;
    let args = [
        "build",
        "--locked",
        "--workspace",
        "--bins",
        "--profile",
        profile,
    ];
    let mut command = Command::new(&cargo);
    // Under `cargo test` this process has the variables cargo sets for a test of the e2e
    // package (CARGO_PKG_*, CARGO_MANIFEST_*, LD_LIBRARY_PATH with build folders, ...). Build
    // scripts that watch them (ring's, rustls's) see them changed, and the nested build then
    // recompiled ring, rustls and kube for minutes, and the next test build back again.
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(set_by_cargo_for_a_test) {
            command.env_remove(&key);
        }
    }
    let status = command
        .args(args)
        .current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", target)
        .stdin(std::process::Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .status()
        .map_err(Error::io(
            "cannot run cargo (set CARGO to its path)",
            PathBuf::from(&cargo),
        ))?;
    if !status.success() {
        return Err(Error::Invalid(format!(
            "`cargo {}` (target dir {}) failed ({status}); its log is {}; last lines:\n{}",
            args.join(" "),
            target.display(),
            log.display(),
            log_tail(&log, 30)
        )));
    }
    Ok(())
}

/// Whether cargo sets `key` in the environment of the test, benchmark or binary it runs (and
/// so it was not there when the workspace's own build ran).
fn set_by_cargo_for_a_test(key: &str) -> bool {
    const PREFIXES: &[&str] = &["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_BIN_EXE_"];
    const NAMES: &[&str] = &[
        "CARGO_CRATE_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
        "LD_LIBRARY_PATH",
    ];
    PREFIXES.iter().any(|p| key.starts_with(p)) || NAMES.contains(&key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_images_name_the_known_ones() {
        let map = ImageMap::default();
        map.insert("a:1", Image::path("/bin/true"));
        let err = map.resolve("b:2").expect_err("unknown");
        let text = err.to_string();
        assert!(text.contains("\"b:2\"") && text.contains("a:1"), "{text}");
        assert!(matches!(err, ImageError::Unknown { .. }));
        assert_eq!(
            map.resolve("a:1").expect("known").program,
            PathBuf::from("/bin/true")
        );
    }

    #[test]
    fn a_missing_program_is_unavailable() {
        let map = ImageMap::default();
        map.insert("x:1", Image::path("/nonexistent/prog"));
        assert!(matches!(
            map.resolve("x:1"),
            Err(ImageError::Unavailable { .. })
        ));
    }

    #[test]
    fn the_nested_build_drops_what_cargo_set_for_the_test() {
        for key in [
            "CARGO_PKG_NAME",
            "CARGO_MANIFEST_DIR",
            "LD_LIBRARY_PATH",
            "OUT_DIR",
        ] {
            assert!(set_by_cargo_for_a_test(key), "{key}");
        }
        for key in [
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_INCREMENTAL",
            "PATH",
            "RUSTFLAGS",
        ] {
            assert!(!set_by_cargo_for_a_test(key), "{key}");
        }
    }

    #[test]
    fn defaults_name_the_workspace_version() {
        let map = ImageMap::with_defaults();
        assert!(map
            .known()
            .contains(&format!("ghcr.io/beacon-operator/beacon-node:{VERSION}")));
    }
}
