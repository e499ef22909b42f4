//! A pod's volumes as folders on the host, which the sandbox bind-mounts at each
//! `mountPath`: Secret, ConfigMap, downward API and projected volumes (service-account
//! tokens from the TokenRequest API, bound to the pod) written as files and refreshed while
//! the pod runs, emptyDir, hostPath and PersistentVolumeClaims (the PV's folder).
//!
//! With `fsGroup`, files are given that group as the kubelet does: group read for the
//! read-only kinds, read-write for emptyDir and claims, setgid folders.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{
    DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, ServiceAccount,
    Volume,
};
use kube::api::PostParams;
use kube::Api;

use super::env::{field_value, PodFacts, Sources};

/// A volume ready to be mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    pub path: PathBuf,
    /// Secret, ConfigMap, downward API and projected volumes are always mounted read-only.
    pub read_only: bool,
}

const DEFAULT_MODE: u32 = 0o644;

/// The files of the read-only kinds, refreshed in place (written to a temporary name and
/// renamed, so a reader never sees half a file).
#[derive(Debug, Default)]
pub struct PodVolumes {
    /// Files written per volume last time, to remove the ones that went away.
    written: BTreeMap<String, BTreeSet<PathBuf>>,
    /// Service-account tokens: (volume, path) -> (token, refresh after).
    tokens: BTreeMap<(String, String), (String, Instant)>,
}

/// What volumes need from the pod and the kubelet.
pub struct Context<'a> {
    pub pod: &'a Pod,
    pub facts: &'a PodFacts,
    pub sources: &'a Sources,
    /// `<pod dir>/volumes`.
    pub dir: &'a Path,
    pub fs_group: Option<u32>,
}

fn relative_ok(path: &str) -> bool {
    let p = Path::new(path);
    !path.is_empty() && p.is_relative() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

/// One file to write into a volume.
struct File {
    path: String,
    bytes: Vec<u8>,
    mode: u32,
}

impl PodVolumes {
    /// Brings every volume of the pod up to date; the map is by volume name. An error is the
    /// message a kubelet shows while the pod waits (`ContainerCreating`).
    pub async fn sync(&mut self, ctx: &Context<'_>) -> Result<BTreeMap<String, Ready>, String> {
        let mut ready = BTreeMap::new();
        let volumes = ctx
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        for volume in &volumes {
            let r = self.sync_one(ctx, volume).await.map_err(|e| {
                format!("MountVolume.SetUp failed for volume {:?}: {e}", volume.name)
            })?;
            ready.insert(volume.name.clone(), r);
        }
        Ok(ready)
    }

    async fn sync_one(&mut self, ctx: &Context<'_>, volume: &Volume) -> Result<Ready, String> {
        let dir = ctx.dir.join(&volume.name);
        let name = volume.name.as_str();
        if let Some(s) = &volume.secret {
            let secret_name = s.secret_name.clone().unwrap_or_default();
            let optional = s.optional.unwrap_or(false);
            let default_mode = s.default_mode.map_or(DEFAULT_MODE, |m| m as u32);
            let data = match ctx.sources.secret(&secret_name).await? {
                Some(secret) => secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect(),
                None if optional => BTreeMap::new(),
                None => return Err(format!("secret {secret_name:?} not found")),
            };
            let files = key_files(
                &data,
                s.items.as_deref(),
                default_mode,
                optional,
                "secret",
                &secret_name,
            )?;
            self.write_files(name, &dir, files, ctx.fs_group)?;
            return Ok(Ready {
                path: dir,
                read_only: true,
            });
        }
        if let Some(c) = &volume.config_map {
            let cm_name = c.name.clone();
            let optional = c.optional.unwrap_or(false);
            let default_mode = c.default_mode.map_or(DEFAULT_MODE, |m| m as u32);
            let data = match ctx.sources.config_map(&cm_name).await? {
                Some(cm) => config_map_bytes(cm),
                None if optional => BTreeMap::new(),
                None => return Err(format!("configmap {cm_name:?} not found")),
            };
            let files = key_files(
                &data,
                c.items.as_deref(),
                default_mode,
                optional,
                "configmap",
                &cm_name,
            )?;
            self.write_files(name, &dir, files, ctx.fs_group)?;
            return Ok(Ready {
                path: dir,
                read_only: true,
            });
        }
        if let Some(d) = &volume.downward_api {
            let default_mode = d.default_mode.map_or(DEFAULT_MODE, |m| m as u32);
            let files = downward_files(ctx, d.items.as_deref().unwrap_or_default(), default_mode)?;
            self.write_files(name, &dir, files, ctx.fs_group)?;
            return Ok(Ready {
                path: dir,
                read_only: true,
            });
        }
        if let Some(p) = &volume.projected {
            let default_mode = p.default_mode.map_or(DEFAULT_MODE, |m| m as u32);
            let mut files = Vec::new();
            for source in p.sources.iter().flatten() {
                if let Some(s) = &source.secret {
                    let optional = s.optional.unwrap_or(false);
                    let data = match ctx.sources.secret(&s.name).await? {
                        Some(secret) => secret
                            .data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.0))
                            .collect(),
                        None if optional => BTreeMap::new(),
                        None => return Err(format!("secret {:?} not found", s.name)),
                    };
                    files.extend(key_files(
                        &data,
                        s.items.as_deref(),
                        default_mode,
                        optional,
                        "secret",
                        &s.name,
                    )?);
                }
                if let Some(c) = &source.config_map {
                    let optional = c.optional.unwrap_or(false);
                    let data = match ctx.sources.config_map(&c.name).await? {
                        Some(cm) => config_map_bytes(cm),
                        None if optional => BTreeMap::new(),
                        None => return Err(format!("configmap {:?} not found", c.name)),
                    };
                    files.extend(key_files(
                        &data,
                        c.items.as_deref(),
                        default_mode,
                        optional,
                        "configmap",
                        &c.name,
                    )?);
                }
                if let Some(d) = &source.downward_api {
                    files.extend(downward_files(
                        ctx,
                        d.items.as_deref().unwrap_or_default(),
                        default_mode,
                    )?);
                }
                if let Some(t) = &source.service_account_token {
                    let token = self.token(ctx, name, t).await?;
                    files.push(File {
                        path: t.path.clone(),
                        bytes: token.into_bytes(),
                        mode: default_mode,
                    });
                }
                if source.cluster_trust_bundle.is_some() || source.pod_certificate.is_some() {
                    return Err("clusterTrustBundle and podCertificate projections are not supported by the test kubelet".into());
                }
            }
            self.write_files(name, &dir, files, ctx.fs_group)?;
            return Ok(Ready {
                path: dir,
                read_only: true,
            });
        }
        if volume.empty_dir.is_some() {
            if !dir.is_dir() {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                    .map_err(|e| format!("cannot set the mode of {}: {e}", dir.display()))?;
                if let Some(gid) = ctx.fs_group {
                    set_ownership(&dir, gid, false)?;
                }
            }
            return Ok(Ready {
                path: dir,
                read_only: false,
            });
        }
        if let Some(h) = &volume.host_path {
            let path = PathBuf::from(&h.path);
            match h.type_.as_deref().unwrap_or("") {
                "DirectoryOrCreate" if !path.exists() => {
                    std::fs::create_dir_all(&path)
                        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
                }
                "" | "DirectoryOrCreate" => {}
                _ if !path.exists() => {
                    return Err(format!("hostPath {} does not exist", path.display()))
                }
                _ => {}
            }
            return Ok(Ready {
                path,
                read_only: false,
            });
        }
        if let Some(c) = &volume.persistent_volume_claim {
            let namespace = ctx.sources.namespace.clone();
            let client = ctx.sources.client.clone();
            let claim = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &namespace)
                .get_opt(&c.claim_name)
                .await
                .map_err(|e| {
                    format!(
                        "cannot read PersistentVolumeClaim {namespace}/{}: {e}",
                        c.claim_name
                    )
                })?
                .ok_or_else(|| format!("persistentvolumeclaim {:?} not found", c.claim_name))?;
            let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
            let pv_name = claim
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.clone())
                .filter(|_| bound);
            let Some(pv_name) = pv_name else {
                return Err(format!(
                    "persistentvolumeclaim {:?} is not bound yet",
                    c.claim_name
                ));
            };
            let pv = Api::<PersistentVolume>::all(client)
                .get(&pv_name)
                .await
                .map_err(|e| format!("cannot read PersistentVolume {pv_name}: {e}"))?;
            let spec = pv.spec.unwrap_or_default();
            let path = spec
                .host_path
                .map(|h| h.path)
                .or_else(|| spec.local.map(|l| l.path))
                .ok_or_else(|| format!("PersistentVolume {pv_name} is neither hostPath nor local; the test kubelet mounts only those"))?;
            let path = PathBuf::from(path);
            if !path.is_dir() {
                return Err(format!(
                    "the folder {} of PersistentVolume {pv_name} does not exist",
                    path.display()
                ));
            }
            if let Some(gid) = ctx.fs_group {
                set_ownership_recursive(&path, gid)?;
            }
            return Ok(Ready {
                path,
                read_only: c.read_only.unwrap_or(false),
            });
        }
        Err("this volume type is not supported by the test kubelet (secret, configMap, downwardAPI, projected, emptyDir, hostPath and persistentVolumeClaim are)".into())
    }

    async fn token(
        &mut self,
        ctx: &Context<'_>,
        volume: &str,
        source: &k8s_openapi::api::core::v1::ServiceAccountTokenProjection,
    ) -> Result<String, String> {
        let key = (volume.to_string(), source.path.clone());
        if let Some((token, refresh)) = self.tokens.get(&key) {
            if Instant::now() < *refresh {
                return Ok(token.clone());
            }
        }
        let spec = ctx.pod.spec.as_ref();
        let sa = spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let seconds = source.expiration_seconds.unwrap_or(3600).max(600);
        let request: TokenRequest = serde_json::from_value(serde_json::json!({
            "spec": {
                "audiences": source.audience.iter().collect::<Vec<_>>(),
                "expirationSeconds": seconds,
                "boundObjectRef": {
                    "kind": "Pod",
                    "apiVersion": "v1",
                    "name": ctx.pod.metadata.name,
                    "uid": ctx.pod.metadata.uid,
                },
            }
        }))
        .map_err(|e| format!("bad token request: {e}"))?;
        let namespace = &ctx.sources.namespace;
        let token = Api::<ServiceAccount>::namespaced(ctx.sources.client.clone(), namespace)
            .create_token_request(&sa, &PostParams::default(), &request)
            .await
            .map_err(|e| format!("cannot get a token for ServiceAccount {namespace}/{sa}: {e}"))?
            .status
            .and_then(|s| s.token)
            .ok_or_else(|| {
                format!("the token request for ServiceAccount {namespace}/{sa} returned no token")
            })?;
        // As the kubelet: renew once 80% of the lifetime has passed.
        let refresh = Instant::now() + Duration::from_secs(seconds as u64 * 4 / 5);
        self.tokens.insert(key, (token.clone(), refresh));
        Ok(token)
    }

    fn write_files(
        &mut self,
        volume: &str,
        dir: &Path,
        files: Vec<File>,
        fs_group: Option<u32>,
    ) -> Result<(), String> {
        let fresh = !dir.is_dir();
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        if fresh {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("cannot set the mode of {}: {e}", dir.display()))?;
            if let Some(gid) = fs_group {
                set_ownership(dir, gid, true)?;
            }
        }
        let mut now = BTreeSet::new();
        for file in files {
            let path = dir.join(&file.path);
            if let Some(parent) = path.parent() {
                if !parent.is_dir() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
                    if let Some(gid) = fs_group {
                        set_ownership(parent, gid, true)?;
                    }
                }
            }
            let mut mode = file.mode & 0o7777;
            if fs_group.is_some() {
                mode |= 0o440;
            }
            let same = std::fs::read(&path).is_ok_and(|b| b == file.bytes)
                && std::fs::metadata(&path).is_ok_and(|m| m.permissions().mode() & 0o7777 == mode);
            if !same {
                let tmp = path.with_file_name(format!(
                    ".{}.tmp",
                    path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
                ));
                std::fs::write(&tmp, &file.bytes)
                    .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
                if let Some(gid) = fs_group {
                    std::os::unix::fs::chown(&tmp, None, Some(gid))
                        .map_err(|e| format!("cannot set the group of {}: {e}", tmp.display()))?;
                }
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| format!("cannot set the mode of {}: {e}", tmp.display()))?;
                std::fs::rename(&tmp, &path)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
            now.insert(path);
        }
        if let Some(before) = self.written.get(volume) {
            for gone in before.difference(&now) {
                let _ = std::fs::remove_file(gone);
            }
        }
        self.written.insert(volume.to_string(), now);
        Ok(())
    }
}

fn config_map_bytes(cm: k8s_openapi::api::core::v1::ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.unwrap_or_default() {
        data.insert(k, v.0);
    }
    data
}

/// The files of a Secret or ConfigMap: every key, or the listed items.
fn key_files(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
    kind: &str,
    name: &str,
) -> Result<Vec<File>, String> {
    let mut files = Vec::new();
    match items {
        None => {
            for (k, v) in data {
                files.push(File {
                    path: k.clone(),
                    bytes: v.clone(),
                    mode: default_mode,
                });
            }
        }
        Some(items) => {
            for item in items {
                if !relative_ok(&item.path) {
                    return Err(format!(
                        "item path {:?} must be relative, without `..`",
                        item.path
                    ));
                }
                match data.get(&item.key) {
                    Some(v) => files.push(File {
                        path: item.path.clone(),
                        bytes: v.clone(),
                        mode: item.mode.map_or(default_mode, |m| m as u32),
                    }),
                    None if optional => {}
                    None => {
                        return Err(format!(
                            "configured key {:?} not found in {kind} {name:?}",
                            item.key
                        ))
                    }
                }
            }
        }
    }
    Ok(files)
}

fn downward_files(
    ctx: &Context<'_>,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
) -> Result<Vec<File>, String> {
    let mut files = Vec::new();
    for item in items {
        if !relative_ok(&item.path) {
            return Err(format!(
                "downwardAPI path {:?} must be relative, without `..`",
                item.path
            ));
        }
        let value = match (&item.field_ref, &item.resource_field_ref) {
            (Some(f), _) => field_value(ctx.pod, ctx.facts, f)?,
            (None, Some(_)) => {
                return Err(
                    "downwardAPI resourceFieldRef is not supported by the test kubelet".into(),
                )
            }
            (None, None) => String::new(),
        };
        files.push(File {
            path: item.path.clone(),
            bytes: value.into_bytes(),
            mode: item.mode.map_or(default_mode, |m| m as u32),
        });
    }
    Ok(files)
}

/// As the kubelet does for fsGroup: group `gid`, group read (read-only kinds) or read-write,
/// and setgid on folders.
fn set_ownership(path: &Path, gid: u32, read_only: bool) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, None, Some(gid))
        .map_err(|e| format!("cannot set the group of {}: {e}", path.display()))?;
    let mut mask = if read_only { 0o440 } else { 0o660 };
    if meta.is_dir() {
        mask |= 0o2110;
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode | mask != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | mask))
            .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    }
    Ok(())
}

fn set_ownership_recursive(path: &Path, gid: u32) -> Result<(), String> {
    set_ownership(path, gid, false)?;
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        let entries =
            std::fs::read_dir(path).map_err(|e| format!("cannot list {}: {e}", path.display()))?;
        for entry in entries.flatten() {
            set_ownership_recursive(&entry.path(), gid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_pick_keys_and_modes() {
        let data: BTreeMap<String, Vec<u8>> = [
            ("a".to_string(), b"1".to_vec()),
            ("b".into(), b"2".to_vec()),
        ]
        .into();
        let items = vec![KeyToPath {
            key: "b".into(),
            path: "sub/b.txt".into(),
            mode: Some(0o400),
            ..KeyToPath::default()
        }];
        let files = key_files(&data, Some(&items), 0o644, false, "secret", "s").expect("files");
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].path, "sub/b.txt");
        assert_eq!(files[0].mode, 0o400);
        let all = key_files(&data, None, 0o644, false, "secret", "s").expect("files");
        assert_eq!(all.len(), 2);
        let missing = vec![KeyToPath {
            key: "c".into(),
            path: "c".into(),
            mode: None,
            ..KeyToPath::default()
        }];
        let err = key_files(&data, Some(&missing), 0o644, false, "secret", "s")
            .err()
            .unwrap_or_default();
        assert!(err.contains("\"c\""), "{err}");
        assert!(key_files(&data, Some(&missing), 0o644, true, "secret", "s").is_ok());
        let escape = vec![KeyToPath {
            key: "a".into(),
            path: "../x".into(),
            mode: None,
            ..KeyToPath::default()
        }];
        assert!(key_files(&data, Some(&escape), 0o644, false, "secret", "s").is_err());
    }
}
