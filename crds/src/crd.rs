//! The CustomResourceDefinitions as YAML files, for the Helm chart (`crdgen`) and for the drift
//! test that keeps the committed files equal to what the types generate.

use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::{BeaconCeremony, BeaconNetwork};

/// The chart's CRD folder, relative to the workspace root.
pub const CHART_CRDS_DIR: &str = "charts/beacon-operator/crds";

/// The command that rewrites the files.
pub const REGENERATE: &str = "cargo run -p beacon-crds --bin crdgen";

/// Every CRD of the API group.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![BeaconNetwork::crd(), BeaconCeremony::crd()]
}

/// Why a CRD could not be rendered or written.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    #[error("cannot render CRD {name} as YAML: {source}")]
    Render {
        name: String,
        source: serde_saphyr::SerializeError,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A CRD's file name: `<plural>.<group>.yaml`, the CRD's own name.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// The YAML of one CRD, with a header saying where it comes from.
pub fn render(crd: &CustomResourceDefinition) -> Result<String, CrdError> {
    let body = serde_saphyr::to_string(crd).map_err(|source| CrdError::Render {
        name: file_name(crd),
        source,
    })?;
    Ok(format!(
        "# Generated from the Rust types in crds/ by `{REGENERATE}`; do not edit.\n{body}"
    ))
}

/// Every CRD's file name and YAML.
pub fn rendered() -> Result<Vec<(String, String)>, CrdError> {
    all()
        .iter()
        .map(|crd| Ok((file_name(crd), render(crd)?)))
        .collect()
}

/// Writes every CRD into `dir` (created if missing); returns the paths written.
pub fn write_all(dir: &Path) -> Result<Vec<PathBuf>, CrdError> {
    std::fs::create_dir_all(dir).map_err(|source| CrdError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    rendered()?
        .into_iter()
        .map(|(name, yaml)| {
            let path = dir.join(name);
            std::fs::write(&path, yaml).map_err(|source| CrdError::Write {
                path: path.clone(),
                source,
            })?;
            Ok(path)
        })
        .collect()
}

/// The workspace's chart CRD folder (from this crate's manifest directory).
pub fn chart_crds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(CHART_CRDS_DIR)
}

#[cfg(test)]
mod tests;
