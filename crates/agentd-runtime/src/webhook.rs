//! Run webhooks: `webhook` on a run → POST the run to that URL when it ends, with a few
//! retries, through the same private-address guard as HTTP tools.

use crate::runtime::Runtime;
use agentd_core::{Run, RunStatus};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub(crate) fn after_run(rt: &Arc<Runtime>, run: &Run, status: RunStatus, error: Option<&str>) {
    let Some(url) = run.kwargs["webhook"].as_str().map(str::to_owned) else {
        return;
    };
    let body = json!({
        "run_id": run.run_id,
        "thread_id": run.thread_id,
        "assistant_id": run.assistant_id,
        "status": status.as_str(),
        "error": error,
        "metadata": run.metadata,
        "created_at": run.created_at,
    });
    let rt2 = rt.clone();
    rt.tracker.spawn(async move {
        for attempt in 0..3u32 {
            match rt2.tools.post_json(&url, &body, Duration::from_secs(10)).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(url = %agentd_core::echo(&url), attempt, error = %e, "Run webhook failed");
                    tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
                }
            }
        }
    });
}
