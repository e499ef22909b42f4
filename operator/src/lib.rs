//! The beacon operator (design.md, section 5). Reconciling a BeaconNetwork follows Stackable's
//! pipeline: dereference -> validate (pure, [`validate`]) -> build (pure, [`build`]) -> apply
//! (server-side apply) -> status ([`network::status`], pure). Ceremonies are driven through the
//! members' control listeners by [`ceremony`], whose decisions are pure ([`ceremony::plan`]).
//!
//! - [`validate`]: a BeaconNetwork becomes a [`validate::ValidNetwork`] or errors naming fields;
//! - [`build`]: the StatefulSet, headless Service and Certificate of each local member, and the
//!   network's PodDisruptionBudget;
//! - [`keys`]: whether to create a member's key Secret (created once, never rewritten);
//! - [`network`], [`ceremony`]: the two controllers; [`health`]: the background collector;
//! - [`control`]: the operator's control CA and its mTLS clients to members;
//! - [`leader`], [`server`], [`metrics`], [`run`]: the process around them;
//! - [`names`], [`labels`]: object names, addresses, ports, paths, labels;
//! - [`certmanager`]: the typed cert-manager Certificate.

pub mod build;
pub mod ceremony;
pub mod certmanager;
pub mod context;
pub mod control;
pub mod error;
pub mod health;
pub mod keys;
pub mod labels;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod network;
pub mod rbac;
pub mod rollout;
pub mod run;
pub mod server;
pub mod validate;
