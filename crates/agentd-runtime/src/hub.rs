//! In-process signals between the API and the workers of one process: "run R has new events
//! up to seq N" / "run R ended", and the cancel token of each run executing here.
//!
//! The store stays the truth: subscribers read events from the store; the hub tells them when
//! to look. Across processes a subscriber also looks on a timer (see `Hub::poll`), so a run
//! executing on another replica is followed too.
//!
//! Many clients on one run (a fan-out) share one read: [`Hub::events_after`] keeps the run's
//! recent events in memory (rendered once as SSE and WebSocket frames), so each new event costs
//! one store query, not one per client. Clients behind the kept tail read the store directly.

use agentd_core::{RunEvent, RunStore, StoreError};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Entry {
    /// Bumped whenever the run's events advance or it ends.
    seq: Option<watch::Sender<u64>>,
    /// Set while the run executes in this process.
    cancel: Option<CancellationToken>,
    /// The run's recent events, shared by its subscribers.
    tail: Option<Arc<tokio::sync::Mutex<Tail>>>,
}

/// An event with its frames, rendered once for every client.
pub struct Cached {
    pub event: RunEvent,
    /// `event: …\ndata: …\nid: …\n\n`
    pub sse: Bytes,
    /// `{"run_id","id","event","data"}`
    pub ws: String,
}

impl Cached {
    pub fn new(event: RunEvent) -> Cached {
        let sse = Bytes::from(format!(
            "event: {}\ndata: {}\nid: {}\n\n",
            event.event, event.data, event.seq
        ));
        let data: &serde_json::value::RawValue =
            serde_json::from_str(&event.data).unwrap_or(serde_json::value::RawValue::NULL);
        let ws = serde_json::json!({"run_id": event.run_id, "id": event.seq, "event": event.event, "data": data})
            .to_string();
        Cached { event, sse, ws }
    }
}

/// The last events of a run, contiguous by seq.
#[derive(Default)]
struct Tail {
    events: std::collections::VecDeque<Arc<Cached>>,
}

/// How many events a run's tail keeps.
const TAIL_EVENTS: usize = 4096;
const PAGE: i64 = 512;

pub struct Hub {
    runs: Mutex<HashMap<String, Entry>>,
    /// How often a subscriber re-reads the store without a signal (runs on other replicas);
    /// `None` when every run executes in this process.
    poll: Option<Duration>,
}

impl Hub {
    pub fn new(poll: Option<Duration>) -> Hub {
        Hub {
            runs: Mutex::new(HashMap::new()),
            poll,
        }
    }

    pub fn poll(&self) -> Option<Duration> {
        self.poll
    }

    fn with<R>(&self, run_id: &str, f: impl FnOnce(&mut Entry) -> R) -> R {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        let entry = runs.entry(run_id.to_owned()).or_default();
        f(entry)
    }

    /// A receiver that changes whenever the run's events advance.
    pub fn subscribe(&self, run_id: &str) -> watch::Receiver<u64> {
        self.with(run_id, |e| {
            e.seq.get_or_insert_with(|| watch::channel(0).0).subscribe()
        })
    }

    /// Events with `seq > cursor` (at most a page), through the run's shared tail.
    pub async fn events_after(
        &self,
        store: &agentd_store::Store,
        run_id: &str,
        cursor: i64,
    ) -> Result<Vec<Arc<Cached>>, StoreError> {
        let tail = self.with(run_id, |e| e.tail.get_or_insert_with(Arc::default).clone());
        let mut tail = tail.lock().await;
        let first = tail.events.front().map(|c| c.event.seq);
        let last = tail.events.back().map(|c| c.event.seq);
        match (first, last) {
            // Behind the tail: this client reads the store on its own.
            (Some(first), _) if cursor + 1 < first => {
                drop(tail);
                let page = store.events_after(run_id, cursor, PAGE).await?;
                return Ok(page.into_iter().map(|e| Arc::new(Cached::new(e))).collect());
            }
            // In the tail: no query.
            (_, Some(last)) if cursor < last => {
                return Ok(tail
                    .events
                    .iter()
                    .filter(|c| c.event.seq > cursor)
                    .take(PAGE as usize)
                    .cloned()
                    .collect());
            }
            _ => {}
        }
        // Caught up with the tail: read what is new, once for everyone.
        let from = last.unwrap_or(cursor).max(cursor);
        let page = store.events_after(run_id, from, PAGE).await?;
        let mut out = Vec::with_capacity(page.len());
        for e in page {
            let c = Arc::new(Cached::new(e));
            if last.is_some() || tail.events.is_empty() {
                tail.events.push_back(c.clone());
            }
            out.push(c);
        }
        while tail.events.len() > TAIL_EVENTS {
            tail.events.pop_front();
        }
        Ok(out)
    }

    /// New events were stored: subscribers re-read the store.
    pub fn published(&self, run_id: &str) {
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = runs.get(run_id).and_then(|e| e.seq.as_ref()) {
            tx.send_modify(|n| *n += 1);
        }
    }

    /// The run ended (or was deleted): wake every subscriber, forget the run.
    pub fn ended(&self, run_id: &str) {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = runs.remove(run_id) {
            if let Some(tx) = e.seq {
                tx.send_modify(|n| *n += 1);
            }
        }
    }

    /// Registers a run executing here; its token is cancelled by [`Hub::cancel`].
    pub fn executing(&self, run_id: &str) -> CancellationToken {
        self.with(run_id, |e| {
            e.cancel.get_or_insert_with(CancellationToken::new).clone()
        })
    }

    /// Cancels the run if it executes in this process. Returns whether it did.
    pub fn cancel(&self, run_id: &str) -> bool {
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        match runs.get(run_id).and_then(|e| e.cancel.as_ref()) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// Run ids executing here.
    pub fn local_runs(&self) -> Vec<String> {
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.iter()
            .filter(|(_, e)| e.cancel.is_some())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Drops entries nobody listens to and that do not execute here.
    pub fn tidy(&self) {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.retain(|_, e| {
            e.cancel.is_some() || e.seq.as_ref().is_some_and(|tx| tx.receiver_count() > 0)
        });
    }
}
