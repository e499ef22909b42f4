//! Test harness for the beacon operator: a real Kubernetes control plane (etcd,
//! kube-apiserver, kube-controller-manager), cert-manager's controller and helm, built from their
//! Go modules at pinned versions and run as child processes on 127.0.0.1.
//!
//! - [`binaries`]: builds and caches the Go binaries (`e2e/go/*`).
//! - [`controlplane`]: starts and stops a control plane; [`ControlPlane`].
//! - [`certmanager`]: installs cert-manager's CRDs and runs its controller.
//! - [`helm`]: runs the `helm` built from its Go module against `charts/beacon-operator`.
//!
//! See `e2e/README.md` for versions, cache location and measured times.

pub mod binaries;
pub mod certmanager;
pub mod controlplane;
pub mod error;
pub mod helm;
pub mod pki;
pub mod process;

pub use controlplane::{ControlPlane, Options};
pub use error::{Error, Result};
