//! Requests per second of the public HTTP API over loopback: `/public/latest` and
//! `/public/{round}` from drand's quicknet beacons, served by the real router, asked by two
//! client tasks on keep-alive HTTP/1.1 connections (raw TCP, so that the client costs little).
//! Server and clients share the machine (and its cores): the figures are a floor.
//!
//! `cargo bench -p beacon-node --bench http` (prints figures; no criterion).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use beacon_core::chain::{ChainInfo, PublishedBeacon};
use beacon_node::http::{router, system_clock, BeaconSource, MemorySource};
use beacon_node::metrics::NodeMetrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const INFO: &str = include_str!("../core/tests/vectors/quicknet-info.json");
const BEACONS: &str = include_str!("../core/tests/vectors/quicknet-beacons.json");
const CLIENTS: usize = 2;
const WARMUP: Duration = Duration::from_millis(500);
const MEASURE: Duration = Duration::from_secs(3);

type BenchError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BenchError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(bench())
}

async fn bench() -> Result<(), BenchError> {
    let info = ChainInfo::from_json(INFO)?;
    let source = MemorySource::new("quicknet", Some(info));
    let beacons: serde_json::Value = serde_json::from_str(BEACONS)?;
    for b in beacons.as_array().ok_or("beacons are a list")? {
        source.store(PublishedBeacon::from_value(b)?.beacon);
    }
    let chains: Vec<Arc<dyn BeaconSource>> = vec![Arc::new(source)];
    let metrics = Arc::new(NodeMetrics::new("bench")?);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = router(chains, system_clock(), Some(metrics));
    tokio::spawn(async move { axum::serve(listener, app).await });

    println!("public HTTP API over loopback, {CLIENTS} keep-alive clients, {MEASURE:?} each");
    for path in ["/public/latest", "/public/42", "/info", "/health"] {
        let done = Arc::new(AtomicBool::new(false));
        let counted = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..CLIENTS {
            let (done, counted, count) = (done.clone(), counted.clone(), count.clone());
            tasks.push(tokio::spawn(async move {
                let mut conn = Conn::open(addr).await?;
                while !done.load(Ordering::Relaxed) {
                    let status = conn.get(path).await?;
                    // /health is 503 against the wall clock (quicknet's vectors are old).
                    if status != 200 && !(path == "/health" && status == 503) {
                        return Err(format!("{path}: status {status}").into());
                    }
                    if counted.load(Ordering::Relaxed) {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok::<(), BenchError>(())
            }));
        }
        tokio::time::sleep(WARMUP).await;
        counted.store(true, Ordering::Relaxed);
        let started = Instant::now();
        tokio::time::sleep(MEASURE).await;
        let n = count.load(Ordering::Relaxed);
        let elapsed = started.elapsed();
        done.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await??;
        }
        let rps = n as f64 / elapsed.as_secs_f64();
        println!(
            "  GET {path:<16} {rps:>9.0} requests/s   {:>6.1} µs per request per client",
            1e6 * CLIENTS as f64 / rps
        );
    }
    Ok(())
}

/// A keep-alive HTTP/1.1 connection that reads each response to its Content-Length.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: std::net::SocketAddr) -> Result<Conn, BenchError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    async fn get(&mut self, path: &str) -> Result<u16, BenchError> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n");
        self.stream.write_all(req.as_bytes()).await?;
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end])?;
                let status: u16 = head.get(9..12).ok_or("short status line")?.parse()?;
                let len: usize = head
                    .split("\r\n")
                    .find_map(|l| {
                        let (n, v) = l.split_once(':')?;
                        n.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .ok_or("no content-length")?;
                let total = end + 4 + len;
                while self.buf.len() < total {
                    self.read_more().await?;
                }
                self.buf.drain(..total);
                return Ok(status);
            }
            self.read_more().await?;
        }
    }

    async fn read_more(&mut self) -> Result<(), BenchError> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err("connection closed".into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}
