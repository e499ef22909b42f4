//! Test harness for the beacon operator: a real Kubernetes control plane (etcd,
//! kube-apiserver, kube-controller-manager) and cert-manager's controller, built from their
//! Go modules at pinned versions and run as child processes on 127.0.0.1.
//!
//! - [`binaries`]: builds and caches the Go binaries (`e2e/go/*`).
//! - [`controlplane`]: starts and stops a control plane; [`ControlPlane`].
//! - [`certmanager`]: installs cert-manager's CRDs and runs its controller.
//! - [`interop`]: drand's Go node beside ours: drand networks, mixed networks, their
//!   ceremonies, and drand's client code checking our beacons.
//!
//! See `e2e/README.md` for versions, cache location and measured times.

pub mod binaries;
pub mod certmanager;
pub mod controlplane;
pub mod error;
pub mod interop;
pub mod pki;
pub mod process;

pub use controlplane::{ControlPlane, Options};
pub use error::{Error, Result};
