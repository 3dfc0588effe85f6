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

pub(crate) const LEDGER_ROWS: &str = "agentd_ledger_rows_total";
pub(crate) const LEDGER_DROPPED: &str = "agentd_ledger_dropped_total";
pub(crate) const LEDGER_FAILURES: &str = "agentd_ledger_write_failures_total";

/// Attempts per batch before its rows are given up on (logged at ERROR).
const WRITE_ATTEMPTS: u32 = 5;

pub(crate) struct Ledger {
    tx: std::sync::Mutex<Option<mpsc::Sender<SpendRecord>>>,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    dropped: Counter,
    /// Dropped rows are logged at most once per [`LOG_INTERVAL`]: the drops come exactly when
    /// the store is down, and one ERROR per row would bury everything else in the log.
    drop_log: LogLimiter,
}

/// The shortest time between two ERROR lines about lost rows.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Lets one event through per interval and counts the ones held back.
pub(crate) struct LogLimiter {
    interval: Duration,
    /// Milliseconds since `origin` when the last event was let through (u64::MAX: never).
    last: std::sync::atomic::AtomicU64,
    suppressed: std::sync::atomic::AtomicU64,
    origin: std::time::Instant,
}

impl LogLimiter {
    pub(crate) fn new(interval: Duration) -> LogLimiter {
        LogLimiter {
            interval,
            last: std::sync::atomic::AtomicU64::new(u64::MAX),
            suppressed: std::sync::atomic::AtomicU64::new(0),
            origin: std::time::Instant::now(),
        }
    }

    /// `Some(n)` when this event should be logged, `n` being how many were held back since the
    /// last one; `None` when it is held back.
    pub(crate) fn allow(&self) -> Option<u64> {
        self.allow_at(self.origin.elapsed().as_millis() as u64)
    }

    fn allow_at(&self, now_ms: u64) -> Option<u64> {
        use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
        let last = self.last.load(Acquire);
        let due =
            last == u64::MAX || now_ms.saturating_sub(last) >= self.interval.as_millis() as u64;
        if due
            && self
                .last
                .compare_exchange(last, now_ms, AcqRel, Acquire)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Relaxed));
        }
        self.suppressed.fetch_add(1, Relaxed);
        None
    }
}

impl Ledger {
    /// Starts the writer task. A disabled ledger accepts rows and discards them.
    pub(crate) fn start(store: Arc<Store>, config: &LedgerConfig) -> Arc<Ledger> {
        let dropped = metrics::counter!(LEDGER_DROPPED);
        if !config.enabled {
            return Arc::new(Ledger {
                tx: std::sync::Mutex::new(None),
                task: tokio::sync::Mutex::new(None),
                dropped,
                drop_log: LogLimiter::new(LOG_INTERVAL),
            });
        }
        let (tx, rx) = mpsc::channel(config.queue_rows);
        let task = tokio::spawn(writer(store, rx, config.flush, config.batch_rows));
        Arc::new(Ledger {
            tx: std::sync::Mutex::new(Some(tx)),
            task: tokio::sync::Mutex::new(Some(task)),
            dropped,
            drop_log: LogLimiter::new(LOG_INTERVAL),
        })
    }

    /// Whether rows are recorded at all (`ledger.enabled`).
    pub(crate) fn enabled(&self) -> bool {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Queues a row; never waits.
    pub(crate) fn record(&self, row: SpendRecord) {
        let guard = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = guard.as_ref() else {
            return;
        };
        if let Err(err) = tx.try_send(row) {
            self.dropped.increment(1);
            if let Some(also) = self.drop_log.allow() {
                tracing::error!(
                    error = %err,
                    dropped_since_last_message = also,
                    "Spend ledger queue full or closed; rows are being dropped (is the store reachable?)"
                );
            }
        }
    }

    /// Stops accepting rows and waits until every queued row is written (or given up on).
    pub(crate) async fn close(&self) {
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
    let log = LogLimiter::new(LOG_INTERVAL);
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
        write(&store, &mut batch, &written, &failures, &log).await;
        if closed {
            // Drain whatever is left (close() dropped the sender; nothing new arrives).
            while let Ok(row) = rx.try_recv() {
                batch.push(row);
                if batch.len() >= batch_rows {
                    write(&store, &mut batch, &written, &failures, &log).await;
                }
            }
            write(&store, &mut batch, &written, &failures, &log).await;
            return;
        }
    }
}

async fn write(
    store: &Store,
    batch: &mut Vec<SpendRecord>,
    written: &Counter,
    failures: &Counter,
    log: &LogLimiter,
) {
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
                    metrics::counter!(LEDGER_DROPPED).increment(batch.len() as u64);
                    if let Some(also) = log.allow() {
                        tracing::error!(rows = batch.len(), batches_lost_since_last_message = also, error = %err, "Could not write spend ledger rows; they are lost");
                    }
                    batch.clear();
                    return;
                }
                if attempt == 1 {
                    tracing::warn!(rows = batch.len(), error = %err, "Spend ledger write failed; retrying");
                }
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_limiter_lets_one_event_through_per_interval_and_counts_the_rest() {
        let l = LogLimiter::new(Duration::from_secs(10));
        assert_eq!(l.allow_at(0), Some(0));
        for t in 1..1000 {
            assert_eq!(l.allow_at(t), None);
        }
        assert_eq!(l.allow_at(9_999), None);
        assert_eq!(l.allow_at(10_000), Some(1000));
        assert_eq!(l.allow_at(10_001), None);
        assert_eq!(l.allow_at(25_000), Some(1));
    }
}
