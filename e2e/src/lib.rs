//! Test harness for the beacon operator: a real Kubernetes control plane (etcd,
//! kube-apiserver, kube-controller-manager), cert-manager's controller and helm, built from their
//! Go modules at pinned versions and run as child processes on 127.0.0.1.
//!
//! - [`binaries`]: builds and caches the Go binaries (`e2e/go/*`).
//! - [`controlplane`]: starts and stops a control plane; [`ControlPlane`].
//! - [`certmanager`]: installs cert-manager's CRDs and runs its controller.
//! - [`helm`]: runs the `helm` built from its Go module against `charts/beacon-operator`.
//! - [`podnet`]: a bridge and a network namespace per pod; [`kubelet`]: the test kubelet,
//!   a fixture that runs pods as local processes of the workspace's binaries.
//! - [`interop`]: drand's Go node beside ours: drand networks, mixed networks, their
//!   ceremonies, and drand's client code checking our beacons.
//! - [`promtext`]: reads a Prometheus `/metrics` text (samples, histogram quantiles).
//!
//! See `e2e/README.md` for versions, cache location and measured times.

pub mod beacons;
pub mod binaries;
pub mod certmanager;
pub mod controlplane;
pub mod error;
pub mod helm;
pub mod interop;
pub mod kubelet;
pub mod lock;
pub mod pki;
pub mod podnet;
pub mod process;
pub mod promtext;
pub mod rundir;

pub use controlplane::{ControlPlane, Options};
pub use error::{Error, Result};
pub use kubelet::{Kubelet, KubeletOptions};
