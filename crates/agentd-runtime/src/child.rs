//! `kind = "agent"` tools: hand a task to another agent.
//!
//! The child runs inside the parent's tool step, on the parent's worker: its model calls go
//! through the gateway attributed to the parent's key, tenant and thread (ledger request ids
//! `<run>:<step>.<n>`), and its cost and steps count against the parent's `max_run_usd` and
//! `max_steps`. It is journaled as the parent's one tool step: if the worker dies inside it, the
//! step (the whole child conversation) is repeated.

use crate::engine::Stop;
use crate::runtime::Runtime;
use agentd_core::{Micros, Run};
use agentd_gateway::model_call::{ModelCall, ModelError};
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub(crate) struct ChildDone {
    pub content: String,
    pub is_error: bool,
    pub cost: Micros,
    pub steps: u32,
}

/// Runs agent `agent` on the task in `args` (`task`, `input`, `query` or the whole arguments).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_child<'a>(
    rt: &'a Arc<Runtime>,
    parent: &'a Run,
    agent: &'a str,
    args: &'a Value,
    key: &'a str,
    budget: Option<Micros>,
    max_steps: u32,
    stop: &'a CancellationToken,
) -> Pin<Box<dyn Future<Output = Result<ChildDone, Stop>> + Send + 'a>> {
    Box::pin(async move {
        let Some(child) = rt.agent(agent).cloned() else {
            return Ok(ChildDone {
                content: format!("error: no agent named {agent}"),
                is_error: true,
                cost: Micros::ZERO,
                steps: 0,
            });
        };
        let task = ["task", "input", "query", "question", "prompt"]
            .iter()
            .find_map(|k| args.get(*k).and_then(Value::as_str))
            .map(str::to_owned)
            .unwrap_or_else(|| args.to_string());
        let mut msgs: Vec<Value> = Vec::new();
        if let Some(instr) = &child.config.instructions {
            msgs.push(json!({"role": "system", "content": instr}));
        }
        msgs.push(json!({"role": "user", "content": task}));
        let mut cost = Micros::ZERO;
        let mut steps = 0u32;
        let limit = max_steps.min(child.config.max_steps);
        let budget = match (budget, child.config.max_run) {
            (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
            (a, b) => a.or(b),
        };
        let fail = |content: String, cost, steps| {
            Ok(ChildDone {
                content,
                is_error: true,
                cost,
                steps,
            })
        };
        loop {
            if stop.is_cancelled() {
                return Err(Stop::Shutdown);
            }
            if steps >= limit {
                return fail(
                    format!("error: the agent {agent} did not finish within {limit} steps"),
                    cost,
                    steps,
                );
            }
            if let Some(b) = budget {
                let chars: usize = msgs.iter().map(|m| m.to_string().len()).sum();
                let worst = rt
                    .gw
                    .worst_case(&child.config.model, (chars / 4) as u64 + 16)
                    .unwrap_or(Micros::ZERO);
                if cost + worst > b {
                    return fail(
                        format!("error: the agent {agent} ran out of budget (max_run_usd)"),
                        cost,
                        steps,
                    );
                }
            }
            let call = ModelCall {
                principal: crate::runtime::principal_of(parent),
                session: Some(parent.thread_id.clone()),
                request_id: format!("{key}.{steps}"),
                model: child.config.model.clone(),
                messages: msgs.clone(),
                tools: child
                    .tools
                    .iter()
                    .map(|t| crate::tools::Tools::definition(t))
                    .collect(),
            };
            let reply = match rt.gw.call_model(call, stop, |_| {}).await {
                Ok(r) => r,
                Err(ModelError::Cancelled { .. }) => return Err(Stop::Shutdown),
                Err(ModelError::Api(e)) => {
                    return fail(format!("error: {}", e.message), cost, steps + 1)
                }
            };
            steps += 1;
            cost += reply.cost;
            let calls = reply.message["tool_calls"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            msgs.push(reply.message.clone());
            if calls.is_empty() {
                return Ok(ChildDone {
                    content: reply.message["content"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    is_error: false,
                    cost,
                    steps,
                });
            }
            for tc in calls {
                let name = tc["function"]["name"].as_str().unwrap_or_default();
                let args = tc["function"]["arguments"].as_str().unwrap_or("{}");
                let sub_key = format!("{key}.{steps}");
                steps += 1;
                let content = match child.tool(name) {
                    None => format!("error: the agent has no tool named {name}"),
                    Some(tool) => match &tool.spec {
                        crate::tools::ToolSpec::Agent { agent: grandchild } => {
                            match rt.tools.validate_args(tool, args) {
                                Err(e) => e,
                                Ok(parsed) => {
                                    let left = budget.map(|b| Micros((b.0 - cost.0).max(0)));
                                    let done = run_child(
                                        rt,
                                        parent,
                                        grandchild,
                                        &parsed,
                                        &sub_key,
                                        left,
                                        limit.saturating_sub(steps),
                                        stop,
                                    )
                                    .await?;
                                    cost += done.cost;
                                    steps += done.steps;
                                    done.content
                                }
                            }
                        }
                        _ => tokio::select! {
                            out = rt.tools.call(tool, args, &sub_key) => out.content,
                            () = stop.cancelled() => return Err(Stop::Shutdown),
                        },
                    },
                };
                msgs.push(json!({"role": "tool", "tool_call_id": tc["id"], "content": content}));
            }
        }
    })
}
