//! A run's event stream over SSE, read from the store: `event:`/`data:`/`id:` frames with the
//! event's integer seq as the id, keep-alive comments, and always an `end` last (a run that
//! ended without one, e.g. a pending run cancelled, gets a synthesised `end`).

use crate::hub::Cached;
use crate::runtime::Runtime;
use agentd_core::{RunEvent, RunStore, TenantId};
use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// Which events a client wants (`None`: all the run stored).
pub(crate) type Filter = Option<BTreeSet<String>>;

/// The event names a stream mode produces.
pub(crate) fn event_names(mode: &str) -> &'static [&'static str] {
    match mode {
        "values" => &["values"],
        "updates" => &["updates"],
        "messages-tuple" => &["messages"],
        "messages" => &["messages/metadata", "messages/partial", "messages/complete"],
        "events" => &["events"],
        "debug" => &["debug"],
        "custom" => &["custom"],
        "tasks" => &["tasks"],
        "checkpoints" => &["checkpoints"],
        _ => &[],
    }
}

fn wanted(filter: &Filter, event: &str) -> bool {
    match filter {
        None => true,
        Some(set) => matches!(event, "metadata" | "error" | "end") || set.contains(event),
    }
}

/// Cancels the run when the client goes away before the end (`on_disconnect = cancel`).
pub(crate) struct DisconnectGuard {
    pub rt: Arc<Runtime>,
    pub tenant: TenantId,
    pub run_id: String,
    pub armed: bool,
}

impl Drop for DisconnectGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let rt = self.rt.clone();
        let tenant = self.tenant.clone();
        let run_id = std::mem::take(&mut self.run_id);
        self.rt.tracker.spawn(async move {
            let _ = rt
                .cancel_run(&tenant, &run_id, agentd_core::CancelAction::Interrupt)
                .await;
        });
    }
}

struct State {
    rt: Arc<Runtime>,
    tenant: TenantId,
    run_id: String,
    cursor: i64,
    filter: Filter,
    rx: tokio::sync::watch::Receiver<u64>,
    queue: std::collections::VecDeque<Bytes>,
    done: bool,
    /// A signal arrived (or the stream just began): the store may have more.
    fresh: bool,
    last_sent: std::time::Instant,
    guard: Option<DisconnectGuard>,
    _client: ClientSlot,
}

/// Counts open stream clients (`runtime.max_stream_clients`).
pub(crate) struct ClientSlot(Arc<Runtime>);

impl ClientSlot {
    pub(crate) fn take(rt: &Arc<Runtime>) -> Option<ClientSlot> {
        use std::sync::atomic::Ordering;
        let n = rt.stream_clients.fetch_add(1, Ordering::SeqCst) + 1;
        if n > rt.settings.max_stream_clients {
            rt.stream_clients.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        crate::metrics::stream_clients(n);
        Some(ClientSlot(rt.clone()))
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let n = self
            .0
            .stream_clients
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        crate::metrics::stream_clients(n.saturating_sub(1));
    }
}

/// Reads events after the cursor into the queue; marks the stream done at `end`.
async fn refill(st: &mut State) -> Result<(), ()> {
    let events = st
        .rt
        .hub
        .events_after(&st.rt.store, &st.run_id, st.cursor)
        .await
        .map_err(|_| ())?;
    if events.len() >= 512 {
        // A full page: there may be more without a new signal.
        st.fresh = true;
    }
    if events.is_empty() {
        // No more events: if the run is over (or gone) without an `end`, say it ended.
        match st.rt.store.get_run(&st.tenant, &st.run_id).await {
            Ok(Some(r)) if !r.status.is_terminal() => return Ok(()),
            Ok(_) => {
                // Re-read once: the end may have been written between the two reads.
                let late = st
                    .rt
                    .store
                    .events_after(&st.run_id, st.cursor, 512)
                    .await
                    .map_err(|_| ())?;
                if late.is_empty() {
                    st.queue.push_back(
                        Cached::new(RunEvent {
                            run_id: st.run_id.clone(),
                            seq: st.cursor + 1,
                            event: "end".into(),
                            data: "null".into(),
                            at: chrono::Utc::now(),
                        })
                        .sse,
                    );
                    st.done = true;
                    return Ok(());
                }
                push(
                    st,
                    late.into_iter().map(|e| Arc::new(Cached::new(e))).collect(),
                );
                return Ok(());
            }
            Err(_) => return Err(()),
        }
    }
    push(st, events);
    Ok(())
}

fn push(st: &mut State, events: Vec<Arc<Cached>>) {
    for c in events {
        st.cursor = c.event.seq;
        if c.event.event == "end" {
            st.done = true;
        }
        if wanted(&st.filter, &c.event.event) {
            st.queue.push_back(c.sse.clone());
        }
        if st.done {
            break;
        }
    }
}

/// The SSE response for a run, starting after event `cursor`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn response(
    rt: Arc<Runtime>,
    tenant: TenantId,
    run_id: String,
    cursor: i64,
    filter: Filter,
    guard: Option<DisconnectGuard>,
    location: Option<String>,
    content_location: Option<String>,
) -> Response {
    let Some(slot) = ClientSlot::take(&rt) else {
        let mut resp = Response::new(Body::from(
            "{\"detail\":\"too many stream clients (runtime.max_stream_clients)\"}",
        ));
        *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        return resp;
    };
    let rx = rt.hub.subscribe(&run_id);
    let keepalive = rt.settings.keepalive;
    let poll = rt.hub.poll();
    let st = State {
        rt,
        tenant,
        run_id,
        cursor,
        filter,
        rx,
        queue: Default::default(),
        done: false,
        fresh: true,
        last_sent: std::time::Instant::now(),
        guard,
        _client: slot,
    };
    let stream = futures::stream::unfold(st, move |mut st| async move {
        loop {
            if let Some(b) = st.queue.pop_front() {
                st.last_sent = std::time::Instant::now();
                return Some((Ok::<Bytes, std::io::Error>(b), st));
            }
            if st.done {
                if let Some(mut g) = st.guard.take() {
                    g.armed = false;
                }
                return None;
            }
            if st.fresh || st.rx.has_changed().unwrap_or(true) {
                st.fresh = false;
                st.rx.borrow_and_update();
                if refill(&mut st).await.is_err() {
                    st.fresh = true;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                if !st.queue.is_empty() || st.done {
                    continue;
                }
            }
            let until_keepalive = keepalive.saturating_sub(st.last_sent.elapsed());
            let wait = poll.map_or(until_keepalive, |p| p.min(until_keepalive));
            tokio::select! {
                r = st.rx.changed() => {
                    st.fresh = true;
                    if r.is_err() {
                        // The hub forgot the run (it ended): re-subscribe and re-read.
                        st.rx = st.rt.hub.subscribe(&st.run_id);
                    }
                }
                () = tokio::time::sleep(wait) => {
                    if poll.is_some() {
                        // Runs on other replicas signal nobody here: look again.
                        st.fresh = true;
                    }
                    if st.last_sent.elapsed() >= keepalive {
                        st.last_sent = std::time::Instant::now();
                        return Some((Ok(Bytes::from_static(b": heartbeat\n\n")), st));
                    }
                }
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Some(l) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        h.insert(header::LOCATION, l);
    }
    if let Some(l) = content_location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        h.insert(header::CONTENT_LOCATION, l);
    }
    resp
}
