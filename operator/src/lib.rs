//! The beacon operator (design.md, section 5). Reconciling a BeaconNetwork follows Stackable's
//! pipeline: dereference -> validate (pure, [`validate`]) -> build (pure, [`build`]) -> apply
//! (server-side apply) -> status. This crate has the pure steps so far:
//!
//! - [`validate`]: a BeaconNetwork becomes a [`validate::ValidNetwork`] or errors naming fields;
//! - [`build`]: the StatefulSet, headless Service and Certificate of each local member, and the
//!   network's PodDisruptionBudget;
//! - [`keys`]: whether to create a member's key Secret (created once, never rewritten);
//! - [`names`], [`labels`]: object names, addresses, ports, paths, labels;
//! - [`certmanager`]: the typed cert-manager Certificate.

pub mod build;
pub mod certmanager;
pub mod keys;
pub mod labels;
pub mod names;
pub mod rbac;
pub mod rollout;
pub mod validate;
