//! The control plane's own PKI: one CA, the API server's serving certificate, client
//! certificates for the admin user and the controllers, and the service-account key pair.
//! Everything is ECDSA P-256 (which kube-apiserver accepts for serving, client and
//! service-account keys) and written as PEM files.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::error::{Error, Result};

/// The first address of [`crate::controlplane::SERVICE_CIDR`]: the `kubernetes` Service's
/// ClusterIP, which in-cluster clients would use (a name in the serving certificate only;
/// nothing connects to it here).
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

/// A certificate and its private key, as PEM files on disk.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Every file of the control plane's PKI.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The cluster CA certificate (trusted for serving and client certificates).
    pub ca_cert: PathBuf,
    /// The CA's private key (the controller manager signs CSRs with it).
    pub ca_key: PathBuf,
    /// The API server's serving certificate for 127.0.0.1, localhost and `kubernetes.default…`.
    pub apiserver: CertFiles,
    /// User `admin` in group `system:masters`.
    pub admin: CertFiles,
    /// User `system:kube-controller-manager`, bound by the default RBAC policy.
    pub controller_manager: CertFiles,
    /// The private key that signs service-account tokens.
    pub sa_key: PathBuf,
    /// Its public key, which verifies them.
    pub sa_pub: PathBuf,
}

fn pki_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> Error {
    move |source| Error::Pki { what, source }
}

fn write(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).map_err(Error::io("cannot write a PKI file", path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
            Error::io("cannot restrict the permissions of a PKI file", path),
        )?;
    }
    Ok(())
}

impl Pki {
    /// Generates a fresh PKI into `dir` (which must exist); the API server's certificate
    /// also names `extra_ips` (the pod network's bridge address).
    pub fn generate(dir: &Path, extra_ips: &[IpAddr]) -> Result<Pki> {
        let ca_key = KeyPair::generate().map_err(pki_err("the CA key"))?;
        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).map_err(pki_err("the CA parameters"))?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "beacon-e2e-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key_pem = ca_key.serialize_pem();
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key)
            .map_err(pki_err("the CA certificate"))?;

        let ca_cert = dir.join("ca.crt");
        let ca_key_path = dir.join("ca.key");
        write(&ca_cert, &ca.pem())?;
        write(&ca_key_path, &ca_key_pem)?;

        let leaf = |name: &str,
                    cn: &str,
                    org: Option<&str>,
                    sans: Vec<SanType>,
                    usage: ExtendedKeyUsagePurpose|
         -> Result<CertFiles> {
            let key = KeyPair::generate().map_err(pki_err("a certificate key"))?;
            let mut params = CertificateParams::new(Vec::<String>::new())
                .map_err(pki_err("certificate parameters"))?;
            params.distinguished_name.push(DnType::CommonName, cn);
            if let Some(org) = org {
                params
                    .distinguished_name
                    .push(DnType::OrganizationName, org);
            }
            params.subject_alt_names = sans;
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = vec![usage];
            let cert = params
                .signed_by(&key, &ca)
                .map_err(pki_err("a certificate"))?;
            let files = CertFiles {
                cert: dir.join(format!("{name}.crt")),
                key: dir.join(format!("{name}.key")),
            };
            write(&files.cert, &cert.pem())?;
            write(&files.key, &key.serialize_pem())?;
            Ok(files)
        };

        let dns = |s: &str| -> Result<SanType> {
            Ok(SanType::DnsName(
                s.try_into().map_err(pki_err("a DNS name"))?,
            ))
        };
        let mut sans = vec![
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::IpAddress(IpAddr::V4(KUBERNETES_SERVICE_IP)),
            dns("localhost")?,
            dns("kubernetes")?,
            dns("kubernetes.default")?,
            dns("kubernetes.default.svc")?,
            dns("kubernetes.default.svc.cluster.local")?,
        ];
        for ip in extra_ips {
            if !ip.is_loopback() {
                sans.push(SanType::IpAddress(*ip));
            }
        }
        let apiserver = leaf(
            "apiserver",
            "kube-apiserver",
            None,
            sans,
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let admin = leaf(
            "admin",
            "admin",
            Some("system:masters"),
            vec![],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        let controller_manager = leaf(
            "kube-controller-manager",
            "system:kube-controller-manager",
            None,
            vec![],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;

        let sa = KeyPair::generate().map_err(pki_err("the service-account key"))?;
        let sa_key = dir.join("sa.key");
        let sa_pub = dir.join("sa.pub");
        write(&sa_key, &sa.serialize_pem())?;
        write(&sa_pub, &sa.public_key_pem())?;

        Ok(Pki {
            ca_cert,
            ca_key: ca_key_path,
            apiserver,
            admin,
            controller_manager,
            sa_key,
            sa_pub,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_every_file_as_pem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::generate(dir.path(), &[]).expect("generate");
        let read = |p: &Path| std::fs::read_to_string(p).expect("read");
        for cert in [
            &pki.ca_cert,
            &pki.apiserver.cert,
            &pki.admin.cert,
            &pki.controller_manager.cert,
        ] {
            assert!(
                read(cert).starts_with("-----BEGIN CERTIFICATE-----"),
                "{}",
                cert.display()
            );
        }
        for key in [
            &pki.ca_key,
            &pki.apiserver.key,
            &pki.admin.key,
            &pki.controller_manager.key,
            &pki.sa_key,
        ] {
            assert!(
                read(key).starts_with("-----BEGIN PRIVATE KEY-----"),
                "{}",
                key.display()
            );
        }
        assert!(read(&pki.sa_pub).starts_with("-----BEGIN PUBLIC KEY-----"));
    }
}
