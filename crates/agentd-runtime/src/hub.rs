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
        if last.is_some_and(|l| l != from) && !page.is_empty() {
            // A client ahead of the tail (it joined at the newest event): the tail must stay
            // contiguous, so it restarts here; clients behind it read the store.
            tail.events.clear();
        }
        let mut out = Vec::with_capacity(page.len());
        for e in page {
            let c = Arc::new(Cached::new(e));
            tail.events.push_back(c.clone());
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

#[cfg(test)]
mod tests {
    use super::Hub;
    use agentd_core::{
        CreateRun, MultitaskStrategy, NewEvent, Priority, Run, RunStatus, RunStore, TenantId,
        Thread, ThreadStatus,
    };
    use std::time::Duration;

    /// Clients at different cursors, one of them ahead of the shared tail, each get exactly the
    /// events after their cursor (the tail must stay contiguous).
    #[tokio::test]
    async fn shared_tail_serves_every_cursor_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let store = agentd_store::Store::open_sqlite(&dir.path().join("t.db"))
            .await
            .unwrap();
        let now =
            chrono::DateTime::from_timestamp_millis(chrono::Utc::now().timestamp_millis()).unwrap();
        let tenant = TenantId::new("t");
        let thread = Thread {
            thread_id: "th".into(),
            tenant: tenant.clone(),
            created_at: now,
            updated_at: now,
            metadata: serde_json::json!({}),
            status: ThreadStatus::Idle,
            values: None,
            expires_at: None,
            ttl_minutes: None,
        };
        store.create_thread(&thread).await.unwrap();
        let run = Run {
            run_id: "r".into(),
            thread_id: "th".into(),
            tenant: tenant.clone(),
            assistant_id: "a".into(),
            agent: "a".into(),
            status: RunStatus::Pending,
            created_at: now,
            updated_at: now,
            metadata: serde_json::json!({}),
            kwargs: serde_json::json!({}),
            multitask_strategy: MultitaskStrategy::Enqueue,
            priority: Priority::Normal,
            stream: "cpu".into(),
            not_before: now,
            lease_owner: None,
            lease_epoch: 0,
            lease_expires_at: None,
            attempt: 0,
            error: None,
            cancel: None,
            key_id: None,
            user_id: None,
            parent_run_id: None,
            ephemeral_thread: false,
            enqueued_at: now,
        };
        let ev = |n: i64| NewEvent {
            event: "values".into(),
            data: format!("{n}"),
        };
        assert!(matches!(
            store.create_run(&run, &[ev(1)]).await.unwrap(),
            CreateRun::Created { .. }
        ));
        let claimed = store
            .claim_run("r", "w", Duration::from_secs(30), None)
            .await
            .unwrap()
            .unwrap();
        let epoch = claimed.lease_epoch;
        store
            .append_events("r", epoch, &[ev(2), ev(3)])
            .await
            .unwrap();
        let hub = Hub::new(None);
        let seqs = |v: Vec<std::sync::Arc<super::Cached>>| -> Vec<i64> {
            v.iter().map(|c| c.event.seq).collect()
        };
        // A client that starts at the newest event, ahead of an empty tail.
        assert_eq!(
            seqs(hub.events_after(&store, "r", 3).await.unwrap()),
            Vec::<i64>::new()
        );
        assert_eq!(
            seqs(hub.events_after(&store, "r", 0).await.unwrap()),
            vec![1, 2, 3]
        );
        store
            .append_events("r", epoch, &[ev(4), ev(5)])
            .await
            .unwrap();
        // Ahead of the tail's start: the tail restarts, nobody misses anything.
        assert_eq!(
            seqs(hub.events_after(&store, "r", 4).await.unwrap()),
            vec![5]
        );
        assert_eq!(
            seqs(hub.events_after(&store, "r", 3).await.unwrap()),
            vec![4, 5]
        );
        assert_eq!(
            seqs(hub.events_after(&store, "r", 1).await.unwrap()),
            vec![2, 3, 4, 5]
        );
        assert_eq!(
            seqs(hub.events_after(&store, "r", 5).await.unwrap()),
            Vec::<i64>::new()
        );
    }
}
