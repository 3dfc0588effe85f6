//! Workers: one claim loop per pool, each run on its own task with a lease heartbeat; plus the
//! background loops every process runs (reaper, sweeper, crons, queue metrics, cancel watch).
//!
//! Priorities: a pool's streams are `<pool>.critical|high|normal|low`. Each claim asks the
//! queue for them in an order that rotates over a weighted schedule (critical 8, high 4,
//! normal 2, low 1 turns as first choice in 15), so higher priorities are served first and the
//! lowest still gets one claim in fifteen: no starvation.
//!
//! Fair share: a tenant may hold at most `max_tenant_share` of a pool's slots in this worker
//! while another tenant's runs were seen in the last 10 s; its extra deliveries are put back
//! with a short delay, so a burst from one tenant cannot starve the others.

use crate::engine::{self, Stop};
use crate::runtime::{Runtime, Settings};
use agentd_core::{Delivery, Priority, RunStatus, RunStore};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

const SCHEDULE: [Priority; 15] = [
    Priority::Critical,
    Priority::High,
    Priority::Critical,
    Priority::Normal,
    Priority::Critical,
    Priority::High,
    Priority::Critical,
    Priority::Low,
    Priority::Critical,
    Priority::High,
    Priority::Critical,
    Priority::Normal,
    Priority::Critical,
    Priority::High,
    Priority::Critical,
];

fn order(pool: &str, turn: usize) -> Vec<String> {
    let first = SCHEDULE[turn % SCHEDULE.len()];
    let mut out = vec![Runtime::stream_name(pool, first)];
    out.extend(
        Priority::ALL
            .iter()
            .filter(|p| **p != first)
            .map(|p| Runtime::stream_name(pool, *p)),
    );
    out
}

struct Fairness {
    running: HashMap<String, usize>,
    seen: HashMap<String, Instant>,
}

/// Starts every background loop this process's role needs.
pub(crate) fn start(rt: &Arc<Runtime>) {
    if rt.role.runs_workers() {
        for pool in rt.config.pools.iter().filter(|p| {
            rt.worker_pools
                .as_ref()
                .is_none_or(|only| only.contains(&p.name))
        }) {
            let rt2 = rt.clone();
            let name = pool.name.clone();
            let concurrency = pool.concurrency as usize;
            let share = pool.max_tenant_share;
            rt.tracker
                .spawn(async move { pool_loop(rt2, name, concurrency, share).await });
        }
        let rt2 = rt.clone();
        rt.tracker.spawn(async move { cancel_watch(rt2).await });
    }
    let rt2 = rt.clone();
    rt.tracker.spawn(async move { reaper(rt2).await });
    let rt2 = rt.clone();
    rt.tracker.spawn(async move { sweeper(rt2).await });
    if rt.role.serves_api() {
        let rt2 = rt.clone();
        rt.tracker
            .spawn(async move { crate::cron::scheduler(rt2).await });
    }
    let rt2 = rt.clone();
    rt.tracker.spawn(async move { queue_metrics(rt2).await });
}

async fn pool_loop(rt: Arc<Runtime>, pool: String, concurrency: usize, share: f64) {
    let slots = Arc::new(Semaphore::new(concurrency));
    let fair = Arc::new(Mutex::new(Fairness {
        running: HashMap::new(),
        seen: HashMap::new(),
    }));
    for p in Priority::ALL {
        let stream = Runtime::stream_name(&pool, p);
        while let Err(e) = rt.queue.ensure_stream(&stream).await {
            tracing::warn!(stream = %stream, error = %e, "Queue unavailable; retrying");
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = rt.shutdown.cancelled() => return,
            }
        }
    }
    let cap = ((concurrency as f64 * share).ceil() as usize).max(1);
    let mut turn = 0usize;
    loop {
        // Wait for a free slot.
        let first = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            () = rt.shutdown.cancelled() => return,
        };
        let free = slots.available_permits() + 1;
        crate::metrics::workers(&pool, concurrency - free, free);
        turn += 1;
        let streams = order(&pool, turn);
        let claimed = tokio::select! {
            r = rt.queue.claim(&streams, &rt.owner, free, rt.settings.lease, Duration::from_secs(1)) => r,
            () = rt.shutdown.cancelled() => return,
        };
        let deliveries = match claimed {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(pool = %pool, error = %e, "Cannot claim from the queue; retrying");
                drop(first);
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut first = Some(first);
        for d in deliveries {
            let permit = match first.take() {
                Some(p) => p,
                None => match slots.clone().try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => {
                        let _ = rt.queue.nack(&d, Duration::ZERO).await;
                        continue;
                    }
                },
            };
            // Fair share between tenants.
            let tenant = d.ticket.tenant.clone();
            let over_share = {
                let mut f = fair.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                f.seen.insert(tenant.clone(), now);
                f.seen
                    .retain(|_, t| now.duration_since(*t) < Duration::from_secs(10));
                let others = f.seen.len() > 1;
                let mine = f.running.get(&tenant).copied().unwrap_or(0);
                if others && mine >= cap {
                    true
                } else {
                    *f.running.entry(tenant.clone()).or_default() += 1;
                    false
                }
            };
            if over_share {
                drop(permit);
                let _ = rt.queue.nack(&d, Duration::from_millis(200)).await;
                continue;
            }
            let rt2 = rt.clone();
            let fair2 = fair.clone();
            rt.tracker.spawn(async move {
                handle(&rt2, d).await;
                let mut f = fair2.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(n) = f.running.get_mut(&tenant) {
                    *n = n.saturating_sub(1);
                }
                drop(permit);
            });
        }
    }
}

/// One delivery: claim the run row, execute it with a heartbeat, ack.
async fn handle(rt: &Arc<Runtime>, d: Delivery) {
    let run_id = d.ticket.run_id.clone();
    let cap = rt
        .agent(&d.ticket.agent)
        .and_then(|a| a.config.max_concurrent_runs);
    let claimed = match rt
        .store
        .claim_run(&run_id, &rt.owner, rt.settings.lease, cap)
        .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(run_id = %run_id, error = %e, "Cannot claim a run; it will be retried");
            let _ = rt.queue.nack(&d, Duration::from_secs(1)).await;
            return;
        }
    };
    let Some(run) = claimed else {
        not_claimable(rt, &d).await;
        return;
    };
    if run.attempt as u32 > rt.settings.max_deliveries {
        let msg = format!(
            "the run was started {} times without finishing (queue.max_deliveries); giving up",
            run.attempt - 1
        );
        engine::finish(
            rt,
            &run,
            run.lease_epoch,
            RunStatus::Error,
            Some(&msg),
            None,
            true,
        )
        .await;
        let _ = rt.queue.dead_letter(&d, &msg).await;
        return;
    }
    let stop = rt.hub.executing(&run_id);
    let reason: Arc<Mutex<Option<Stop>>> = Arc::default();
    if let Some(action) = run.cancel {
        *reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(Stop::Cancel(action));
        stop.cancel();
    }
    let heartbeat = {
        let rt = rt.clone();
        let stop = stop.clone();
        let reason = reason.clone();
        let d = d.clone();
        let epoch = run.lease_epoch;
        let run_id = run_id.clone();
        tokio::spawn(async move { heartbeat(rt, d, run_id, epoch, stop, reason).await })
    };
    // Shutdown stops the run where it is; its lease expires and another worker resumes it.
    let shutdown = {
        let stop = stop.clone();
        let reason = reason.clone();
        let token = rt.shutdown.clone();
        let grace = rt.config.server.shutdown_grace;
        tokio::spawn(async move {
            token.cancelled().await;
            tokio::time::sleep(grace.saturating_sub(Duration::from_secs(1))).await;
            let mut r = reason.lock().unwrap_or_else(|e| e.into_inner());
            if r.is_none() {
                *r = Some(Stop::Shutdown);
            }
            drop(r);
            stop.cancel();
        })
    };
    let thread_id = run.thread_id.clone();
    engine::execute(rt.clone(), run, stop.clone(), reason.clone()).await;
    heartbeat.abort();
    shutdown.abort();
    let outcome = reason.lock().unwrap_or_else(|e| e.into_inner()).clone();
    rt.hub.ended(&run_id);
    match outcome {
        Some(Stop::Fenced) => {
            // Another worker owns it and its delivery: ours is stale.
            tracing::warn!(run_id = %run_id, "Lost the run's lease to another worker (paused or cut off past the lease); stopped without writing");
            let _ = rt.queue.ack(&d).await;
        }
        Some(Stop::Shutdown) => {
            let _ = rt.queue.nack(&d, Duration::ZERO).await;
        }
        _ => {
            let _ = rt.queue.ack(&d).await;
            // The thread's next run (enqueue strategy) can start now.
            if let Ok(Some(next)) = rt.store.next_pending_on_thread(&thread_id).await {
                let _ = rt.enqueue(&next).await;
            }
        }
    }
}

/// A delivery whose run cannot be claimed now: decide whether to drop it or put it back.
async fn not_claimable(rt: &Arc<Runtime>, d: &Delivery) {
    match rt.store.run_by_id(&d.ticket.run_id).await {
        Ok(None) => {
            let _ = rt.queue.ack(d).await;
        }
        Ok(Some(run)) if run.status.is_terminal() => {
            let _ = rt.queue.ack(d).await;
        }
        Ok(Some(run)) => {
            let now = chrono::Utc::now();
            let delay = if run.status == RunStatus::Pending && run.not_before > now {
                (run.not_before - now).to_std().unwrap_or_default()
            } else if run.status == RunStatus::Running {
                // Someone holds a live lease: look again when it would expire.
                run.lease_expires_at
                    .and_then(|t| (t - now).to_std().ok())
                    .unwrap_or(Duration::from_secs(1))
                    .min(rt.settings.lease)
                    + Duration::from_millis(100)
            } else {
                // Waiting for its thread or the agent's concurrency cap.
                Duration::from_millis(250)
            };
            let _ = rt.queue.nack(d, delay).await;
        }
        Err(_) => {
            let _ = rt.queue.nack(d, Duration::from_secs(1)).await;
        }
    }
}

async fn heartbeat(
    rt: Arc<Runtime>,
    d: Delivery,
    run_id: String,
    epoch: i64,
    stop: CancellationToken,
    reason: Arc<Mutex<Option<Stop>>>,
) {
    let every = rt.settings.lease / 3;
    loop {
        tokio::time::sleep(every).await;
        match rt
            .store
            .renew_lease(&run_id, epoch, rt.settings.lease)
            .await
        {
            Ok(Some(cancel)) => {
                if let Some(action) = cancel {
                    let mut r = reason.lock().unwrap_or_else(|e| e.into_inner());
                    if r.is_none() {
                        *r = Some(Stop::Cancel(action));
                    }
                    drop(r);
                    stop.cancel();
                }
            }
            Ok(None) => {
                let mut r = reason.lock().unwrap_or_else(|e| e.into_inner());
                if r.is_none() {
                    *r = Some(Stop::Fenced);
                }
                drop(r);
                stop.cancel();
                return;
            }
            Err(e) => {
                tracing::warn!(run_id = %run_id, error = %e, "Cannot renew a run's lease");
            }
        }
        let _ = rt.queue.extend(&d, rt.settings.lease).await;
    }
}

/// Cancel requests for runs executing here, made on another replica: one query every 250 ms.
async fn cancel_watch(rt: Arc<Runtime>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
            () = rt.shutdown.cancelled() => return,
        }
        let local = rt.hub.local_runs();
        if local.is_empty() {
            rt.hub.tidy();
            continue;
        }
        if let Ok(found) = rt.store.cancel_requests(&local).await {
            for (id, _) in found {
                rt.hub.cancel(&id);
            }
        }
        rt.hub.tidy();
    }
}

/// Re-sends runs whose message was lost or whose worker died.
async fn reaper(rt: Arc<Runtime>) {
    let Settings {
        reap_interval,
        lease,
        ..
    } = rt.settings.clone();
    loop {
        tokio::select! {
            () = tokio::time::sleep(reap_interval) => {}
            () = rt.shutdown.cancelled() => return,
        }
        match rt.store.reap(lease * 2, 200).await {
            Ok(runs) => {
                if !runs.is_empty() {
                    crate::metrics::reaped(runs.len());
                    tracing::info!(
                        count = runs.len(),
                        "Re-enqueued runs whose worker died or whose message was lost"
                    );
                }
                for run in runs {
                    let _ = rt.enqueue(&run).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "Reaper cannot read the run table"),
        }
    }
}

/// Deletes expired threads, old events and old runs.
async fn sweeper(rt: Arc<Runtime>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(rt.settings.sweep_interval) => {}
            () = rt.shutdown.cancelled() => return,
        }
        rt.hub.tidy();
        let now = chrono::Utc::now();
        let ev = now - chrono::Duration::from_std(rt.settings.event_retention).unwrap_or_default();
        let runs = now - chrono::Duration::from_std(rt.settings.run_retention).unwrap_or_default();
        match rt.store.sweep(ev, runs).await {
            Ok(s) if s.threads + s.runs + s.events > 0 => {
                tracing::info!(
                    threads = s.threads,
                    runs = s.runs,
                    events = s.events,
                    "Retention sweep"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "Retention sweep failed"),
        }
    }
}

async fn queue_metrics(rt: Arc<Runtime>) {
    loop {
        for pool in &rt.config.pools {
            let mut work = Some(0u64);
            for p in Priority::ALL {
                let stream = Runtime::stream_name(&pool.name, p);
                match rt.queue.stats(&stream).await {
                    Ok(s) => {
                        crate::metrics::queue(&stream, &pool.name, &s);
                        work = work.map(|w| w + s.depth + s.in_flight);
                    }
                    Err(_) => work = None,
                }
            }
            // An unreadable queue keeps the last desired count rather than report zero.
            if let Some(work) = work {
                let status = pool_status(&rt, pool, work, chrono::Utc::now());
                crate::metrics::pool_desired(&pool.name, status.desired, status.min, status.max);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            () = rt.shutdown.cancelled() => return,
        }
    }
}

/// A pool's scaling state: its work and the worker count its schedule wants for it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct PoolStatus {
    pub(crate) pool: String,
    /// Queued plus running runs.
    pub(crate) work: u64,
    pub(crate) concurrency: u32,
    pub(crate) desired: u32,
    pub(crate) min: u32,
    pub(crate) max: u32,
    pub(crate) business_hours: bool,
    pub(crate) persistent: bool,
    /// Seconds since the pool last had work in this process's view (`None`: not since start).
    pub(crate) idle_seconds: Option<u64>,
}

/// Records `work` for the idle clock and computes the desired count at `now`.
pub(crate) fn pool_status(
    rt: &Runtime,
    pool: &agentd_config::PoolConfig,
    work: u64,
    now: chrono::DateTime<chrono::Utc>,
) -> PoolStatus {
    let idle_for = {
        let mut seen = rt
            .pool_activity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if work > 0 {
            seen.insert(pool.name.clone(), Instant::now());
        }
        seen.get(&pool.name).map(Instant::elapsed)
    };
    let schedule = &pool.schedule;
    let (min, max, business_hours) = schedule.bounds_at(now);
    PoolStatus {
        pool: pool.name.clone(),
        work,
        concurrency: pool.concurrency,
        desired: schedule.desired(now, work, pool.concurrency, idle_for),
        min,
        max,
        business_hours,
        persistent: schedule.persistent,
        idle_seconds: idle_for.map(|d| d.as_secs()),
    }
}
