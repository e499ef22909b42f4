//! The operator control listener with real node processes and real TLS: a first ceremony and a
//! resharing driven only through it (the joiner given the previous group's content), the
//! loopback listener still serving the CLI, and everyone without a client certificate from the
//! operator's CA refused: no certificate, a peer's certificate, plaintext.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use beacon_core::crypto::Scheme;
use beacon_node::control::client::{ControlClientConfig, ControlClientError, NodeControl};
use beacon_node::control::proto::command_request::Command as Cmd;
use beacon_node::control::proto::{Accept, Execute, InitialProposal, Join, ReshareProposal};
use beacon_node::control::StatusDoc;

use crate::netharness::{metric_sum, metrics, TestNet};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn dkg_status(rt: &tokio::runtime::Runtime, c: &NodeControl) -> Option<StatusDoc> {
    rt.block_on(c.dkg_status()).ok()
}

fn wait_state(
    net: &TestNet,
    rt: &tokio::runtime::Runtime,
    i: usize,
    want: &str,
    epoch: u32,
    within: Duration,
) {
    let c = net.operator_client(i);
    net.wait_until(
        &format!("node {i} {want} in epoch {epoch} (over the operator listener)"),
        within,
        || {
            dkg_status(rt, &c)
                .map(|s| s.current.state == want && s.current.epoch == epoch)
                .unwrap_or(false)
        },
    );
}

fn command(rt: &tokio::runtime::Runtime, c: &NodeControl, cmd: Cmd) -> String {
    rt.block_on(c.command(cmd))
        .unwrap_or_else(|e| panic!("command on {}: {e}", c.address()))
        .state
}

fn peers(net: &TestNet, ids: &[usize]) -> Vec<String> {
    ids.iter().map(|&i| net.nodes[i].peer.to_string()).collect()
}

/// A TLS handshake without any client certificate, then the HTTP/2 preface: whether the server
/// let it through (TLS 1.3 checks the client after its Finished, so the first read tells).
fn handshake_without_client_cert(addr: SocketAddr, ca_pem: &[u8]) -> Result<(), String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from(addr.ip().to_string()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name)
        .map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 16];
    match tls.read(&mut buf) {
        Ok(n) if n > 0 => Ok(()),
        Ok(_) => Err("closed".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn operator_listener_runs_ceremonies_and_refuses_everyone_else() {
    let scheme = Scheme::BlsUnchainedG1Rfc9380;
    let mut net = TestNet::without_group(4, scheme, 100).with_operator();
    let rt = rt();
    let _in_rt = rt.enter();
    for i in 0..3 {
        net.start(i);
    }
    let ops: Vec<NodeControl> = (0..4).map(|i| net.operator_client(i)).collect();
    for (i, op) in ops.iter().enumerate().take(3) {
        net.wait_until("the operator listener", Duration::from_secs(30), || {
            dkg_status(&rt, op).is_some()
        });
        // The loopback listener still serves the CLI beside it.
        let (code, out, err) = net.ctl(i, &["dkg", "status", "--json"]);
        assert_eq!(code, 0, "loopback control on node {i}: {out}{err}");
    }

    // Refused: a plaintext HTTP/2 client...
    let op_addr = net.nodes[0].operator;
    let mut s = TcpStream::connect(op_addr).expect("connect");
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .expect("write");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    assert!(
        !buf[..n].windows(4).any(|w| w == b"HTTP") && n < 9,
        "no HTTP/2 answer to plaintext: {:?}",
        &buf[..n]
    );
    drop(s);
    // ... a TLS client without a certificate ...
    let ca_pem = std::fs::read(net.nodes[0].dir.join("tls/ca.crt")).expect("ca");
    assert!(
        handshake_without_client_cert(op_addr, &ca_pem).is_err(),
        "a client without a certificate must not get through"
    );
    // ... and a peer: its certificate is from the peers' CA, not the operator's.
    let peer_cert = std::fs::read_to_string(net.nodes[1].dir.join("tls/tls.crt")).expect("cert");
    let peer_key = std::fs::read_to_string(net.nodes[1].dir.join("tls/tls.key")).expect("key");
    let as_peer = net.control_client(0, op_addr, &peer_cert, &peer_key);
    match rt.block_on(as_peer.dkg_status()) {
        Err(ControlClientError::Unavailable { .. }) => {}
        other => panic!("a peer's certificate must be refused: {other:?}"),
    }
    // The control API is not on the peer port: the operator's certificate is refused there,
    // and a peer that gets through TLS finds no control service.
    let op = net.operator.as_ref().expect("operator");
    let on_peer_port = net.control_client(
        0,
        net.nodes[0].peer,
        &op.client.cert_pem,
        &op.client.key_pem,
    );
    assert!(matches!(
        rt.block_on(on_peer_port.dkg_status()),
        Err(ControlClientError::Unavailable { .. })
    ));
    let peer_on_peer_port = net.control_client(0, net.nodes[0].peer, &peer_cert, &peer_key);
    match rt.block_on(peer_on_peer_port.dkg_status()) {
        Err(e) => assert_eq!(e.code(), Some(tonic::Code::Unimplemented), "{e}"),
        Ok(s) => panic!("the peer port served the control API: {s:?}"),
    }
    // The client checks the node's name: a certificate for 127.0.0.100 is not one for another.
    let mut wrong_name = ControlClientConfig::new(
        op_addr.to_string(),
        ca_pem.clone(),
        op.client.cert_pem.as_bytes(),
        op.client.key_pem.as_bytes(),
    );
    wrong_name.server_name = Some("member-1.example".into());
    let wrong_name = NodeControl::new(&wrong_name).expect("client");
    match rt.block_on(wrong_name.dkg_status()) {
        Err(ControlClientError::Unavailable { reason, .. }) => {
            assert!(reason.contains("not valid for name"), "{reason}")
        }
        other => panic!("a certificate for another name must be refused: {other:?}"),
    }
    net.wait_until(
        "node 0 to log and count the refusals",
        Duration::from_secs(20),
        || {
            let text = metrics(net.nodes[0].http);
            ["not_tls", "no_client_certificate", "bad_certificate"]
                .iter()
                .all(|r| metric_sum(&text, "beacon_control_tls_refusals_total", r) >= 1.0)
        },
    );
    assert!(net.log(0).contains("refused operator control connection"));

    // The first ceremony, only over the operator listener.
    let state = command(
        &rt,
        &ops[0],
        Cmd::Initial(InitialProposal {
            joining: peers(&net, &[0, 1, 2]),
            threshold: 2,
            period_seconds: 2,
            scheme: String::new(),
            catchup_period_seconds: 1,
            genesis_delay_seconds: 15,
            window_seconds: 600,
        }),
    );
    assert_eq!(state, "Proposing");
    for i in [1, 2] {
        wait_state(&net, &rt, i, "Proposed", 1, Duration::from_secs(30));
    }
    // A remote caller cannot name files on the node's machine; path and content together are
    // refused naming both; nothing changes.
    let refused = rt.block_on(ops[1].command(Cmd::Join(Join {
        previous_group_file: "/etc/passwd".into(),
        previous_group_toml: String::new(),
    })));
    match refused {
        Err(e) => {
            assert_eq!(e.code(), Some(tonic::Code::InvalidArgument), "{e}");
            assert!(e.to_string().contains("previous_group_toml"), "{e}");
        }
        Ok(r) => panic!("a path over the operator listener was taken: {r:?}"),
    }
    let refused = rt.block_on(ops[1].command(Cmd::Join(Join {
        previous_group_file: "group.toml".into(),
        previous_group_toml: "Threshold = 2".into(),
    })));
    match refused {
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.contains("previous_group_file") && text.contains("previous_group_toml"),
                "{text}"
            );
        }
        Ok(r) => panic!("both fields were taken: {r:?}"),
    }
    for i in [1, 2] {
        assert_eq!(command(&rt, &ops[i], Cmd::Join(Join::default())), "Joined");
    }
    net.wait_until(
        "the leader to see every delivery",
        Duration::from_secs(30),
        || {
            dkg_status(&rt, &ops[0])
                .map(|s| s.current.members.iter().all(|m| m.received_proposal))
                .unwrap_or(false)
        },
    );
    command(&rt, &ops[0], Cmd::Execute(Execute {}));
    for i in 0..3 {
        wait_state(&net, &rt, i, "Complete", 1, Duration::from_secs(90));
    }
    net.wait_until(
        "round 2 in the node status",
        Duration::from_secs(60),
        || {
            rt.block_on(ops[2].node_status())
                .map(|s| s.last_round.unwrap_or(0) >= 2 && s.peers.len() == 2)
                .unwrap_or(false)
        },
    );
    // The CLI on the loopback listener sees the same ceremony.
    let (code, out, _) = net.ctl(1, &["dkg", "status", "--json"]);
    assert_eq!(code, 0);
    let cli: StatusDoc = serde_json::from_str(&out).expect("status JSON");
    assert_eq!(Some(cli), dkg_status(&rt, &ops[1]));

    // A resharing: node 3 joins with the previous group's content, sent over the network.
    net.start(3);
    net.wait_until(
        "node 3's operator listener",
        Duration::from_secs(30),
        || dkg_status(&rt, &ops[3]).is_some(),
    );
    let info = net.info(0);
    let state = command(
        &rt,
        &ops[0],
        Cmd::Reshare(ReshareProposal {
            joining: peers(&net, &[3]),
            remaining: peers(&net, &[0, 1, 2]),
            leaving: Vec::new(),
            threshold: 3,
            catchup_period_seconds: 0,
            window_seconds: 600,
        }),
    );
    assert_eq!(state, "Proposing");
    for i in [1, 2, 3] {
        wait_state(&net, &rt, i, "Proposed", 2, Duration::from_secs(30));
    }
    for i in [1, 2] {
        assert_eq!(command(&rt, &ops[i], Cmd::Accept(Accept {})), "Accepted");
    }
    // The joiner gets the current group as the operator would: from a remainer's listener.
    let group_toml = rt
        .block_on(ops[1].group_file())
        .expect("a remainer serves its group file");
    let on_disk =
        std::fs::read_to_string(net.nodes[1].dir.join("group/group.toml")).expect("group file");
    assert_eq!(
        beacon_node::keys::parse_group_text("served", &group_toml)
            .expect("served group parses")
            .value
            .hash(),
        beacon_node::keys::parse_group_text("on disk", &on_disk)
            .expect("group on disk parses")
            .value
            .hash()
    );
    // Before its first ceremony a joiner has none, and says so.
    match rt.block_on(ops[3].group_file()) {
        Err(e) => assert_eq!(e.code(), Some(tonic::Code::NotFound), "{e}"),
        Ok(t) => panic!("a node without a ceremony served a group: {t}"),
    }
    // A damaged group is refused with the field named.
    let damaged = group_toml.replacen("Threshold = 2", "Threshold = -2", 1);
    match rt.block_on(ops[3].command(Cmd::Join(Join {
        previous_group_file: String::new(),
        previous_group_toml: damaged,
    }))) {
        Err(e) => assert!(e.to_string().contains("Threshold"), "{e}"),
        Ok(r) => panic!("a damaged group was taken: {r:?}"),
    }
    let state = command(
        &rt,
        &ops[3],
        Cmd::Join(Join {
            previous_group_file: String::new(),
            previous_group_toml: group_toml,
        }),
    );
    assert_eq!(state, "Joined");
    net.wait_until(
        "the leader to see the acceptances",
        Duration::from_secs(30),
        || {
            dkg_status(&rt, &ops[0])
                .map(|s| {
                    s.current
                        .members
                        .iter()
                        .filter(|m| m.role == "remaining" && !m.me)
                        .all(|m| m.answer == "accepted")
                })
                .unwrap_or(false)
        },
    );
    command(&rt, &ops[0], Cmd::Execute(Execute {}));
    for i in 0..4 {
        wait_state(&net, &rt, i, "Complete", 2, Duration::from_secs(120));
    }
    let start = net.latest(0);
    net.wait_until(
        "the joiner to follow the chain",
        Duration::from_secs(120),
        || net.latest(3) >= start + 8,
    );
    assert_eq!(
        net.info(3).hash(),
        info.hash(),
        "same chain after the reshare"
    );
    let st = rt.block_on(ops[3].node_status()).expect("node status");
    assert_eq!(st.threshold, Some(3), "{st:?}");
    // The build's version (what the operator's rollouts see) beside the protocol's.
    assert_eq!(st.build, env!("CARGO_PKG_VERSION"), "{st:?}");
    assert_eq!(st.version, "2.1.0", "{st:?}");
}

/// `beacon-node start` with one operator flag but not the other, with the peers' CA as the
/// operator CA, or with the operator listener on the peer port: refused at start, naming what
/// to fix.
#[test]
fn operator_listener_flags_are_checked_at_start() {
    let net = TestNet::without_group(1, Scheme::BlsUnchainedG1Rfc9380, 120).with_operator();
    let node = &net.nodes[0];
    let op_ca = net.operator.as_ref().expect("operator").ca_file.clone();
    let peer_ca = node.dir.join("tls/ca.crt");
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_beacon-node"))
            .arg("start")
            .arg("--dir")
            .arg(&node.dir)
            .arg("--peer-listen")
            .arg(node.peer.to_string())
            .arg("--control-listen")
            .arg(node.control.to_string())
            .args(extra)
            .env_remove("BEACON_OPERATOR_LISTEN")
            .env_remove("BEACON_OPERATOR_CA")
            .output()
            .expect("run beacon-node");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let listen = node.operator.to_string();
    let op_ca = op_ca.to_string_lossy().into_owned();
    let peer_ca = peer_ca.to_string_lossy().into_owned();
    let peer = node.peer.to_string();
    let cases: [(Vec<&str>, &[&str]); 4] = [
        (
            vec!["--operator-listen", &listen],
            &["--operator-listen", "--operator-ca"],
        ),
        (
            vec!["--operator-ca", &op_ca],
            &["--operator-listen", "--operator-ca"],
        ),
        (
            vec!["--operator-listen", &listen, "--operator-ca", &peer_ca],
            &["--operator-ca", "peers' CA"],
        ),
        (
            vec!["--operator-listen", &peer, "--operator-ca", &op_ca],
            &["--operator-listen", "--peer-listen", "peer port"],
        ),
    ];
    for (args, words) in cases {
        let (code, err) = run(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        for w in words {
            assert!(err.contains(w), "{args:?}: {w:?} not in {err}");
        }
    }
}
