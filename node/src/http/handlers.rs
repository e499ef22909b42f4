//! Request dispatch and drand's responses.
//!
//! Paths are matched by hand on the raw (still percent-encoded) path rather than with axum's
//! router: drand's chi router sees the raw path too (so `/public/%31` is a bad round, not round
//! 1), the status of every odd path is decided here in one place, and the route label for the
//! request metric falls out of the match.
//!
//! Where this differs from drand's node (`handler/http/server.go`, v2.1.5), on purpose:
//! - Error bodies are JSON `{"error":"..."}` with `Content-Type: application/json`, where drand
//!   writes Go's `http.Error` text (`text/plain`). Where drand answers with an empty body (bad
//!   round 400, future round 404, round not available 404) ours is empty too.
//! - drand answers 500 when its store has no beacon for `latest`, or a past round is missing;
//!   ours says 404 (`must-revalidate, no-cache, max-age=0`), as for any missing round.
//! - Before the first DKG drand has no handler at all for the beacon (404 with a text body);
//!   ours answers 404 with a JSON error saying so, and `/health` answers 503 with
//!   `{"current":N,"expected":0,"error":"..."}` so that health checkers see "not ready" rather
//!   than "no such route".
//! - A request for `latest + 1` waits at most `period + 1 s` (what drand's gRPC `PublicRand`
//!   allows), where drand's HTTP handler waits for the request's own deadline; and it waits
//!   for round 1 on an empty chain too, where drand waits only once it has seen a beacon.
//! - `Expires` and `Last-Modified` are real GMT; drand formats local time with a "GMT" suffix,
//!   which is only right on servers running in UTC.
//! - `/chains` is sorted (drand lists a Go map: random order).
//! - Conditional and range requests follow Go's `http.ServeContent` for the two routes that
//!   use it (`/info`, `/public/{round}`), except that a multi-range request gets the whole
//!   body (200) instead of a multipart answer, and only IMF-fixdate dates are understood.
//! - Unknown paths get a 404 JSON error with the common headers (chi writes a text 404).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use beacon_core::chain::{Beacon, ChainInfo};
use serde::Serialize;

use super::date::{format_http_date, parse_http_date};
use super::{BeaconSource, Clock, SERVER};
use crate::metrics::NodeMetrics;
use beacon_core::hexbytes::HexBytes;

const NANOS: i128 = 1_000_000_000;
/// drand's cache header for what never changes (a stored beacon, the chain info): one week.
const IMMUTABLE: &str = "public, max-age=604800, immutable";
const NO_CACHE_404: &str = "must-revalidate, no-cache, max-age=0";
const NO_CHAIN_YET: &str = "no chain yet: the node has not completed its DKG";

pub(crate) struct App {
    chains: Vec<Arc<dyn BeaconSource>>,
    clock: Clock,
    metrics: Option<Arc<NodeMetrics>>,
}

impl App {
    pub(crate) fn new(
        chains: Vec<Arc<dyn BeaconSource>>,
        clock: Clock,
        metrics: Option<Arc<NodeMetrics>>,
    ) -> App {
        App {
            chains,
            clock,
            metrics,
        }
    }
}

pub(crate) fn router(app: App) -> axum::Router {
    axum::Router::new()
        .fallback(dispatch)
        .with_state(Arc::new(app))
}

/// Which chain a path names.
#[derive(Clone, Copy)]
enum Target<'a> {
    /// No chain hash in the path: the default chain.
    Default,
    /// The first path segment, as the client wrote it.
    Hash(&'a str),
}

enum Route<'a> {
    Info(Target<'a>),
    Health(Target<'a>),
    Latest(Target<'a>),
    Round(Target<'a>, &'a str),
    Chains,
    Metrics,
    NotFound,
}

impl Route<'_> {
    fn parse(path: &str) -> Route<'_> {
        let Some(rest) = path.strip_prefix('/') else {
            return Route::NotFound;
        };
        let segments: Vec<&str> = rest.split('/').collect();
        match segments.as_slice() {
            ["info"] => Route::Info(Target::Default),
            ["health"] => Route::Health(Target::Default),
            ["chains"] => Route::Chains,
            ["metrics"] => Route::Metrics,
            ["public", "latest"] => Route::Latest(Target::Default),
            ["public", round] => Route::Round(Target::Default, round),
            // chi's `{chainHash}` never matches an empty segment.
            ["", ..] => Route::NotFound,
            [hash, "info"] => Route::Info(Target::Hash(hash)),
            [hash, "health"] => Route::Health(Target::Hash(hash)),
            [hash, "public", "latest"] => Route::Latest(Target::Hash(hash)),
            [hash, "public", round] => Route::Round(Target::Hash(hash), round),
            _ => Route::NotFound,
        }
    }

    /// The `route` label of the request metric: the route's pattern, never the raw path (whose
    /// values are the client's and unbounded).
    fn label(&self) -> &'static str {
        let prefixed = |t: &Target, plain, hashed| match t {
            Target::Default => plain,
            Target::Hash(_) => hashed,
        };
        match self {
            Route::Info(t) => prefixed(t, "/info", "/{chainhash}/info"),
            Route::Health(t) => prefixed(t, "/health", "/{chainhash}/health"),
            Route::Latest(t) => prefixed(t, "/public/latest", "/{chainhash}/public/latest"),
            Route::Round(t, _) => prefixed(t, "/public/{round}", "/{chainhash}/public/{round}"),
            Route::Chains => "/chains",
            Route::Metrics => "/metrics",
            Route::NotFound => "other",
        }
    }
}

/// The request as the handlers need it.
struct Req {
    method: Method,
    headers: HeaderMap,
}

async fn dispatch(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let route = Route::parse(uri.path());
    let req = Req { method, headers };
    let response = match &route {
        Route::Info(t) => app.info(*t, &req),
        Route::Health(t) => app.health(*t),
        Route::Latest(t) => app.latest(*t),
        Route::Round(t, round) => app.round(*t, round, &req).await,
        Route::Chains => app.chains(),
        Route::Metrics => app.metrics(),
        Route::NotFound => app.error(
            StatusCode::NOT_FOUND,
            "not found: the routes are /info, /public/latest, /public/{round}, /health, /chains \
             and the same under /{chainhash}/",
        ),
    };
    if let Some(m) = &app.metrics {
        m.http_request(route.label(), response.status().as_u16());
    }
    if req.method == Method::HEAD && response.status() != StatusCode::NOT_MODIFIED {
        // Keep the Content-Length of the body a GET would get, as Go's server does, and send
        // no body.
        let (mut parts, body) = response.into_parts();
        if let Some(len) = axum::body::HttpBody::size_hint(&body).exact() {
            parts
                .headers
                .entry(header::CONTENT_LENGTH)
                .or_insert_with(|| HeaderValue::from(len));
        }
        return Response::from_parts(parts, Body::empty());
    }
    response
}

/// A chain a path resolved to.
enum Resolved {
    Chain(Arc<dyn BeaconSource>, Box<ChainInfo>),
    /// The chain exists on this node but has no DKG yet.
    NoChainYet(Arc<dyn BeaconSource>),
}

impl App {
    fn now_nanos(&self) -> i128 {
        let now = (self.clock)();
        match now.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(e) => -(e.duration().as_nanos() as i128),
        }
    }

    /// Unix seconds, floored as Go's `time.Now().Unix()`.
    fn now_secs(&self) -> i64 {
        let secs = self.now_nanos().div_euclid(NANOS);
        i64::try_from(secs).unwrap_or(if secs < 0 { i64::MIN } else { i64::MAX })
    }

    /// The chain a path names, or the response that says why there is none.
    #[allow(clippy::result_large_err)] // the error is the response itself, built once
    fn resolve(&self, target: Target) -> Result<Resolved, Response> {
        match target {
            Target::Hash(text) => {
                let wanted = hex::decode(text).map_err(|e| {
                    self.error(
                        StatusCode::BAD_REQUEST,
                        &format!("unable to decode chain hash {}: {e}", truncate(text, 80)),
                    )
                })?;
                for chain in &self.chains {
                    if let Some(info) = chain.chain_info() {
                        if info.hash().as_slice() == wanted.as_slice() {
                            return Ok(Resolved::Chain(chain.clone(), Box::new(info)));
                        }
                    }
                }
                Err(self.error(
                    StatusCode::NOT_FOUND,
                    &format!(
                        "no chain with hash {} on this node: /chains lists them",
                        truncate(text, 80)
                    ),
                ))
            }
            Target::Default => {
                let chain =
                    self.chains.iter().find(|c| c.beacon_id() == "default").or(
                        match self.chains.as_slice() {
                            [only] => Some(only),
                            _ => None,
                        },
                    );
                let Some(chain) = chain else {
                    return Err(self.error(
                        StatusCode::NOT_FOUND,
                        "no default chain on this node: use /{chainhash}/... (/chains lists them)",
                    ));
                };
                Ok(match chain.chain_info() {
                    Some(info) => Resolved::Chain(chain.clone(), Box::new(info)),
                    None => Resolved::NoChainYet(chain.clone()),
                })
            }
        }
    }

    /// `/info`: drand's v1 chain info JSON, with the newline Go's `json.Encoder` ends it with.
    fn info(&self, target: Target, req: &Req) -> Response {
        let info = match self.resolve(target) {
            Ok(Resolved::Chain(_, info)) => *info,
            Ok(Resolved::NoChainYet(_)) => return self.error(StatusCode::NOT_FOUND, NO_CHAIN_YET),
            Err(r) => return r,
        };
        let mut body = info.to_json_v1();
        body.push('\n');
        self.serve_content(req, body, info.genesis_time, IMMUTABLE)
    }

    /// `/health`: `{"current":N,"expected":M}`, 200 when N is M or M-1.
    fn health(&self, target: Target) -> Response {
        let (source, info) = match self.resolve(target) {
            Ok(Resolved::Chain(source, info)) => (source, *info),
            Ok(Resolved::NoChainYet(source)) => {
                let current = *source.watch_latest().borrow();
                let body = format!(
                    "{{\"current\":{current},\"expected\":0,\"error\":{}}}",
                    json_string(NO_CHAIN_YET)
                );
                return self.respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &[(header::CACHE_CONTROL, "no-cache".to_owned())],
                    body,
                );
            }
            Err(r) => return r,
        };
        let current = *source.watch_latest().borrow();
        let now = self.now_secs();
        let expected = info.current_round(now);
        // Go's map[string]uint64 marshals with sorted keys: current, expected.
        let body = format!("{{\"current\":{current},\"expected\":{expected}}}");
        if current == expected || current.checked_add(1) == Some(expected) {
            let next = info.time_of_round(expected.saturating_add(1));
            let until = (i128::from(next) * NANOS - self.now_nanos()).max(0) / NANOS;
            self.respond(
                StatusCode::OK,
                &[(
                    header::CACHE_CONTROL,
                    format!("public, must-revalidate, max-age={until}"),
                )],
                body,
            )
        } else {
            self.respond(
                StatusCode::SERVICE_UNAVAILABLE,
                &[(header::CACHE_CONTROL, "no-cache".to_owned())],
                body,
            )
        }
    }

    /// `/public/latest` (and `/public/0`): the last stored beacon, cached until the next round.
    fn latest(&self, target: Target) -> Response {
        let (source, info) = match self.resolve(target) {
            Ok(Resolved::Chain(source, info)) => (source, *info),
            Ok(Resolved::NoChainYet(_)) => return self.error(StatusCode::NOT_FOUND, NO_CHAIN_YET),
            Err(r) => return r,
        };
        let beacon = match source.latest() {
            Ok(Some(b)) => b,
            Ok(None) => {
                return self.error_with(
                    StatusCode::NOT_FOUND,
                    "no beacon stored yet",
                    &[(header::CACHE_CONTROL, NO_CACHE_404.to_owned())],
                )
            }
            Err(e) => return self.store_error(&e),
        };
        let now = self.now_nanos();
        let period = i128::from(info.period) * NANOS;
        let round_time = info.time_of_round(beacon.round);
        let next = i128::from(round_time) * NANOS + period;
        // As drand: the next round's start, or, when that is already past (the chain is
        // catching up), half a period from now.
        let next_time = if next > now { next } else { now + period / 2 };
        let remaining = next_time - now;
        let mut headers = Vec::with_capacity(3);
        if remaining > 0 && remaining < period {
            let secs = (remaining + NANOS - 1) / NANOS;
            // sic: drand writes `max-age:N`, with a colon; kept for byte compatibility.
            headers.push((header::CACHE_CONTROL, format!("max-age:{secs}, public")));
        }
        headers.push((header::EXPIRES, http_date_nanos(next_time)));
        headers.push((header::LAST_MODIFIED, format_http_date(round_time)));
        self.respond(StatusCode::OK, &headers, node_beacon_json(&beacon))
    }

    /// `/public/{round}`.
    async fn round(&self, target: Target<'_>, raw: &str, req: &Req) -> Response {
        let Some(round) = parse_round(raw) else {
            return self.respond(StatusCode::BAD_REQUEST, &[], String::new());
        };
        if round == 0 {
            return self.latest(target);
        }
        let (source, info) = match self.resolve(target) {
            Ok(Resolved::Chain(source, info)) => (source, *info),
            Ok(Resolved::NoChainYet(_)) => return self.error(StatusCode::NOT_FOUND, NO_CHAIN_YET),
            Err(r) => return r,
        };
        let round_time = info.time_of_round(round);
        let period = i128::from(info.period) * NANOS;
        let until = i128::from(round_time) * NANOS - self.now_nanos();
        if until > period {
            // Go: int(time.Until(t).Seconds()), where the Duration saturates at ~292 years.
            let secs = until.min(i128::from(i64::MAX)) / NANOS;
            return self.respond(
                StatusCode::NOT_FOUND,
                &[(
                    header::CACHE_CONTROL,
                    format!("public, must-revalidate, max-age={secs}"),
                )],
                String::new(),
            );
        }
        let mut watch = source.watch_latest();
        let latest = *watch.borrow_and_update();
        let mut waited = false;
        if latest.checked_add(1) == Some(round) {
            // The next beacon is asked for: answer as soon as it is stored.
            let cap = Duration::from_secs(u64::from(info.period) + 1);
            waited = matches!(
                tokio::time::timeout(cap, watch.wait_for(|stored| *stored >= round)).await,
                Ok(Ok(_))
            );
        }
        if !waited {
            let until = i128::from(round_time) * NANOS - self.now_nanos();
            if until > 0 {
                return self.not_available();
            }
        }
        match source.beacon(round) {
            Ok(Some(beacon)) => {
                self.serve_content(req, node_beacon_json(&beacon), round_time, IMMUTABLE)
            }
            Ok(None) => self.not_available(),
            Err(e) => self.store_error(&e),
        }
    }

    /// `/chains`: the hashes of the chains that have one (a DKG behind them), sorted.
    fn chains(&self) -> Response {
        let mut hashes: Vec<String> = self
            .chains
            .iter()
            .filter_map(|c| c.chain_info())
            .map(|info| info.hash_hex())
            .collect();
        hashes.sort();
        hashes.dedup();
        let body = serde_json::to_string(&hashes).unwrap_or_else(|_| "[]".to_owned());
        self.respond(
            StatusCode::OK,
            &[(header::CACHE_CONTROL, "max-age=300".to_owned())],
            body,
        )
    }

    fn metrics(&self) -> Response {
        let Some(metrics) = &self.metrics else {
            return self.error(
                StatusCode::NOT_FOUND,
                "metrics are not enabled on this node",
            );
        };
        let mut response = Response::new(Body::from(metrics.encode()));
        let h = response.headers_mut();
        h.insert(header::SERVER, HeaderValue::from_static(SERVER));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        response
    }

    fn not_available(&self) -> Response {
        self.respond(
            StatusCode::NOT_FOUND,
            &[(header::CACHE_CONTROL, NO_CACHE_404.to_owned())],
            String::new(),
        )
    }

    fn store_error(&self, e: &super::SourceError) -> Response {
        tracing::warn!(error = %e, "public HTTP API: the chain store failed");
        self.error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error: the node could not read its chain store",
        )
    }

    fn error(&self, status: StatusCode, message: &str) -> Response {
        self.error_with(status, message, &[])
    }

    fn error_with(
        &self,
        status: StatusCode,
        message: &str,
        headers: &[(HeaderName, String)],
    ) -> Response {
        let body = format!("{{\"error\":{}}}", json_string(message));
        self.respond(status, headers, body)
    }

    /// A response with drand's common headers (`Server`, `Content-Type: application/json`,
    /// `Access-Control-Allow-Origin: *`) and `extra`.
    fn respond(
        &self,
        status: StatusCode,
        extra: &[(HeaderName, String)],
        body: impl Into<Body>,
    ) -> Response {
        let mut response = Response::new(body.into());
        *response.status_mut() = status;
        let h = response.headers_mut();
        h.insert(header::SERVER, HeaderValue::from_static(SERVER));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        for (name, value) in extra {
            // Our header values are ASCII built above; a failure would only drop the header.
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(name.clone(), v);
            }
        }
        response
    }

    /// Go's `http.ServeContent` for an in-memory body: `Last-Modified`, the conditional
    /// headers (no ETag is sent, so ETag comparisons never match, as in Go) and byte ranges.
    fn serve_content(&self, req: &Req, body: String, modified: i64, cache: &str) -> Response {
        let mut headers = vec![
            (header::CACHE_CONTROL, cache.to_owned()),
            (header::LAST_MODIFIED, format_http_date(modified)),
        ];
        let get_or_head = req.method == Method::GET || req.method == Method::HEAD;
        let value = |name: HeaderName| -> Option<&str> {
            req.headers.get(name).and_then(|v| v.to_str().ok())
        };
        // If-Match (no ETag here: only `*` matches), else If-Unmodified-Since.
        let precondition = match value(header::IF_MATCH) {
            Some(im) => Some(etag_list_has_star(im)),
            None => value(header::IF_UNMODIFIED_SINCE)
                .and_then(parse_http_date)
                .map(|t| modified <= t),
        };
        if precondition == Some(false) {
            return self.respond(StatusCode::PRECONDITION_FAILED, &headers, String::new());
        }
        // If-None-Match (only `*` can match), else If-Modified-Since for GET and HEAD.
        let not_modified = match value(header::IF_NONE_MATCH) {
            Some(inm) => {
                if etag_list_has_star(inm) {
                    if get_or_head {
                        Some(true)
                    } else {
                        return self.respond(
                            StatusCode::PRECONDITION_FAILED,
                            &headers,
                            String::new(),
                        );
                    }
                } else {
                    None
                }
            }
            None if get_or_head => value(header::IF_MODIFIED_SINCE)
                .and_then(parse_http_date)
                .map(|t| modified <= t),
            None => None,
        };
        if not_modified == Some(true) {
            // Go's writeNotModified drops Content-Type and Content-Length.
            let mut r = self.respond(StatusCode::NOT_MODIFIED, &headers, Body::empty());
            r.headers_mut().remove(header::CONTENT_TYPE);
            return r;
        }
        let mut range = value(header::RANGE);
        if let (Some(_), Some(if_range)) = (range, value(header::IF_RANGE)) {
            if !get_or_head || parse_http_date(if_range) != Some(modified) {
                range = None;
            }
        }
        let size = body.len() as u64;
        let mut status = StatusCode::OK;
        let mut content = body;
        match range.map(|r| parse_range(r, size)) {
            None | Some(Ok(None)) => {}
            Some(Ok(Some((start, len)))) => {
                status = StatusCode::PARTIAL_CONTENT;
                headers.push((
                    header::CONTENT_RANGE,
                    format!("bytes {start}-{}/{size}", start + len - 1),
                ));
                // The body is ASCII JSON, so every byte offset is a char boundary; `get`
                // keeps that from ever being a panic.
                content = content
                    .get(start as usize..(start + len) as usize)
                    .unwrap_or_default()
                    .to_owned();
            }
            Some(Err(RangeError::NoOverlap)) => {
                headers.push((header::CONTENT_RANGE, format!("bytes */{size}")));
                return self.error_with(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "invalid range: failed to overlap",
                    &headers,
                );
            }
            Some(Err(RangeError::Invalid)) => {
                return self.error_with(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "invalid range",
                    &headers,
                );
            }
        }
        headers.push((header::ACCEPT_RANGES, "bytes".to_owned()));
        self.respond(status, &headers, content)
    }
}

/// drand's node's beacon JSON: hexjson of its `PublicRandResponse` with metadata stripped,
/// fields in the protobuf struct's order: `round`, `signature`, `previous_signature` (omitted
/// when empty), `randomness`. (The relay and `Beacon::to_json` put `randomness` second.)
pub fn node_beacon_json(beacon: &Beacon) -> String {
    #[derive(Serialize)]
    struct Json {
        #[serde(skip_serializing_if = "is_zero")]
        round: u64,
        #[serde(skip_serializing_if = "HexBytes::is_empty")]
        signature: HexBytes,
        #[serde(skip_serializing_if = "HexBytes::is_empty")]
        previous_signature: HexBytes,
        randomness: HexBytes,
    }
    fn is_zero(r: &u64) -> bool {
        *r == 0
    }
    let json = Json {
        round: beacon.round,
        signature: beacon.signature.clone().into(),
        previous_signature: beacon.previous_signature.clone().into(),
        randomness: beacon.randomness().to_vec().into(),
    };
    // Serialising integers and strings cannot fail.
    serde_json::to_string(&json).unwrap_or_default()
}

/// A round as Go's `strconv.ParseUint(s, 10, 64)` reads it: decimal digits only (no sign, no
/// underscores, no spaces), at most u64::MAX.
fn parse_round(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

enum RangeError {
    Invalid,
    NoOverlap,
}

/// Go's `parseRange`, reduced to what we serve: one range → Some((start, length)); none, or
/// several (which Go answers as multipart), or more bytes than the body → None (whole body).
fn parse_range(header: &str, size: u64) -> Result<Option<(u64, u64)>, RangeError> {
    let Some(spec) = header.strip_prefix("bytes=") else {
        return Err(RangeError::Invalid);
    };
    let mut ranges = Vec::new();
    let mut no_overlap = false;
    for part in spec.split(',') {
        let part = part.trim_matches([' ', '\t']);
        if part.is_empty() {
            continue;
        }
        let Some((start, end)) = part.split_once('-') else {
            return Err(RangeError::Invalid);
        };
        let (start, end) = (
            start.trim_matches([' ', '\t']),
            end.trim_matches([' ', '\t']),
        );
        let digits = |s: &str| -> Result<u64, RangeError> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(RangeError::Invalid);
            }
            s.parse().map_err(|_| RangeError::Invalid)
        };
        if start.is_empty() {
            // A suffix: the last `end` bytes; zero of them cannot be satisfied (RFC 9110).
            let n = digits(end)?.min(size);
            if n == 0 {
                no_overlap = true;
                continue;
            }
            ranges.push((size - n, n));
        } else {
            let first = digits(start)?;
            if first >= size {
                no_overlap = true;
                continue;
            }
            let last = if end.is_empty() {
                size - 1
            } else {
                let last = digits(end)?;
                if first > last {
                    return Err(RangeError::Invalid);
                }
                last.min(size - 1)
            };
            ranges.push((first, last - first + 1));
        }
    }
    if no_overlap && ranges.is_empty() {
        return Err(RangeError::NoOverlap);
    }
    let total: u64 = ranges.iter().map(|(_, n)| *n).fold(0, u64::saturating_add);
    Ok(match ranges.as_slice() {
        [one] if total <= size => Some(*one),
        _ => None,
    })
}

/// Whether an If-Match/If-None-Match list holds `*`: with no ETag on our responses, that is
/// the only entry that can match.
fn etag_list_has_star(list: &str) -> bool {
    list.split(',').any(|e| e.trim() == "*")
}

/// An HTTP date of a time in nanoseconds, truncated to the second as Go formats it.
fn http_date_nanos(nanos: i128) -> String {
    let secs = nanos.div_euclid(NANOS);
    format_http_date(i64::try_from(secs).unwrap_or(i64::MAX))
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned())
}

/// At most `max` characters of client input, for error messages.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_parse_as_go_parseuint() {
        assert_eq!(parse_round("0"), Some(0));
        assert_eq!(parse_round("007"), Some(7));
        assert_eq!(parse_round("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "-1",
            "+1",
            "1_000",
            " 1",
            "1 ",
            "18446744073709551616",
            "99999999999999999999999",
            "0x10",
            "１",
            "latest2",
        ] {
            assert_eq!(parse_round(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ranges_as_go() {
        let ok = |h: &str, size| match parse_range(h, size) {
            Ok(r) => r,
            Err(_) => panic!("{h} should parse"),
        };
        assert_eq!(ok("bytes=0-9", 100), Some((0, 10)));
        assert_eq!(ok("bytes=90-", 100), Some((90, 10)));
        assert_eq!(ok("bytes=-10", 100), Some((90, 10)));
        assert_eq!(ok("bytes=-1000", 100), Some((0, 100)));
        assert_eq!(ok("bytes=50-1000", 100), Some((50, 50)));
        assert_eq!(ok("bytes=0-1,5-6", 100), None);
        assert_eq!(ok("bytes=", 100), None);
        assert_eq!(ok("bytes=100-,0-1", 100), Some((0, 2)));
        for none in ["bytes=100-", "bytes=-0"] {
            assert!(matches!(parse_range(none, 100), Err(RangeError::NoOverlap)));
        }
        for bad in [
            "items=0-1",
            "bytes=a-b",
            "bytes=5-1",
            "bytes=--1",
            "bytes=1",
        ] {
            assert!(
                matches!(parse_range(bad, 100), Err(RangeError::Invalid)),
                "{bad}"
            );
        }
    }

    #[test]
    fn routes() {
        let label = |p: &str| Route::parse(p).label();
        assert_eq!(label("/info"), "/info");
        assert_eq!(label("/public/latest"), "/public/latest");
        assert_eq!(label("/public/12"), "/public/{round}");
        assert_eq!(label("/public/info"), "/public/{round}");
        assert_eq!(label("/abc/public/latest"), "/{chainhash}/public/latest");
        assert_eq!(label("/abc/info"), "/{chainhash}/info");
        assert_eq!(label("/public/info/x"), "other");
        assert_eq!(label("//info"), "other");
        assert_eq!(label("/info/"), "other");
        assert_eq!(label(""), "other");
        assert_eq!(label("/"), "other");
    }

    #[test]
    fn truncation_is_char_safe() {
        assert_eq!(truncate("ééé", 2), "éé...");
        assert_eq!(truncate("ab", 2), "ab");
    }
}
