//! Runs the `helm` built from its Go module (`e2e/go/helm`) against the chart in
//! `charts/beacon-operator`, so the tests exercise the chart as users install it.
//!
//! Each [`Helm`] has its own configuration, cache and data directories (a temporary
//! directory), so tests never read or write the user's `~/.config/helm` and never see each
//! other's repositories or plugins.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;

use crate::binaries::{self, Component};
use crate::error::{Error, Result};

/// `charts/beacon-operator` in this checkout.
pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("charts")
        .join("beacon-operator")
}

/// What one helm command printed.
#[derive(Debug, Clone)]
pub struct Output {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The output when the command succeeded, or an error with what helm printed.
    pub fn checked(self, what: &str) -> Result<Output> {
        if self.success {
            Ok(self)
        } else {
            Err(Error::Invalid(format!(
                "`helm {what}` failed (exit {:?}):\n{}{}",
                self.code, self.stderr, self.stdout
            )))
        }
    }
}

/// A helm command line with private state directories and, optionally, a kubeconfig.
pub struct Helm {
    binary: PathBuf,
    home: tempfile::TempDir,
    kubeconfig: Option<PathBuf>,
}

impl Helm {
    /// Finds helm in the cache, building it first if needed (blocking: call it from
    /// `spawn_blocking` in async code).
    pub fn new() -> Result<Helm> {
        let binary = binaries::ensure(Component::Helm)?.path;
        let home = tempfile::Builder::new()
            .prefix("beacon-e2e-helm-")
            .tempdir()
            .map_err(Error::io(
                "cannot create helm's home directory",
                std::env::temp_dir(),
            ))?;
        Ok(Helm {
            binary,
            home,
            kubeconfig: None,
        })
    }

    /// Talk to the cluster of this kubeconfig (install, upgrade, uninstall).
    pub fn with_kubeconfig(mut self, kubeconfig: &Path) -> Helm {
        self.kubeconfig = Some(kubeconfig.to_path_buf());
        self
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Runs `helm args…` and returns what it printed, whatever its exit status.
    pub async fn run<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Result<Output> {
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .args(args)
            .env("HELM_CONFIG_HOME", self.home.path().join("config"))
            .env("HELM_CACHE_HOME", self.home.path().join("cache"))
            .env("HELM_DATA_HOME", self.home.path().join("data"))
            .env_remove("HELM_KUBECONTEXT")
            .env_remove("HELM_NAMESPACE")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        match &self.kubeconfig {
            Some(path) => command.env("KUBECONFIG", path),
            // Nothing may reach a cluster by accident (e.g. the user's ~/.kube/config).
            None => command.env("KUBECONFIG", self.home.path().join("no-cluster")),
        };
        let output = command
            .output()
            .await
            .map_err(Error::io("cannot run helm", &self.binary))?;
        Ok(Output {
            success: output.status.success(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// `helm template <release> charts/beacon-operator -n <namespace> <extra…>`, parsed into
    /// one JSON value per rendered object.
    pub async fn template(
        &self,
        release: &str,
        namespace: &str,
        extra: &[&str],
    ) -> Result<Vec<Value>> {
        let chart = chart_dir();
        let mut args = vec![
            "template".to_owned(),
            release.to_owned(),
            chart.to_string_lossy().into_owned(),
            "--namespace".to_owned(),
            namespace.to_owned(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let output = self.run(&args).await?.checked("template")?;
        parse_documents(&output.stdout)
    }
}

/// The objects of a multi-document YAML stream (empty documents skipped).
pub fn parse_documents(yaml: &str) -> Result<Vec<Value>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).map_err(|e| Error::Yaml {
        path: PathBuf::from("<helm output>"),
        message: e.to_string(),
    })?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_rendered_stream() {
        let yaml = "---\n# Source: a.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n# Source: empty.yaml\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: b\n";
        let docs = parse_documents(yaml).expect("parse");
        let kinds: Vec<_> = docs.iter().map(|d| d["kind"].as_str()).collect();
        assert_eq!(kinds, [Some("ConfigMap"), Some("Secret")]);
    }

    #[test]
    fn the_chart_is_in_the_checkout() {
        assert!(chart_dir().join("Chart.yaml").is_file());
        assert!(chart_dir().join("values.schema.json").is_file());
    }
}
