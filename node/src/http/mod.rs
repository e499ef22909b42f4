//! drand's public HTTP API, as drand's own node serves it (the "legacy" listener of
//! `handler/http/server.go`), plus `/metrics`.
//!
//! Routes: `/info`, `/public/latest`, `/public/{round}`, `/health`, `/chains`, the same four
//! chain routes under `/{chainhash}/...`, and `/metrics` when the node has metrics. Bodies,
//! status codes and cache headers follow drand's node byte for byte where drand defines them
//! (see `reference/drand-protocol.md` §3.1); the deliberate differences are listed in
//! [`handlers`]. Everything the router needs comes in through [`router`]'s arguments: no
//! global state, so several nodes can serve from one test process.

mod date;
mod handlers;
mod memory;

use std::sync::Arc;
use std::time::SystemTime;

use beacon_core::chain::{Beacon, ChainInfo};

pub use date::{format_http_date, parse_http_date};
pub use handlers::node_beacon_json;
pub use memory::MemorySource;

/// What the HTTP API reads of one chain. The daemon implements it over its chain store.
///
/// Calls are made from async request handlers, so they must be quick (an in-memory value or
/// one point read from the store); none of them may block on the network.
pub trait BeaconSource: Send + Sync + 'static {
    /// The beacon ID this chain runs under ("default" for the default beacon). Known before
    /// the DKG, so that the unprefixed routes can tell "the default chain has no DKG yet"
    /// from "this node has no default chain".
    fn beacon_id(&self) -> &str;
    /// None until the node's first DKG completed.
    fn chain_info(&self) -> Option<ChainInfo>;
    fn beacon(&self, round: u64) -> Result<Option<Beacon>, SourceError>;
    fn latest(&self) -> Result<Option<Beacon>, SourceError>;
    /// The last stored round (0 when none); changes when a beacon is stored. Used to answer a
    /// request for the next round as soon as it exists, and for `/health`.
    fn watch_latest(&self) -> tokio::sync::watch::Receiver<u64>;
}

/// A [`BeaconSource`] failed to read its store. Answered with a 500 and logged; the text is
/// never sent to the client.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("reading the chain store: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The time source of the router, so that tests can fix the time.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(SystemTime::now)
}

/// The `Server` header value (drand sends its bare version; we name ourselves too, so a client
/// can tell the implementations apart).
pub const SERVER: &str = concat!("beacon-node/", env!("CARGO_PKG_VERSION"));

/// The public API for `chains`, answering at the unprefixed routes for the chain whose beacon
/// ID is "default" (or the only chain, if there is one). With `metrics`, also `/metrics`
/// (and every request is counted by route and status code).
pub fn router(
    chains: Vec<Arc<dyn BeaconSource>>,
    clock: Clock,
    metrics: Option<Arc<crate::metrics::NodeMetrics>>,
) -> axum::Router {
    handlers::router(handlers::App::new(chains, clock, metrics))
}
