//! Container probes: `httpGet` (HTTP; HTTPS without verifying the certificate is not
//! supported and counts as a failure, with a message), `tcpSocket` and `exec`, with the
//! kubelet's timing (`initialDelaySeconds`, `periodSeconds`, `timeoutSeconds`,
//! `successThreshold`, `failureThreshold`).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the kubelet knows from a probe so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No result yet (initial delay, or not enough consecutive results).
    Unknown,
    Success,
    Failure,
}

/// The latest verdict and the message of the last failure.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub verdict: Verdict,
    pub message: String,
}

pub type Shared = Arc<Mutex<Outcome>>;

pub fn shared() -> Shared {
    Arc::new(Mutex::new(Outcome {
        verdict: Verdict::Unknown,
        message: String::new(),
    }))
}

pub fn read(s: &Shared) -> Outcome {
    s.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// The exit code of a command run in a container's sandbox, or why it could not run.
pub type ExecFuture = Pin<Box<dyn Future<Output = Result<i32, String>> + Send + 'static>>;

/// Runs an `exec` probe's command (argv, timeout) in the container's sandbox.
pub type ExecFn = Arc<dyn Fn(Vec<String>, Duration) -> ExecFuture + Send + Sync + 'static>;

/// Timing of a probe, with Kubernetes' defaults.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(probe: &Probe) -> Timing {
        let secs = |v: Option<i32>, default: i32, min: i32| {
            Duration::from_secs(v.unwrap_or(default).max(min) as u64)
        };
        Timing {
            initial_delay: secs(probe.initial_delay_seconds, 0, 0),
            period: secs(probe.period_seconds, 10, 1),
            timeout: secs(probe.timeout_seconds, 1, 1),
            success_threshold: probe.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

/// The port a probe names: a number, or the name of one of the container's ports.
pub fn port(container: &Container, port: &IntOrString) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => {
            u16::try_from(*n).map_err(|_| format!("probe port {n} is out of range"))
        }
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| {
                    format!(
                        "probe port {name:?} is not a port of container {:?}",
                        container.name
                    )
                })
        }
    }
}

/// One probe attempt.
pub async fn attempt(
    probe: &Probe,
    container: &Container,
    pod_ip: IpAddr,
    exec: &ExecFn,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(h) = &probe.http_get {
        let scheme = h.scheme.as_deref().unwrap_or("HTTP");
        if !scheme.eq_ignore_ascii_case("HTTP") {
            return Err(format!("httpGet probes with scheme {scheme} are not supported by the test kubelet (HTTP is)"));
        }
        let port = port(container, &h.port)?;
        let host: IpAddr = match &h.host {
            Some(host) if !host.is_empty() => host
                .parse()
                .map_err(|_| format!("probe host {host:?} is not an IP address"))?,
            _ => pod_ip,
        };
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        let mut headers = String::new();
        for header in h.http_headers.iter().flatten() {
            headers.push_str(&format!("{}: {}\r\n", header.name, header.value));
        }
        let addr = SocketAddr::new(host, port);
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.37\r\nAccept: */*\r\nConnection: close\r\n{headers}\r\n"
        );
        let code = tokio::time::timeout(timeout, async move {
            let mut stream = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("Get \"http://{addr}{path}\": {e}"))?;
            stream
                .write_all(request.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut head = Vec::new();
            let mut buf = [0u8; 512];
            while !head.windows(2).any(|w| w == b"\r\n") {
                let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
                if n == 0 || head.len() > 8192 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let line = String::from_utf8_lossy(&head);
            line.split_whitespace()
                .nth(1)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| format!("Get \"http://{addr}{path}\": no HTTP status in the answer"))
        })
        .await
        .map_err(|_| {
            format!(
                "Get \"http://{addr}\": context deadline exceeded ({} s)",
                timeout.as_secs()
            )
        })??;
        return if (200..400).contains(&code) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {code}"))
        };
    }
    if let Some(t) = &probe.tcp_socket {
        let port = port(container, &t.port)?;
        let host: IpAddr = match &t.host {
            Some(host) if !host.is_empty() => host
                .parse()
                .map_err(|_| format!("probe host {host:?} is not an IP address"))?,
            _ => pod_ip,
        };
        let addr = SocketAddr::new(host, port);
        return match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {addr}: {e}")),
            Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
        };
    }
    if let Some(e) = &probe.exec {
        let command = e.command.clone().unwrap_or_default();
        if command.is_empty() {
            return Err("exec probe without a command".into());
        }
        return match exec(command.clone(), timeout).await {
            Ok(0) => Ok(()),
            Ok(code) => Err(format!("command {command:?} exited with {code}")),
            Err(e) => Err(e),
        };
    }
    if probe.grpc.is_some() {
        return Err("grpc probes are not supported by the test kubelet".into());
    }
    Err("the probe has no handler (httpGet, tcpSocket or exec)".into())
}

/// Probes until the task is aborted, keeping `out` up to date.
pub async fn run(probe: Probe, container: Container, pod_ip: IpAddr, exec: ExecFn, out: Shared) {
    let timing = Timing::of(&probe);
    tokio::time::sleep(timing.initial_delay).await;
    let (mut successes, mut failures) = (0u32, 0u32);
    loop {
        let result = attempt(&probe, &container, pod_ip, &exec, timing.timeout).await;
        {
            let mut o = out
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match result {
                Ok(()) => {
                    successes += 1;
                    failures = 0;
                    if successes >= timing.success_threshold {
                        o.verdict = Verdict::Success;
                    }
                }
                Err(message) => {
                    failures += 1;
                    successes = 0;
                    o.message = message;
                    if failures >= timing.failure_threshold {
                        o.verdict = Verdict::Failure;
                    }
                }
            }
        }
        tokio::time::sleep(timing.period).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_named_ports() {
        let probe: Probe = serde_json::from_value(serde_json::json!({
            "httpGet": { "path": "/health", "port": "http" }
        }))
        .expect("probe");
        let t = Timing::of(&probe);
        assert_eq!(t.period, Duration::from_secs(10));
        assert_eq!(t.timeout, Duration::from_secs(1));
        assert_eq!((t.success_threshold, t.failure_threshold), (1, 3));
        let container: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "ports": [{ "name": "http", "containerPort": 8080 }]
        }))
        .expect("container");
        assert_eq!(
            port(&container, &IntOrString::String("http".into())),
            Ok(8080)
        );
        assert_eq!(port(&container, &IntOrString::Int(4444)), Ok(4444));
        assert!(port(&container, &IntOrString::String("peer".into())).is_err());
    }
}
