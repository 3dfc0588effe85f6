//! Fan-out load client: many SSE and WebSocket clients following one run, for
//! `bench/fanout.sh` (which starts the server, the mock LLM and the slow run, then calls this).
//!
//! Each SSE client is its own HTTP/1.1 connection (`GET /threads/{t}/runs/{r}/stream` with
//! `Last-Event-ID: -1`), each WebSocket client its own socket (`…/ws?since=0`). Every client
//! must get every event of the run exactly once, in order, ids 1..n, the last one `end` (WS:
//! then close 1000). While they run, the server's VmRSS/VmHWM (and at the end its CPU time) are
//! read from `/proc/<server-pid>`.
//!
//! ```sh
//! cargo run --release -p agentd --example fanout -- --url http://127.0.0.1:8080 --key KEY \
//!     --thread T --run R --sse 5000 --ws 5000 --server-pid PID
//! ```
//!
//! The one decision: clients are plain hyper HTTP/1 connections and tokio-tungstenite sockets
//! with small buffers, not reqwest, so the load client's own memory and pooling stay out of the
//! way and one client is exactly one TCP connection.

use clap::Parser;
use futures::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser, Debug)]
#[command(
    about = "Many SSE and WebSocket clients on one run; checks every event arrives once, in order"
)]
struct Args {
    /// Server address, `127.0.0.1:PORT` (an `http://` prefix is accepted).
    #[arg(long)]
    url: String,
    /// API key (sent as `x-api-key`).
    #[arg(long)]
    key: String,
    #[arg(long)]
    thread: String,
    #[arg(long)]
    run: String,
    /// SSE clients.
    #[arg(long, default_value_t = 1000)]
    sse: usize,
    /// WebSocket clients.
    #[arg(long, default_value_t = 1000)]
    ws: usize,
    /// Connections being opened at once (the rest wait their turn).
    #[arg(long, default_value_t = 128)]
    connect_concurrency: usize,
    /// Gives up on clients not finished by then (they count as failures).
    #[arg(long, default_value_t = 180)]
    timeout_s: u64,
    /// Tokio worker threads of this client.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// The server's pid, to sample its memory and CPU from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    #[arg(long, default_value_t = 200)]
    sample_ms: u64,
    /// Writes the RSS samples (`t_ms,rss_kib,hwm_kib,clients`) here.
    #[arg(long)]
    rss_csv: Option<PathBuf>,
    /// Read buffer of each client WebSocket, KiB (tungstenite's default is 128, which it
    /// zero-fills on the first read: compare this client's own RSS at 8 and at 128).
    #[arg(long, default_value_t = 8)]
    ws_read_buffer_kib: usize,
    /// Also print the report as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Sse,
    Ws,
}

/// What one client saw.
struct Outcome {
    kind: Kind,
    /// Time from the start of its connect to the response head / handshake.
    connect: Option<Duration>,
    /// When that was, from the start of the benchmark.
    connected_at: Option<Duration>,
    /// Events received (ids 1..n, checked), or why the client failed.
    result: Result<u64, String>,
    keepalives: u64,
}

/// Clients connected now, and the most at once.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
    connected_total: AtomicUsize,
}

impl Gauge {
    fn up(&self) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(n, Ordering::SeqCst);
        self.connected_total.fetch_add(1, Ordering::SeqCst);
    }
    fn down(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Checks the order of ids as they arrive: 1, 2, 3… and nothing after `end`.
#[derive(Default)]
struct Order {
    last: u64,
    ended: bool,
}

impl Order {
    fn see(&mut self, id: u64, event: &str) -> Result<(), String> {
        if self.ended {
            return Err(format!("event {id} ({event}) after end"));
        }
        if id != self.last + 1 {
            return Err(format!("id {id} after id {} ({event})", self.last));
        }
        self.last = id;
        self.ended = event == "end";
        Ok(())
    }
    fn finish(&self) -> Result<u64, String> {
        if self.ended {
            Ok(self.last)
        } else {
            Err(format!("stream closed after id {} without end", self.last))
        }
    }
}

struct Target {
    addr: SocketAddr,
    host: String,
    key: String,
    sse_path: String,
    ws_url: String,
    ws_read_buffer: usize,
    start: Instant,
    /// Clients still reading then give up (and count as failures).
    deadline: tokio::time::Instant,
}

async fn sse_client(t: Arc<Target>, gate: Arc<Semaphore>, gauge: Arc<Gauge>) -> Outcome {
    let mut out = Outcome {
        kind: Kind::Sse,
        connect: None,
        connected_at: None,
        result: Err("not started".into()),
        keepalives: 0,
    };
    let permit = gate.acquire_owned().await;
    let started = Instant::now();
    let tcp = match TcpStream::connect(t.addr).await {
        Ok(s) => s,
        Err(e) => {
            out.result = Err(format!("connect: {e}"));
            return out;
        }
    };
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await {
        Ok(x) => x,
        Err(e) => {
            out.result = Err(format!("handshake: {e}"));
            return out;
        }
    };
    let conn = tokio::spawn(conn);
    let req = hyper::Request::get(&t.sse_path)
        .header("host", &t.host)
        .header("x-api-key", &t.key)
        .header("accept", "text/event-stream")
        .header("last-event-id", "-1")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => {
            out.result = Err(format!("request: {e}"));
            conn.abort();
            return out;
        }
    };
    drop(permit);
    if resp.status() != hyper::StatusCode::OK {
        let status = resp.status();
        let body = resp.into_body().collect().await.map(|b| b.to_bytes());
        out.result = Err(format!(
            "status {status}: {}",
            body.map(|b| String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned())
                .unwrap_or_default()
        ));
        conn.abort();
        return out;
    }
    out.connect = Some(started.elapsed());
    out.connected_at = Some(t.start.elapsed());
    gauge.up();
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut order = Order::default();
    let result = loop {
        let Ok(next) = tokio::time::timeout_at(t.deadline, body.frame()).await else {
            break Err(format!("not finished in time, after id {}", order.last));
        };
        match next {
            None => break order.finish(),
            Some(Err(e)) => break Err(format!("body after id {}: {e}", order.last)),
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                buf.extend_from_slice(&data);
                // One SSE message per blank line.
                let mut consumed = 0;
                let mut failed = None;
                while let Some(end) = find(&buf[consumed..], b"\n\n") {
                    let msg = &buf[consumed..consumed + end];
                    consumed += end + 2;
                    match parse_sse(msg) {
                        Sse::Comment => out.keepalives += 1,
                        Sse::Event { id, event } => {
                            if let Err(e) = order.see(id, &event) {
                                failed = Some(e);
                                break;
                            }
                        }
                        Sse::Bad(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                buf.drain(..consumed);
                if let Some(e) = failed {
                    break Err(e);
                }
            }
        }
    };
    gauge.down();
    conn.abort();
    out.result = result;
    out
}

/// (elapsed ms, VmRSS KiB, VmHWM KiB, clients connected)
type Sample = (u64, u64, u64, usize);
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

enum Sse {
    Comment,
    Event { id: u64, event: String },
    Bad(String),
}

fn parse_sse(msg: &[u8]) -> Sse {
    let text = match std::str::from_utf8(msg) {
        Ok(t) => t,
        Err(_) => return Sse::Bad("SSE message is not UTF-8".into()),
    };
    let mut id = None;
    let mut event = None;
    let mut any_field = false;
    for line in text.split('\n') {
        if line.starts_with(':') {
            continue;
        }
        any_field = true;
        if let Some(v) = line.strip_prefix("id:") {
            id = v.trim().parse::<u64>().ok();
        } else if let Some(v) = line.strip_prefix("event:") {
            event = Some(v.trim().to_owned());
        }
    }
    if !any_field {
        return Sse::Comment;
    }
    match (id, event) {
        (Some(id), Some(event)) => Sse::Event { id, event },
        _ => Sse::Bad(format!(
            "SSE message without id or event: {:?}",
            &text[..text.len().min(120)]
        )),
    }
}

async fn ws_client(t: Arc<Target>, gate: Arc<Semaphore>, gauge: Arc<Gauge>) -> Outcome {
    let mut out = Outcome {
        kind: Kind::Ws,
        connect: None,
        connected_at: None,
        result: Err("not started".into()),
        keepalives: 0,
    };
    let permit = gate.acquire_owned().await;
    let started = Instant::now();
    let tcp = match TcpStream::connect(t.addr).await {
        Ok(s) => s,
        Err(e) => {
            out.result = Err(format!("connect: {e}"));
            return out;
        }
    };
    let _ = tcp.set_nodelay(true);
    let mut req = t.ws_url.as_str().into_client_request().expect("ws url");
    req.headers_mut()
        .insert("x-api-key", t.key.parse().expect("key header"));
    // Small buffers: tungstenite's default reserves (and zero-fills) 128 KiB per socket.
    let config = WebSocketConfig::default()
        .read_buffer_size(t.ws_read_buffer)
        .write_buffer_size(0);
    let mut ws = match tokio_tungstenite::client_async_with_config(req, tcp, Some(config)).await {
        Ok((ws, _resp)) => ws,
        Err(e) => {
            out.result = Err(format!("ws handshake: {e}"));
            return out;
        }
    };
    drop(permit);
    out.connect = Some(started.elapsed());
    out.connected_at = Some(t.start.elapsed());
    gauge.up();
    let mut order = Order::default();
    let result = loop {
        let Ok(next) = tokio::time::timeout_at(t.deadline, ws.next()).await else {
            break Err(format!("not finished in time, after id {}", order.last));
        };
        match next {
            None => {
                break Err(format!(
                    "socket ended without a close frame after id {}",
                    order.last
                ))
            }
            Some(Err(e)) => break Err(format!("ws after id {}: {e}", order.last)),
            Some(Ok(Message::Text(text))) => {
                let v: serde_json::Value = match serde_json::from_str(&text) {
                    Ok(v) => v,
                    Err(e) => break Err(format!("bad frame: {e}")),
                };
                let (Some(id), Some(event)) = (v["id"].as_u64(), v["event"].as_str()) else {
                    break Err(format!("frame without id or event: {:.120}", text.as_str()));
                };
                if let Err(e) = order.see(id, event) {
                    break Err(e);
                }
            }
            Some(Ok(Message::Ping(_))) => out.keepalives += 1,
            Some(Ok(Message::Close(frame))) => {
                let code = frame.as_ref().map(|f| f.code);
                let reason = frame
                    .as_ref()
                    .map(|f| f.reason.to_string())
                    .unwrap_or_default();
                break match (code, order.finish()) {
                    (Some(CloseCode::Normal), Ok(n)) => Ok(n),
                    (_, Err(e)) => Err(format!("{e} (close {code:?} {reason:?})")),
                    (other, Ok(_)) => Err(format!("closed with {other:?} after end")),
                };
            }
            Some(Ok(_)) => {}
        }
    };
    gauge.down();
    // Answer the close (tungstenite queues the reply; flush it) and let the socket go.
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    out.result = result;
    out
}

/// VmRSS and VmHWM of a process, in KiB.
fn mem_kib(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// User + system CPU seconds of a process (`/proc/<pid>/stat` ticks; USER_HZ is 100 on Linux).
fn cpu_s(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let host = args
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let addr: SocketAddr = host
        .parse()
        .map_err(|e| anyhow::anyhow!("--url must be http://IP:PORT ({host}): {e}"))?;
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_s);
    let target = Arc::new(Target {
        start: started,
        deadline,
        ws_read_buffer: args.ws_read_buffer_kib.max(1) * 1024,
        addr,
        host: host.clone(),
        key: args.key.clone(),
        sse_path: format!("/threads/{}/runs/{}/stream", args.thread, args.run),
        ws_url: format!(
            "ws://{host}/threads/{}/runs/{}/ws?since=0",
            args.thread, args.run
        ),
    });
    let gauge = Arc::new(Gauge::default());
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let pid = args.server_pid;

    let mem_before = pid.and_then(mem_kib);
    let cpu_before = pid.and_then(cpu_s);

    // Samples the server's memory until told to stop.
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let sampler = {
        let (samples, mut stop, gauge) = (samples.clone(), stop.clone(), gauge.clone());
        let every = Duration::from_millis(args.sample_ms.max(10));
        tokio::spawn(async move {
            let Some(pid) = pid else { return };
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return,
                }
                if let Some((rss, hwm)) = mem_kib(pid) {
                    let t = started.elapsed().as_millis() as u64;
                    let clients = gauge.now.load(Ordering::SeqCst);
                    samples.lock().unwrap().push((t, rss, hwm, clients));
                }
            }
        })
    };

    // Progress on stderr once a second.
    let progress = {
        let (gauge, mut stop) = (gauge.clone(), stop.clone());
        let total = args.sse + args.ws;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return,
                }
                let rss = pid
                    .and_then(mem_kib)
                    .map(|(r, _)| format!(", server RSS {:.1} MiB", mib(r)))
                    .unwrap_or_default();
                eprintln!(
                    "fanout: {:>5.1}s connected {}/{} (open now {}){rss}",
                    started.elapsed().as_secs_f64(),
                    gauge.connected_total.load(Ordering::SeqCst),
                    total,
                    gauge.now.load(Ordering::SeqCst),
                );
            }
        })
    };

    // Interleave SSE and WS clients so both kinds connect throughout.
    let mut tasks = Vec::with_capacity(args.sse + args.ws);
    let (mut s, mut w) = (0, 0);
    while s < args.sse || w < args.ws {
        if s < args.sse {
            tasks.push(tokio::spawn(sse_client(
                target.clone(),
                gate.clone(),
                gauge.clone(),
            )));
            s += 1;
        }
        if w < args.ws {
            tasks.push(tokio::spawn(ws_client(
                target.clone(),
                gate.clone(),
                gauge.clone(),
            )));
            w += 1;
        }
    }
    // A backstop: clients bound their own reads by the deadline, not their connects.
    let deadline = deadline + Duration::from_secs(10);
    let mut outcomes = Vec::with_capacity(tasks.len());
    let mut timed_out = 0usize;
    for (i, t) in tasks.into_iter().enumerate() {
        // Kinds alternate while both remain; good enough to label a timeout.
        match tokio::time::timeout_at(deadline, t).await {
            Ok(Ok(o)) => outcomes.push(o),
            Ok(Err(e)) => outcomes.push(Outcome {
                kind: if i % 2 == 0 { Kind::Sse } else { Kind::Ws },
                connect: None,
                connected_at: None,
                result: Err(format!("task: {e}")),
                keepalives: 0,
            }),
            Err(_) => {
                timed_out += 1;
                outcomes.push(Outcome {
                    kind: if i % 2 == 0 { Kind::Sse } else { Kind::Ws },
                    connect: None,
                    connected_at: None,
                    result: Err(format!(
                        "not finished within --timeout-s {}",
                        args.timeout_s
                    )),
                    keepalives: 0,
                })
            }
        }
    }
    let wall = started.elapsed();
    let cpu_after = pid.and_then(cpu_s);
    // Memory once every client is gone (does the server give it back?).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mem_after = pid.and_then(mem_kib);
    let _ = stop_tx.send(true);
    let _ = sampler.await;
    let _ = progress.await;

    // --- the report ---
    let samples = samples.lock().unwrap().clone();
    if let Some(path) = &args.rss_csv {
        let mut csv = String::from("t_ms,rss_kib,hwm_kib,clients\n");
        for (t, r, h, c) in &samples {
            csv.push_str(&format!("{t},{r},{h},{c}\n"));
        }
        std::fs::write(path, csv)?;
    }
    let peak_rss = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let hwm = samples.iter().map(|s| s.2).max().unwrap_or(0);

    let mut connects: Vec<Duration> = outcomes.iter().filter_map(|o| o.connect).collect();
    connects.sort();
    let connected = connects.len();
    let last_connected = outcomes.iter().filter_map(|o| o.connected_at).max();
    let mut per_client: BTreeMap<u64, usize> = BTreeMap::new();
    for o in &outcomes {
        if let Ok(n) = o.result {
            *per_client.entry(n).or_default() += 1;
        }
    }
    // Every client must have seen the same run: the most common count is the run's length.
    let expected = per_client
        .iter()
        .max_by_key(|(_, c)| **c)
        .map(|(n, _)| *n)
        .unwrap_or(0);
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut failed = [0usize; 2];
    for o in &outcomes {
        let why = match &o.result {
            Ok(n) if *n == expected => continue,
            Ok(n) => format!("got {n} events, most clients got {expected}"),
            Err(e) => {
                // Group by the message without the numbers.
                e.chars()
                    .map(|c| if c.is_ascii_digit() { '#' } else { c })
                    .collect()
            }
        };
        failed[o.kind as usize] += 1;
        *failures.entry(format!("{:?}: {why}", o.kind)).or_default() += 1;
    }
    let keepalives: u64 = outcomes.iter().map(|o| o.keepalives).sum();
    let total = args.sse + args.ws;
    let peak = gauge.peak.load(Ordering::SeqCst);
    let server_cpu = match (cpu_before, cpu_after) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };

    println!(
        "clients requested       {total} ({} SSE + {} WS)",
        args.sse, args.ws
    );
    println!(
        "clients connected       {connected} (most open at once: {peak}){}",
        if peak < connected {
            "  <- not all at once: the run ended before every client connected"
        } else {
            ""
        }
    );
    println!(
        "connect time            all connected after ~{}; per client p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        last_connected
            .map(|d| format!("{:.1} s", d.as_secs_f64()))
            .unwrap_or_else(|| "?".into()),
        pct(&connects, 0.5).as_secs_f64() * 1e3,
        pct(&connects, 0.99).as_secs_f64() * 1e3,
        pct(&connects, 1.0).as_secs_f64() * 1e3,
    );
    println!("events per client       {expected} (ids 1..{expected}, ending with end)");
    println!(
        "failures                {} ({} SSE, {} WS{})",
        failed[0] + failed[1],
        failed[0],
        failed[1],
        if timed_out > 0 {
            format!(", {timed_out} not finished in time")
        } else {
            String::new()
        }
    );
    for (why, n) in failures.iter().take(10) {
        println!("  {n:>6} × {why}");
    }
    println!("keep-alives received    {keepalives}");
    if pid.is_some() {
        println!(
            "server RSS before       {:.1} MiB",
            mib(mem_before.map_or(0, |m| m.0))
        );
        println!(
            "server RSS peak         {:.1} MiB sampled every {} ms (VmHWM {:.1} MiB)",
            mib(peak_rss),
            args.sample_ms,
            mib(hwm)
        );
        println!(
            "server RSS after        {:.1} MiB (1 s after the last client finished)",
            mib(mem_after.map_or(0, |m| m.0))
        );
        if let Some(c) = server_cpu {
            println!("server CPU              {c:.2} s (user + system)");
        }
    }
    let own = mem_kib(std::process::id());
    println!(
        "client (this process)   peak RSS {:.1} MiB (VmHWM), {} worker thread(s), WS read buffer {} KiB",
        mib(own.map_or(0, |m| m.1)),
        args.threads.max(1),
        args.ws_read_buffer_kib.max(1)
    );
    println!("wall time               {:.1} s", wall.as_secs_f64());
    if args.json {
        let json = serde_json::json!({
            "sse": args.sse, "ws": args.ws,
            "connected": connected, "peak_open": peak,
            "all_connected_s": last_connected.map(|d| d.as_secs_f64()),
            "connect_p50_ms": pct(&connects, 0.5).as_secs_f64() * 1e3,
            "connect_p99_ms": pct(&connects, 0.99).as_secs_f64() * 1e3,
            "events_per_client": expected,
            "failures": failed[0] + failed[1],
            "failures_sse": failed[0], "failures_ws": failed[1],
            "failure_reasons": failures,
            "rss_before_mib": mem_before.map(|m| mib(m.0)),
            "rss_peak_mib": mib(peak_rss),
            "hwm_mib": mib(hwm),
            "rss_after_mib": mem_after.map(|m| mib(m.0)),
            "server_cpu_s": server_cpu,
            "wall_s": wall.as_secs_f64(),
            "client_hwm_mib": own.map(|m| mib(m.1)),
        });
        println!("{json}");
    }
    if failed[0] + failed[1] > 0 || connected == 0 {
        std::process::exit(1);
    }
    Ok(())
}
