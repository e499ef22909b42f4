//! Five real nodes over TLS: beacons, kills, restarts with sync, a stalled network resuming,
//! and refusals of plaintext and foreign certificates.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use beacon_core::chain::PublishedBeacon;
use beacon_core::crypto::Scheme;
use rand::rngs::OsRng;

use crate::netharness::{http_get, metric_sum, metrics, TestNet};

#[test]
fn five_nodes_survive_kills_and_restarts_without_a_gap() {
    let mut net = TestNet::new(5, 3, 1, Scheme::PedersenBlsChained, 4, 11);
    net.start_all();

    net.wait_until("round 20 on every node", Duration::from_secs(60), || {
        (0..5).all(|i| net.latest(i) >= 20)
    });
    let info = net.info(0);
    for i in 1..5 {
        assert_eq!(net.info(i), info, "node {i} serves another chain");
    }
    let first: Vec<PublishedBeacon> = (1..=20)
        .map(|r| net.beacon(0, r).expect("stored"))
        .collect();
    assert!(
        info.verify_beacons(&first, &mut OsRng).is_empty(),
        "beacons 1..=20 verify"
    );
    for i in 1..5 {
        assert_eq!(
            net.beacon(i, 20).map(|b| b.beacon),
            Some(first[19].beacon.clone()),
            "node {i} agrees on round 20"
        );
    }

    // Two of five down: three remain, the threshold; the chain goes on.
    net.kill(3);
    net.kill(4);
    let l = net.latest(0);
    net.wait_until(
        "the chain to go on with 3 of 5",
        Duration::from_secs(15),
        || net.latest(0) >= l + 4,
    );

    // They come back and catch up by sync.
    net.start(3);
    net.start(4);
    net.wait_until(
        "restarted nodes to catch up",
        Duration::from_secs(30),
        || {
            let top = net.latest(0);
            net.latest(3) + 1 >= top && net.latest(4) + 1 >= top
        },
    );
    assert!(
        net.beacon(3, l + 2).is_some(),
        "node 3 synced the rounds it missed"
    );
    for i in [3, 4] {
        let (status, body) = http_get(net.nodes[i].http, "/health");
        assert_eq!(status, 200, "node {i} healthy after catch-up: {body}");
    }

    // Three down: below threshold, the chain stops.
    net.kill(2);
    net.kill(3);
    net.kill(4);
    std::thread::sleep(Duration::from_millis(1500));
    let m = net.latest(0).max(net.latest(1));
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        net.latest(0) <= m + 1,
        "no beacon without a threshold of members"
    );

    // One comes back: the chain resumes, catching up round by round.
    net.start(2);
    net.wait_until("the chain to resume", Duration::from_secs(40), || {
        net.latest(0) >= m + 5
    });

    // No gap anywhere: every round from 1 is served and verifies.
    let top = net.latest(0);
    let all: Vec<PublishedBeacon> = (1..=top)
        .map(|r| {
            net.beacon(0, r)
                .unwrap_or_else(|| panic!("round {r} missing on node 0"))
        })
        .collect();
    assert!(
        info.verify_beacons(&all, &mut OsRng).is_empty(),
        "every beacon 1..={top} verifies"
    );

    let text = metrics(net.nodes[0].http);
    assert!(
        metric_sum(&text, "beacon_aggregation_seconds_count", "") > 0.0,
        "{text}"
    );
}

#[test]
fn plaintext_and_foreign_certificates_are_refused_and_logged() {
    let mut net = TestNet::new(3, 2, 1, Scheme::BlsUnchainedG1Rfc9380, 3, 31);
    net.start_all();
    net.wait_until("a few beacons", Duration::from_secs(40), || {
        (0..3).all(|i| net.latest(i) >= 3)
    });

    // A plaintext HTTP/2 client (the prior-knowledge preface) on the TLS-only peer port.
    let peer = net.nodes[0].peer;
    let mut s = TcpStream::connect(peer).expect("connect");
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .expect("write");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    assert!(
        !buf[..n].windows(4).any(|w| w == b"HTTP"),
        "no HTTP answer to plaintext"
    );
    drop(s);

    // A client that trusts our CA but presents a certificate from another CA.
    let other = beacon_node::net::pki::TestCa::new("some other CA").expect("CA");
    let foreign = other
        .issue(std::slice::from_ref(&net.nodes[1].ip))
        .expect("cert");
    let ca_pem = std::fs::read(net.nodes[0].dir.join("tls/ca.crt")).expect("ca");
    let outcome = foreign_client_handshake(peer, &ca_pem, &foreign.cert_pem, &foreign.key_pem);
    assert!(
        outcome.is_err(),
        "a foreign client certificate must not get through"
    );

    net.wait_until(
        "node 0 to log both refusals",
        Duration::from_secs(20),
        || {
            let log = net.log(0);
            log.contains("\"reason\":\"not_tls\"") && log.contains("\"reason\":\"bad_certificate\"")
        },
    );
    let log = net.log(0);
    let not_tls = log
        .lines()
        .find(|l| l.contains("\"reason\":\"not_tls\""))
        .expect("line");
    assert!(not_tls.contains("refused peer connection"), "{not_tls}");
    assert!(
        not_tls.contains("\"peer\":\"127.0.0.1:"),
        "names the peer address: {not_tls}"
    );
    let text = metrics(net.nodes[0].http);
    assert!(
        metric_sum(&text, "beacon_tls_refusals_total", "not_tls") >= 1.0,
        "{text}"
    );
    assert!(
        metric_sum(&text, "beacon_tls_refusals_total", "bad_certificate") >= 1.0,
        "{text}"
    );

    // A member whose certificate comes from another CA: it refuses our nodes' certificates and
    // they refuse its own; nobody falls back to plaintext, and the other two go on.
    other
        .write_tls_dir(
            &net.nodes[1].dir.join("tls"),
            std::slice::from_ref(&net.nodes[1].ip),
        )
        .expect("tls");
    net.kill(1);
    net.start(1);
    net.wait_until(
        "node 1 to refuse its peers' certificates",
        Duration::from_secs(20),
        || {
            net.log(1)
                .contains("invalid peer certificate: UnknownIssuer")
        },
    );
    let top = net.latest(0);
    net.wait_until("nodes 0 and 2 to go on", Duration::from_secs(15), || {
        net.latest(0) >= top + 3
    });
    assert!(
        !net.log(1).contains("plaintext connection"),
        "no plaintext attempt"
    );
}

/// A blocking TLS handshake with a client certificate, returning the handshake's outcome.
fn foreign_client_handshake(
    peer: std::net::SocketAddr,
    ca_pem: &[u8],
    cert_pem: &str,
    key_pem: &str,
) -> Result<(), String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| e.to_string())?;
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_client_auth_cert(certs, key)
    .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(peer.ip().to_string()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name)
        .map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(peer).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // TLS 1.3: the server checks the client certificate after the client's Finished, so the
    // refusal shows on the first read.
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 16];
    match tls.read(&mut buf) {
        Ok(n) if n > 0 => Ok(()),
        Ok(_) => Err("closed".into()),
        Err(e) => Err(e.to_string()),
    }
}
