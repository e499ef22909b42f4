//! A minimal blocking HTTP/1.1 GET for the public APIs of both implementations (loopback,
//! `Connection: close`, Content-Length or chunked bodies).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use beacon_core::chain::{ChainInfo, PublishedBeacon};

/// `GET path` on `addr`: (status, body), or `None` when the server cannot be reached or the
/// answer is not HTTP.
pub fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Some((status, body))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// The chain info a node serves at `/info` (either JSON shape), checked.
pub fn info(addr: SocketAddr) -> Option<ChainInfo> {
    match get(addr, "/info") {
        Some((200, body)) => ChainInfo::from_json(&body).ok(),
        _ => None,
    }
}

/// The latest round a node serves, 0 when none or unreachable.
pub fn latest_round(addr: SocketAddr) -> u64 {
    match get(addr, "/public/latest") {
        Some((200, body)) => serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["round"].as_u64())
            .unwrap_or(0),
        _ => 0,
    }
}

/// The raw JSON of `/public/{round}` when the node serves it.
pub fn beacon_json(addr: SocketAddr, round: u64) -> Option<String> {
    match get(addr, &format!("/public/{round}")) {
        Some((200, body)) => Some(body),
        _ => None,
    }
}

/// `/public/{round}` parsed.
pub fn beacon(addr: SocketAddr, round: u64) -> Option<PublishedBeacon> {
    let body = beacon_json(addr, round)?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    PublishedBeacon::from_value(&v).ok()
}
