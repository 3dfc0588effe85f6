//! Run events over WebSocket, for clients that fan streams out to many users (the edge +
//! GPU-pool guide's socket server): `GET /threads/{t}/runs/{r}/ws?since=N` follows one run,
//! `GET /threads/{t}/ws?since=N` follows the thread's runs one after another.
//!
//! Each event is one text frame `{"run_id","id","event","data"}` (`id` is the run's event seq,
//! `data` the event's JSON). Events are read from the store at the client's pace, so nothing
//! buffers without bound; a client that does not take a frame within the send timeout, or does
//! not answer pings, is dropped with close code 1013 (try again later) and can resume with
//! `since` = the last id it got. The run socket closes with 1000 after `end`.

use super::{AgentError, Res};
use crate::hub::Cached;
use crate::runtime::Runtime;
use agentd_core::{RunEvent, RunStore, TenantId};
use agentd_gateway::keys::Principal;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Extension;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one frame may take to leave before the client counts as too slow.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
const CLOSE_TOO_SLOW: u16 = 1013;

fn since(q: &HashMap<String, String>) -> Res<i64> {
    match q.get("since").map(String::as_str) {
        None | Some("") => Ok(0),
        Some("-1") => Ok(0),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| AgentError::invalid("since", "must be an event id (an integer)")),
    }
}

/// Clients send only pongs and closes: a small read buffer (tungstenite's default reserves and
/// zero-fills 128 KiB per socket, 600 MiB for 5,000 clients) and a small message limit.
fn small(ws: WebSocketUpgrade) -> WebSocketUpgrade {
    ws.read_buffer_size(4 * 1024)
        .max_message_size(64 * 1024)
        .max_frame_size(64 * 1024)
}

pub(crate) async fn run_socket(
    State(rt): State<Arc<Runtime>>,
    Extension(p): Extension<Principal>,
    Path((thread_id, run_id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Res<Response> {
    let cursor = since(&q)?;
    match rt.store.get_run(&p.tenant, &run_id).await? {
        Some(r) if r.thread_id == thread_id => {}
        _ => return Err(AgentError::not_found("run", &run_id)),
    }
    let Some(slot) = super::sse::ClientSlot::take(&rt) else {
        return Err(AgentError::unavailable(
            "too many stream clients (runtime.max_stream_clients)",
        ));
    };
    Ok(small(ws).on_upgrade(move |socket| async move {
        let mut conn = Conn::new(rt, socket);
        let tenant = p.tenant;
        let _ = conn.follow(&tenant, &run_id, cursor).await;
        conn.close(1000, "end").await;
        drop(slot);
    }))
}

pub(crate) async fn thread_socket(
    State(rt): State<Arc<Runtime>>,
    Extension(p): Extension<Principal>,
    Path(thread_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Res<Response> {
    let first_cursor = since(&q)?;
    if rt.store.get_thread(&p.tenant, &thread_id).await?.is_none() {
        return Err(AgentError::not_found("thread", &thread_id));
    }
    let Some(slot) = super::sse::ClientSlot::take(&rt) else {
        return Err(AgentError::unavailable(
            "too many stream clients (runtime.max_stream_clients)",
        ));
    };
    Ok(small(ws).on_upgrade(move |socket| async move {
        let mut conn = Conn::new(rt.clone(), socket);
        let tenant = p.tenant;
        let mut done: std::collections::HashSet<String> = Default::default();
        let mut cursor = first_cursor;
        'outer: loop {
            // The oldest run of the thread not followed yet and not over before we came.
            let runs = match rt.store.list_runs(&tenant, &thread_id, None, 100, 0).await {
                Ok(r) => r,
                Err(_) => break,
            };
            let next = runs
                .iter()
                .rev()
                .find(|r| !done.contains(&r.run_id) && !r.status.is_terminal())
                .map(|r| r.run_id.clone());
            match next {
                Some(run_id) => {
                    if conn.follow(&tenant, &run_id, cursor).await.is_err() {
                        break 'outer;
                    }
                    done.insert(run_id);
                    cursor = 0;
                }
                None => {
                    // Nothing running: wait for a run (or the client leaving), pinging.
                    for r in &runs {
                        done.insert(r.run_id.clone());
                    }
                    if !conn.idle(rt.settings.keepalive).await {
                        break 'outer;
                    }
                    if rt
                        .store
                        .get_thread(&tenant, &thread_id)
                        .await
                        .ok()
                        .flatten()
                        .is_none()
                    {
                        break 'outer;
                    }
                }
            }
        }
        conn.close(1000, "closed").await;
        drop(slot);
    }))
}

struct Conn {
    rt: Arc<Runtime>,
    sink: futures::stream::SplitSink<WebSocket, Message>,
    /// Set by the reader task: the client answered (any frame) at this instant.
    last_seen: Arc<std::sync::Mutex<Instant>>,
    /// Cancelled by the reader task when the client closed or the socket failed.
    gone: tokio_util::sync::CancellationToken,
    reader: tokio::task::JoinHandle<()>,
    last_ping: Instant,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

enum Gone {
    Client,
    TooSlow,
}

impl Conn {
    fn new(rt: Arc<Runtime>, socket: WebSocket) -> Conn {
        use futures::StreamExt;
        let (sink, mut stream) = socket.split();
        let last_seen = Arc::new(std::sync::Mutex::new(Instant::now()));
        let gone = tokio_util::sync::CancellationToken::new();
        // Reads all the time, so pongs count even while events are being sent.
        let reader = {
            let last_seen = last_seen.clone();
            let gone = gone.clone();
            tokio::spawn(async move {
                loop {
                    match stream.next().await {
                        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                        Some(Ok(_)) => {
                            *last_seen.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now()
                        }
                    }
                }
                gone.cancel();
            })
        };
        Conn {
            rt,
            sink,
            last_seen,
            gone,
            reader,
            last_ping: Instant::now(),
        }
    }

    async fn send(&mut self, msg: Message) -> Result<(), Gone> {
        use futures::SinkExt;
        if self.gone.is_cancelled() {
            return Err(Gone::Client);
        }
        match tokio::time::timeout(SEND_TIMEOUT, self.sink.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Gone::Client),
            Err(_) => Err(Gone::TooSlow),
        }
    }

    /// Sends a close frame and waits (briefly) for the client's, as the handshake wants.
    async fn close(&mut self, code: u16, reason: &'static str) {
        use futures::SinkExt;
        let frame = Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        if tokio::time::timeout(Duration::from_secs(1), self.sink.send(frame))
            .await
            .is_err()
        {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.gone.cancelled()).await;
    }

    /// Pings when due; an error when the client stopped answering.
    async fn keepalive(&mut self) -> Result<(), Gone> {
        let every = self.rt.settings.keepalive;
        let seen = *self.last_seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.elapsed() > every * 3 {
            return Err(Gone::TooSlow);
        }
        if self.last_ping.elapsed() >= every {
            self.last_ping = Instant::now();
            self.send(Message::Ping(Vec::new().into())).await?;
        }
        Ok(())
    }

    /// Waits up to `d` (pinging); `false` if the client left or stopped answering.
    async fn idle(&mut self, d: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            if self.keepalive().await.is_err() {
                self.close(CLOSE_TOO_SLOW, "no pong").await;
                return false;
            }
            let gone = self.gone.clone();
            tokio::select! {
                () = gone.cancelled() => return false,
                () = tokio::time::sleep_until(deadline) => return true,
                () = tokio::time::sleep(self.rt.settings.keepalive) => {}
            }
        }
    }

    /// Sends the run's events after `cursor` until its `end`.
    async fn follow(&mut self, tenant: &TenantId, run_id: &str, mut cursor: i64) -> Result<(), ()> {
        let mut rx = self.rt.hub.subscribe(run_id);
        let poll = self.rt.hub.poll().unwrap_or(Duration::from_secs(3600));
        loop {
            rx.borrow_and_update();
            let events = self
                .rt
                .hub
                .events_after(&self.rt.store, run_id, cursor)
                .await
                .map_err(|_| ())?;
            let ended_without_end = events.is_empty()
                && self
                    .rt
                    .store
                    .get_run(tenant, run_id)
                    .await
                    .map_err(|_| ())?
                    .is_none_or(|r| r.status.is_terminal())
                && self
                    .rt
                    .store
                    .events_after(run_id, cursor, 1)
                    .await
                    .map_err(|_| ())?
                    .is_empty();
            if ended_without_end {
                let end = RunEvent {
                    run_id: run_id.to_owned(),
                    seq: cursor + 1,
                    event: "end".into(),
                    data: "null".into(),
                    at: chrono::Utc::now(),
                };
                return self.frame(&Cached::new(end)).await;
            }
            for c in &events {
                self.frame(c).await?;
                cursor = c.event.seq;
                if c.event.event == "end" {
                    return Ok(());
                }
            }
            if !events.is_empty() {
                continue;
            }
            let wait = poll.min(self.rt.settings.keepalive);
            tokio::select! {
                r = rx.changed() => {
                    if r.is_err() {
                        rx = self.rt.hub.subscribe(run_id);
                    }
                }
                () = self.gone.cancelled() => return Err(()),
                () = tokio::time::sleep(wait) => {}
            }
            if let Err(g) = self.keepalive().await {
                if matches!(g, Gone::TooSlow) {
                    self.close(CLOSE_TOO_SLOW, "too slow").await;
                }
                return Err(());
            }
        }
    }

    async fn frame(&mut self, c: &Cached) -> Result<(), ()> {
        match self.send(Message::Text(c.ws.clone().into())).await {
            Ok(()) => Ok(()),
            Err(Gone::TooSlow) => {
                tracing::info!(run_id = %c.event.run_id, "Dropping a WebSocket client too slow to take its events");
                self.close(CLOSE_TOO_SLOW, "too slow").await;
                Err(())
            }
            Err(Gone::Client) => Err(()),
        }
    }
}
