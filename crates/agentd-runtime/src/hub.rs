//! In-process signals between the API and the workers of one process: "run R has new events
//! up to seq N" / "run R ended", and the cancel token of each run executing here.
//!
//! The store stays the truth: a subscriber always reads events from the store; the hub only
//! tells it when to look. Across processes the subscriber also looks on a timer (see
//! `Hub::poll`), so a run executing on another replica is followed too.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Entry {
    /// Bumped whenever the run's events advance or it ends.
    seq: Option<watch::Sender<u64>>,
    /// Set while the run executes in this process.
    cancel: Option<CancellationToken>,
}

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
