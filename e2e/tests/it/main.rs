//! Integration tests against a real control plane (etcd, kube-apiserver,
//! kube-controller-manager, cert-manager) built from source by the harness. The first run on
//! a machine builds the binaries (see e2e/README.md); without Go the tests fail, with a
//! message that says how to install it.

mod beacon_crds;
mod cert_manager;
mod chart;
mod chart_cluster;
mod chart_dashboard;
mod common;
mod controller_manager;
mod crd_validation;
mod drand_interop;
mod kubelet_lifecycle;
mod kubelet_pods;
mod kubelet_statefulset;
mod lifecycle;
mod operator_network;
mod operator_rollout;
mod rbac;
mod server_side_apply;
mod status_subresource;
