//! Crons: five-field schedules in a time zone, fired once each by whichever replica moves the
//! cron's `next_run_date` first (a compare-and-swap in the store).

use crate::runtime::{NewRun, Runtime, ThreadChoice};
use agentd_core::{Cron, MultitaskStrategy, RunStore};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// A checked schedule.
pub struct Schedule {
    cron: croner::Cron,
    tz: chrono_tz::Tz,
}

impl Schedule {
    /// Five fields (minute hour day-of-month month day-of-week) and an IANA time zone.
    pub fn parse(schedule: &str, timezone: &str) -> Result<Schedule, (&'static str, String)> {
        let fields = schedule.split_whitespace().count();
        if fields != 5 {
            return Err((
                "schedule",
                format!(
                    "the schedule {} has {fields} fields; it must have five: minute hour day-of-month month day-of-week (e.g. \"*/5 * * * *\")",
                    agentd_core::echo(schedule)
                ),
            ));
        }
        let cron = croner::parser::CronParser::new()
            .parse(schedule)
            .map_err(|e| {
                (
                    "schedule",
                    format!(
                        "the schedule {} is not a valid cron expression: {e}",
                        agentd_core::echo(schedule)
                    ),
                )
            })?;
        let tz = chrono_tz::Tz::from_str(timezone).map_err(|_| {
            (
                "timezone",
                format!(
                    "unknown time zone {}: use an IANA name such as \"UTC\" or \"Europe/Paris\"",
                    agentd_core::echo(timezone)
                ),
            )
        })?;
        Ok(Schedule { cron, tz })
    }

    /// The first firing strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// Fires due crons every second.
pub(crate) async fn scheduler(rt: Arc<Runtime>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = rt.shutdown.cancelled() => return,
        }
        let due = match rt.store.due_crons(50).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot read due crons");
                continue;
            }
        };
        for cron in due {
            fire(&rt, cron).await;
        }
    }
}

async fn fire(rt: &Arc<Runtime>, cron: Cron) {
    let Some(expected) = cron.next_run_date else {
        return;
    };
    let next = Schedule::parse(&cron.schedule, &cron.timezone)
        .ok()
        .and_then(|s| s.next_after(Utc::now().max(expected)))
        .filter(|n| cron.end_time.is_none_or(|end| *n <= end));
    match rt.store.advance_cron(&cron.cron_id, expected, next).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(cron_id = %cron.cron_id, error = %e, "Cannot advance a cron");
            return;
        }
    }
    // A tenant pinned to another region since the cron was made: its runs may not start here
    // (strict residency); the cron stays, for the tenant to delete or move.
    match rt.gw.serves_tenant_here(&cron.tenant).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(cron_id = %cron.cron_id, tenant = %cron.tenant, "Cron of a tenant whose home region is another; not fired here");
            return;
        }
        Err(e) => {
            tracing::warn!(cron_id = %cron.cron_id, error = %e, "Cannot read the tenant's home region; cron not fired");
            return;
        }
    }
    let Some(agent) = rt.agent(&cron.agent).cloned() else {
        tracing::warn!(cron_id = %cron.cron_id, agent = %cron.agent, "Cron names an agent that is not configured; skipped");
        return;
    };
    let payload = &cron.payload;
    let input: Vec<Value> = payload["input"]["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let input_bytes = payload["input"].to_string().len();
    let mut kwargs = payload.clone();
    if let Some(o) = kwargs.as_object_mut() {
        o.remove("input");
    }
    let new = NewRun {
        tenant: cron.tenant.clone(),
        key_id: payload["key_id"].as_str().map(str::to_owned),
        user_id: cron.user_id.clone(),
        agent,
        thread: match &cron.thread_id {
            Some(t) => ThreadChoice::Thread {
                id: t.clone(),
                create: false,
            },
            None => ThreadChoice::Stateless,
        },
        input,
        kwargs,
        metadata: serde_json::json!({"cron_id": cron.cron_id}),
        strategy: payload["multitask_strategy"]
            .as_str()
            .and_then(MultitaskStrategy::parse)
            .unwrap_or(MultitaskStrategy::Enqueue),
        after: Duration::ZERO,
        tag: None,
        tier: None,
        input_bytes,
        parent_run_id: None,
    };
    if let Err(e) = rt.create_run(new).await {
        tracing::warn!(cron_id = %cron.cron_id, error = ?e, "A cron could not create its run");
    }
}

#[cfg(test)]
mod tests {
    use super::Schedule;
    use chrono::TimeZone;

    #[test]
    fn five_fields_and_time_zones() {
        let s = Schedule::parse("0 9 * * *", "Europe/Paris").unwrap();
        let after = chrono::Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 0).unwrap();
        // 09:00 in Paris in winter is 08:00 UTC, the next day.
        assert_eq!(
            s.next_after(after).unwrap(),
            chrono::Utc.with_ymd_and_hms(2026, 12, 5, 8, 0, 0).unwrap()
        );
        assert_eq!(
            Schedule::parse("61 * * * *", "UTC").err().unwrap().0,
            "schedule"
        );
        assert_eq!(
            Schedule::parse("* * * * * *", "UTC").err().unwrap().0,
            "schedule"
        );
        assert_eq!(
            Schedule::parse("* * * * *", "Mars/Olympus")
                .err()
                .unwrap()
                .0,
            "timezone"
        );
    }
}
