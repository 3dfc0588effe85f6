//! The spend ledger writer: rows are queued by the request path and written to the store in
//! batches by one background task, so a slow store never adds latency to a request.
//!
//! A row is flushed within `ledger.flush_ms` (default 100 ms) of being queued, or sooner when
//! `batch_rows` are waiting; a failed write is retried (rows are idempotent by request id) and
//! closing the ledger (drain) writes everything still queued. The queue is bounded: when the
//! store is down long enough to fill it, new rows are dropped and counted in
//! `agentd_ledger_dropped_total` rather than growing memory without bound. Budgets do not
//! depend on the ledger at run time (counters are separate), only when rebuilt after a restart.

use agentd_config::LedgerConfig;
use agentd_core::{SpendRecord, SpendStore};
use agentd_store::Store;
use metrics::Counter;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub const LEDGER_ROWS: &str = "agentd_ledger_rows_total";
pub const LEDGER_DROPPED: &str = "agentd_ledger_dropped_total";
pub const LEDGER_FAILURES: &str = "agentd_ledger_write_failures_total";

/// Attempts per batch before its rows are given up on (logged at ERROR).
const WRITE_ATTEMPTS: u32 = 5;

pub struct Ledger {
    tx: std::sync::Mutex<Option<mpsc::Sender<SpendRecord>>>,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    dropped: Counter,
}

impl Ledger {
    /// Starts the writer task. A disabled ledger accepts rows and discards them.
    pub fn start(store: Arc<Store>, config: &LedgerConfig) -> Arc<Ledger> {
        let dropped = metrics::counter!(LEDGER_DROPPED);
        if !config.enabled {
            return Arc::new(Ledger {
                tx: std::sync::Mutex::new(None),
                task: tokio::sync::Mutex::new(None),
                dropped,
            });
        }
        let (tx, rx) = mpsc::channel(config.queue_rows);
        let task = tokio::spawn(writer(store, rx, config.flush, config.batch_rows));
        Arc::new(Ledger {
            tx: std::sync::Mutex::new(Some(tx)),
            task: tokio::sync::Mutex::new(Some(task)),
            dropped,
        })
    }

    /// Queues a row; never waits.
    pub fn record(&self, row: SpendRecord) {
        let guard = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = guard.as_ref() else {
            return;
        };
        if let Err(err) = tx.try_send(row) {
            self.dropped.increment(1);
            tracing::error!(
                error = %err,
                "Spend ledger queue full or closed; a row was dropped (is the store reachable?)"
            );
        }
    }

    /// Stops accepting rows and waits until every queued row is written (or given up on).
    pub async fn close(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
    }
}

async fn writer(
    store: Arc<Store>,
    mut rx: mpsc::Receiver<SpendRecord>,
    flush: Duration,
    batch_rows: usize,
) {
    let written = metrics::counter!(LEDGER_ROWS);
    let failures = metrics::counter!(LEDGER_FAILURES);
    let mut batch = Vec::with_capacity(batch_rows);
    loop {
        // Wait for the first row, then gather until the batch is full or `flush` has passed
        // since that first row.
        let Some(first) = rx.recv().await else {
            return;
        };
        batch.push(first);
        let deadline = Instant::now() + flush;
        let mut closed = false;
        while batch.len() < batch_rows {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(row)) => batch.push(row),
                Ok(None) => {
                    closed = true;
                    break;
                }
                Err(_) => break,
            }
        }
        write(&store, &mut batch, &written, &failures).await;
        if closed {
            // Drain whatever is left (close() dropped the sender; nothing new arrives).
            while let Ok(row) = rx.try_recv() {
                batch.push(row);
                if batch.len() >= batch_rows {
                    write(&store, &mut batch, &written, &failures).await;
                }
            }
            write(&store, &mut batch, &written, &failures).await;
            return;
        }
    }
}

async fn write(store: &Store, batch: &mut Vec<SpendRecord>, written: &Counter, failures: &Counter) {
    if batch.is_empty() {
        return;
    }
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=WRITE_ATTEMPTS {
        match store.record_spend(batch).await {
            Ok(()) => {
                written.increment(batch.len() as u64);
                batch.clear();
                return;
            }
            Err(err) => {
                failures.increment(1);
                if attempt == WRITE_ATTEMPTS {
                    tracing::error!(rows = batch.len(), error = %err, "Could not write spend ledger rows; they are lost");
                    batch.clear();
                    return;
                }
                tracing::warn!(rows = batch.len(), attempt, error = %err, "Spend ledger write failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
}
