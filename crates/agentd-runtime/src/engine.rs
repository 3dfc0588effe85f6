//! The agent loop of one claimed run: admit → call the model → call tools → journal each step
//! → publish events → finish. `docs/runtime.md` draws it.
//!
//! The one decision to know: the journal is the run's memory. Every step (a model call, a tool
//! call) is recorded as started, then finished with its output, under the lease epoch the
//! worker claimed the run with. A redelivered run rebuilds its messages from the finished
//! steps and never repeats one; the step in flight when a worker died is repeated with the same
//! idempotency key (`<run>:<step>`). Every write names the epoch, so once another worker took
//! the run over, this one can write nothing and stops.

use crate::messages;
use crate::runtime::{now_ms, usd, Agent, Runtime};
use agentd_core::{CancelAction, ErrorKind, Micros, NewEvent, Run, RunStatus, RunStore};
use agentd_gateway::model_call::{ModelCall, ModelError};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Why a run stopped before its natural end.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Stop {
    Cancel(CancelAction),
    Timeout,
    /// Another worker holds the run now: write nothing more.
    Fenced,
    /// This process is shutting down: leave the run for another worker.
    Shutdown,
}

/// What ended the run, for the finish.
enum End {
    Success,
    Error(String),
    Stopped(Stop),
}

/// Stream modes a run asked for.
#[derive(Default)]
pub(crate) struct Modes(BTreeSet<String>);

impl Modes {
    pub(crate) fn of(run: &Run) -> Modes {
        let mut set = BTreeSet::new();
        match &run.kwargs["stream_mode"] {
            Value::String(s) => {
                set.insert(s.clone());
            }
            Value::Array(a) => {
                for m in a.iter().filter_map(Value::as_str) {
                    set.insert(m.to_owned());
                }
            }
            _ => {
                set.insert("values".to_owned());
            }
        }
        Modes(set)
    }

    fn has(&self, mode: &str) -> bool {
        self.0.contains(mode)
    }

    fn tokens(&self) -> bool {
        self.has("messages-tuple") || self.has("messages") || self.has("events")
    }
}

fn event(name: &str, data: &Value) -> NewEvent {
    NewEvent {
        event: name.to_owned(),
        data: data.to_string(),
    }
}

struct Exec {
    rt: Arc<Runtime>,
    run: Run,
    agent: Arc<Agent>,
    epoch: i64,
    modes: Modes,
    messages: Vec<Value>,
    /// Next step index (a started-but-unfinished step found in the journal is repeated under
    /// its own index, so with the same idempotency key).
    step: i32,
    /// What the run's model calls cost so far (as the ledger recorded them).
    cost: Micros,
    tokens: u64,
    /// Steps used, counting a child agent's steps.
    steps_used: u32,
    stop: CancellationToken,
    reason: Arc<Mutex<Option<Stop>>>,
}

/// Executes a claimed run to its end (or until it is stopped or fenced).
pub(crate) async fn execute(
    rt: Arc<Runtime>,
    run: Run,
    stop: CancellationToken,
    reason: Arc<Mutex<Option<Stop>>>,
) {
    let started = Instant::now();
    let agent_name = run.agent.clone();
    let Some(agent) = rt.agent(&run.agent).cloned() else {
        let msg = format!("the agent {} is not configured any more", run.agent);
        finish(
            &rt,
            &run,
            run.lease_epoch,
            RunStatus::Error,
            Some(&msg),
            None,
            true,
        )
        .await;
        return;
    };
    let timeout = agent.config.timeout;
    let mut exec = Exec {
        epoch: run.lease_epoch,
        modes: Modes::of(&run),
        messages: Vec::new(),
        step: 0,
        cost: Micros::ZERO,
        tokens: 0,
        steps_used: 0,
        rt: rt.clone(),
        run,
        agent,
        stop: stop.clone(),
        reason: reason.clone(),
    };
    // The deadline cancels like a cancel does, with its own reason.
    let timer = {
        let stop = stop.clone();
        let reason = reason.clone();
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            set_reason(&reason, Stop::Timeout);
            stop.cancel();
        })
    };
    let end = match exec.prepare().await {
        Ok(()) => exec.run_loop().await,
        // The store failed (prepare only reads and appends): not the run's fault, it is
        // retried once its lease expires.
        Err(e) => {
            tracing::warn!(run_id = %exec.run.run_id, error = %e, "Cannot start a run; it will be retried");
            set_reason(&exec.reason, Stop::Shutdown);
            End::Stopped(exec.stopped().unwrap_or(Stop::Shutdown))
        }
    };
    timer.abort();
    let status = exec.conclude(end).await;
    crate::metrics::run_finished(&agent_name, status, started.elapsed());
}

fn set_reason(reason: &Mutex<Option<Stop>>, stop: Stop) {
    let mut r = reason.lock().unwrap_or_else(|e| e.into_inner());
    if r.is_none() {
        *r = Some(stop);
    }
}

impl Exec {
    fn key(&self) -> String {
        format!("{}:{}", self.run.run_id, self.step)
    }

    /// Loads the thread's state, the input and the journal.
    async fn prepare(&mut self) -> Result<(), String> {
        let store = &self.rt.store;
        let thread = store
            .get_thread(&self.run.tenant, &self.run.thread_id)
            .await
            .map_err(|e| format!("store: {e}"))?;
        if let Some(values) = thread.as_ref().and_then(|t| t.values.as_ref()) {
            if let Some(m) = values.get("messages").and_then(Value::as_array) {
                self.messages.extend(m.iter().cloned());
            }
        }
        if let Some(input) = self.run.kwargs["input"]["messages"].as_array() {
            self.messages.extend(input.iter().cloned());
        }
        let journal = store
            .steps(&self.run.run_id)
            .await
            .map_err(|e| format!("store: {e}"))?;
        if journal.is_empty() {
            let mut first = Vec::new();
            if self.modes.has("values") {
                first.push(event("values", &json!({"messages": self.messages})));
            }
            if self.modes.has("events") {
                first.push(event(
                    "events",
                    &json!({"event": "on_chain_start", "name": self.agent.name(), "run_id": self.run.run_id, "tags": [], "metadata": self.event_metadata(), "data": {"input": {"messages": self.messages}}, "parent_ids": []}),
                ));
            }
            if let Err(e) = self.append(first).await {
                // Not the run's fault: leave it for another attempt after its lease.
                set_reason(&self.reason, Stop::Shutdown);
                self.stop.cancel();
                return Err(e);
            }
        }
        for step in journal {
            match &step.output {
                Some(out) => {
                    if let Some(m) = out.get("messages").and_then(Value::as_array) {
                        self.messages.extend(m.iter().cloned());
                    }
                    self.steps_used +=
                        1 + out.get("child_steps").and_then(Value::as_u64).unwrap_or(0) as u32;
                    self.cost += Micros(step.cost_micros);
                    self.tokens += step.tokens.max(0) as u64;
                    self.step = step.step + 1;
                }
                // Started and never finished: the worker died in it; it is repeated.
                None => {
                    self.step = step.step;
                    break;
                }
            }
        }
        Ok(())
    }

    /// Appends events (fenced). A store error is retried a few times before it is returned;
    /// losing the lease stops the run (`Stop::Fenced`).
    async fn append(&self, events: Vec<NewEvent>) -> Result<(), String> {
        if events.is_empty() {
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            match self
                .rt
                .store
                .append_events(&self.run.run_id, self.epoch, &events)
                .await
            {
                Ok(Some(_)) => {
                    self.rt.hub.published(&self.run.run_id);
                    return Ok(());
                }
                Ok(None) => {
                    set_reason(&self.reason, Stop::Fenced);
                    self.stop.cancel();
                    return Err("fenced".into());
                }
                Err(e) if attempt < 3 => {
                    attempt += 1;
                    tracing::warn!(run_id = %self.run.run_id, error = %e, attempt, "Cannot append a run's events; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                Err(e) => return Err(format!("store: {e}")),
            }
        }
    }

    fn stopped(&self) -> Option<Stop> {
        if self.stop.is_cancelled() {
            Some(
                self.reason
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                    // Cancelled without a reason: a cancel request (the store has its action).
                    .unwrap_or(Stop::Cancel(CancelAction::Interrupt)),
            )
        } else {
            None
        }
    }

    async fn run_loop(&mut self) -> End {
        loop {
            if let Some(stop) = self.stopped() {
                return End::Stopped(stop);
            }
            let pending = messages::unanswered_tool_calls(&self.messages);
            let last_is_final_ai = self
                .messages
                .last()
                .is_some_and(|m| m["type"] == "ai" && pending.is_empty());
            if last_is_final_ai {
                return End::Success;
            }
            if self.steps_used >= self.agent.config.max_steps {
                return End::Error(format!(
                    "the run reached its max_steps ({}) before the agent finished",
                    self.agent.config.max_steps
                ));
            }
            let result = if let Some(call) = pending.first() {
                self.tool_step(call.clone()).await
            } else {
                self.model_step().await
            };
            if let Err(end) = result {
                return end;
            }
        }
    }

    fn event_metadata(&self) -> Value {
        json!({
            "run_id": self.run.run_id,
            "thread_id": self.run.thread_id,
            "graph_id": self.agent.name(),
            "assistant_id": self.run.assistant_id,
            "langgraph_step": self.step,
        })
    }

    /// Checks the run's own budget before a model call.
    fn admit(&self, model: &str, prompt_chars: usize) -> Result<(), End> {
        let cfg = &self.agent.config;
        if let Some(max) = cfg.max_run_tokens {
            if self.tokens >= max {
                return Err(End::Error(format!(
                    "the run's token budget max_run_tokens ({max}) is exhausted: {} tokens used",
                    self.tokens
                )));
            }
        }
        if let Some(max) = cfg.max_run {
            let worst = self
                .rt
                .gw
                .worst_case(model, (prompt_chars / 4) as u64 + 16)
                .unwrap_or(Micros::ZERO);
            if self.cost + worst > max {
                return Err(End::Error(format!(
                    "the run's budget max_run_usd ({}) is exhausted: {} spent, the next model call may cost up to {}",
                    usd(max),
                    usd(self.cost),
                    usd(worst)
                )));
            }
        }
        Ok(())
    }

    async fn start_step(&self, kind: &str) -> Result<(), End> {
        match self
            .rt
            .store
            .start_step(&self.run.run_id, self.epoch, self.step, kind)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => {
                set_reason(&self.reason, Stop::Fenced);
                Err(End::Stopped(Stop::Fenced))
            }
            Err(e) => Err(End::Error(format!("store: {e}"))),
        }
    }

    async fn finish_step(
        &mut self,
        new_messages: Vec<Value>,
        extra: Value,
        cost: Micros,
        tokens: u64,
        mut events: Vec<NewEvent>,
        node: &'static str,
    ) -> Result<(), End> {
        let mut output = json!({"messages": new_messages});
        if let (Some(o), Some(e)) = (output.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        self.messages.extend(new_messages.iter().cloned());
        if self.modes.has("updates") {
            events.push(event(
                "updates",
                &json!({ node: {"messages": new_messages} }),
            ));
        }
        if self.modes.has("values") {
            events.push(event("values", &json!({"messages": self.messages})));
        }
        if self.modes.has("debug") {
            events.push(event(
                "debug",
                &json!({"type": "task_result", "step": self.step, "timestamp": now_ms().to_rfc3339(), "payload": {"name": node, "result": [["messages", new_messages]]}}),
            ));
        }
        match self
            .rt
            .store
            .finish_step(
                &self.run.run_id,
                self.epoch,
                self.step,
                &output,
                cost.0,
                tokens as i64,
                &events,
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                set_reason(&self.reason, Stop::Fenced);
                return Err(End::Stopped(Stop::Fenced));
            }
            Err(e) => return Err(End::Error(format!("store: {e}"))),
        }
        self.rt.hub.published(&self.run.run_id);
        self.cost += cost;
        self.tokens += tokens;
        self.steps_used += 1 + extra
            .get("child_steps")
            .and_then(Value::as_u64)
            .unwrap_or(0) as u32;
        self.step += 1;
        crate::metrics::step_done(node);
        Ok(())
    }

    async fn model_step(&mut self) -> Result<(), End> {
        let model = self.agent.config.model.clone();
        let mut openai: Vec<Value> = Vec::with_capacity(self.messages.len() + 1);
        if let Some(instr) = &self.agent.config.instructions {
            openai.push(json!({"role": "system", "content": instr}));
        }
        openai.extend(self.messages.iter().map(messages::to_openai));
        let prompt_chars: usize = openai.iter().map(|m| m.to_string().len()).sum();
        // A run made before its tenant was pinned to another region: no model call (and no
        // ledger row) here, whatever the run's history.
        if !self
            .rt
            .gw
            .serves_tenant_here(&self.run.tenant)
            .await
            .unwrap_or(true)
        {
            return Err(End::Error(
                "the tenant's home region is another region now; this run, made before, is not executed here".to_owned(),
            ));
        }
        self.admit(&model, prompt_chars)?;
        self.start_step("llm").await?;
        let step_started = Instant::now();
        let tools: Vec<Value> = self
            .agent
            .tools
            .iter()
            .map(|t| crate::tools::Tools::definition(t))
            .collect();
        let chunk_id = format!("run--{}", messages::new_id());
        let meta = {
            let mut m = self.event_metadata();
            m["langgraph_node"] = json!("agent");
            m["ls_model_name"] = json!(model);
            m["ls_provider"] = json!("agentd");
            m
        };
        let buffer: Arc<Mutex<Vec<NewEvent>>> = Arc::default();
        let tuple = self.modes.has("messages-tuple");
        let legacy = self.modes.has("messages");
        let events_mode = self.modes.has("events");
        if events_mode {
            buffer.lock().unwrap_or_else(|e| e.into_inner()).push(event(
                "events",
                &json!({"event": "on_chat_model_start", "name": model, "run_id": chunk_id, "tags": [], "metadata": meta, "data": {"input": {"messages": [openai]}}, "parent_ids": [self.run.run_id]}),
            ));
        }
        if legacy {
            buffer.lock().unwrap_or_else(|e| e.into_inner()).push(event(
                "messages/metadata",
                &json!({ chunk_id.clone(): {"metadata": meta} }),
            ));
        }
        let call = ModelCall {
            principal: crate::runtime::principal_of(&self.run),
            session: Some(self.run.thread_id.clone()),
            request_id: self.key(),
            model: model.clone(),
            messages: openai,
            tools,
        };
        let streaming = self.modes.tokens();
        let sink = buffer.clone();
        let partial = Arc::new(Mutex::new(String::new()));
        let partial_in = partial.clone();
        let (chunk_id_in, meta_in) = (chunk_id.clone(), meta.clone());
        let on_delta = move |text: &str| {
            if !streaming {
                return;
            }
            let chunk = messages::ai_chunk(&chunk_id_in, text);
            let mut buf = sink.lock().unwrap_or_else(|e| e.into_inner());
            if tuple {
                buf.push(event("messages", &json!([chunk, meta_in])));
            }
            if legacy {
                let mut p = partial_in.lock().unwrap_or_else(|e| e.into_inner());
                p.push_str(text);
                buf.push(event(
                    "messages/partial",
                    &json!([messages::ai_chunk(&chunk_id_in, &p)]),
                ));
            }
            if events_mode {
                buf.push(event(
                    "events",
                    &json!({"event": "on_chat_model_stream", "name": "agentd", "run_id": chunk_id_in, "tags": [], "metadata": meta_in, "data": {"chunk": chunk}, "parent_ids": []}),
                ));
            }
        };
        let gw = self.rt.gw.clone();
        let stop = self.stop.clone();
        // The call and the event flusher run side by side in this task (join!, not a select
        // whose arm awaits): the call writes its ledger row through the same store, and a
        // flush awaited inside a select arm would stop polling the call while it holds a
        // connection (with SQLite, its write lock) — the two then waited on each other until
        // the busy timeout (found by a stream benchmark: runs stalled 5 s and were cut).
        let done = CancellationToken::new();
        let call = async {
            let r = gw.call_model(call, &stop, on_delta).await;
            done.cancel();
            r
        };
        let flush = async {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(10)) => {}
                    () = done.cancelled() => return,
                }
                let batch = std::mem::take(&mut *buffer.lock().unwrap_or_else(|e| e.into_inner()));
                if self.append(batch.clone()).await.is_err() && !self.stop.is_cancelled() {
                    // The store failed (not fenced): keep the events for the next flush.
                    let mut buf = buffer.lock().unwrap_or_else(|e| e.into_inner());
                    let newer = std::mem::take(&mut *buf);
                    *buf = batch;
                    buf.extend(newer);
                }
            }
        };
        let (result, ()) = tokio::join!(call, flush);
        let rest = std::mem::take(&mut *buffer.lock().unwrap_or_else(|e| e.into_inner()));
        crate::metrics::model_call(step_started.elapsed());
        match result {
            Ok(reply) => {
                let ai = messages::ai_from_openai(&reply.message, &reply.model, &reply.usage);
                let mut events = rest;
                if legacy {
                    events.push(event("messages/complete", &json!([ai])));
                }
                if events_mode {
                    events.push(event(
                        "events",
                        &json!({"event": "on_chat_model_end", "name": model, "run_id": chunk_id, "tags": [], "metadata": meta, "data": {"output": ai}, "parent_ids": [self.run.run_id]}),
                    ));
                }
                self.finish_step(
                    vec![ai],
                    json!({}),
                    reply.cost,
                    reply.usage.total(),
                    events,
                    "agent",
                )
                .await
            }
            Err(ModelError::Cancelled { cost }) => {
                // Charged by the gateway's ledger; counted here for the record.
                self.cost += cost;
                let _ = self.append(rest).await;
                Err(End::Stopped(self.stopped().unwrap_or(Stop::Shutdown)))
            }
            Err(ModelError::Api(e)) => {
                let _ = self.append(rest).await;
                if let Some(stop) = self.stopped() {
                    return Err(End::Stopped(stop));
                }
                let what = match e.kind {
                    ErrorKind::Budget => "budget",
                    ErrorKind::RateLimited => "rate limited",
                    _ => "model call failed",
                };
                Err(End::Error(format!("{what}: {}", e.message)))
            }
        }
    }

    async fn tool_step(&mut self, call: Value) -> Result<(), End> {
        self.start_step("tool").await?;
        let name = call["name"].as_str().unwrap_or_default().to_owned();
        let call_id = call["id"].as_str().unwrap_or_default().to_owned();
        let args = match &call["args"] {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        let key = self.key();
        let tool = self.agent.tool(&name).cloned();
        let mut events = Vec::new();
        if self.modes.has("events") {
            events.push(event(
                "events",
                &json!({"event": "on_tool_start", "name": name, "run_id": key, "tags": [], "metadata": self.event_metadata(), "data": {"input": call["args"]}, "parent_ids": [self.run.run_id]}),
            ));
        }
        let mut child_cost = Micros::ZERO;
        let mut child_steps = 0u32;
        let (content, is_error) = match tool {
            None => (
                format!(
                    "error: the agent has no tool named {}",
                    agentd_core::echo(&name)
                ),
                true,
            ),
            Some(tool) => match &tool.spec {
                crate::tools::ToolSpec::Agent { agent } => {
                    match self.rt.tools.validate_args(&tool, &args) {
                        Err(e) => (e, true),
                        Ok(parsed) => {
                            let fut = crate::child::run_child(
                                &self.rt,
                                &self.run,
                                agent,
                                &parsed,
                                &key,
                                self.remaining_budget(),
                                self.agent
                                    .config
                                    .max_steps
                                    .saturating_sub(self.steps_used + 1),
                                &self.stop,
                            );
                            match fut.await {
                                Ok(done) => {
                                    child_cost = done.cost;
                                    child_steps = done.steps;
                                    (done.content, done.is_error)
                                }
                                // The child stopped because the run did: the run's reason.
                                Err(stop) => {
                                    return Err(End::Stopped(self.stopped().unwrap_or(stop)))
                                }
                            }
                        }
                    }
                }
                _ => {
                    let out = tokio::select! {
                        out = self.rt.tools.call(&tool, &args, &key) => out,
                        () = self.stop.cancelled() => {
                            return Err(End::Stopped(self.stopped().unwrap_or(Stop::Shutdown)));
                        }
                    };
                    (out.content, out.is_error)
                }
            },
        };
        let msg = messages::tool_result(&call_id, &name, &content, is_error);
        if self.modes.has("events") {
            events.push(event(
                "events",
                &json!({"event": "on_tool_end", "name": name, "run_id": key, "tags": [], "metadata": self.event_metadata(), "data": {"output": msg}, "parent_ids": [self.run.run_id]}),
            ));
        }
        self.finish_step(
            vec![msg],
            json!({"child_steps": child_steps}),
            child_cost,
            0,
            events,
            "tools",
        )
        .await
    }

    fn remaining_budget(&self) -> Option<Micros> {
        self.agent
            .config
            .max_run
            .map(|max| Micros((max.0 - self.cost.0).max(0)))
    }

    /// Writes the end of the run; returns its final status.
    async fn conclude(&mut self, end: End) -> RunStatus {
        let values = json!({"messages": self.messages});
        match end {
            End::Success => {
                let mut last = Vec::new();
                if self.modes.has("events") {
                    last.push(event(
                        "events",
                        &json!({"event": "on_chain_end", "name": self.agent.name(), "run_id": self.run.run_id, "tags": [], "metadata": self.event_metadata(), "data": {"output": values}, "parent_ids": []}),
                    ));
                }
                finish_with(
                    &self.rt,
                    &self.run,
                    self.epoch,
                    RunStatus::Success,
                    None,
                    Some(&values),
                    last,
                )
                .await;
                RunStatus::Success
            }
            End::Error(msg) => {
                let events = vec![event(
                    "error",
                    &json!({"error": "RunError", "message": msg}),
                )];
                finish_with(
                    &self.rt,
                    &self.run,
                    self.epoch,
                    RunStatus::Error,
                    Some(&msg),
                    Some(&values),
                    events,
                )
                .await;
                RunStatus::Error
            }
            End::Stopped(Stop::Timeout) => {
                let msg = format!(
                    "the run timed out after {} ms (agent timeout_ms)",
                    self.agent.config.timeout.as_millis()
                );
                let events = vec![event(
                    "error",
                    &json!({"error": "TimeoutError", "message": msg}),
                )];
                finish_with(
                    &self.rt,
                    &self.run,
                    self.epoch,
                    RunStatus::Timeout,
                    Some(&msg),
                    Some(&values),
                    events,
                )
                .await;
                RunStatus::Timeout
            }
            End::Stopped(Stop::Cancel(_)) => {
                finish_with(
                    &self.rt,
                    &self.run,
                    self.epoch,
                    RunStatus::Interrupted,
                    Some("cancelled"),
                    Some(&values),
                    Vec::new(),
                )
                .await;
                RunStatus::Interrupted
            }
            End::Stopped(Stop::Fenced) | End::Stopped(Stop::Shutdown) => {
                // Not ours any more (or we are leaving): the next owner finishes it.
                RunStatus::Running
            }
        }
    }
}

async fn finish_with(
    rt: &Arc<Runtime>,
    run: &Run,
    epoch: i64,
    status: RunStatus,
    error: Option<&str>,
    values: Option<&Value>,
    mut events: Vec<NewEvent>,
) {
    events.push(NewEvent {
        event: "end".into(),
        data: "null".into(),
    });
    match rt
        .store
        .finish_run(&run.run_id, epoch, status, error, values, &events)
        .await
    {
        Ok(true) => {
            rt.hub.ended(&run.run_id);
            crate::webhook::after_run(rt, run, status, error);
        }
        Ok(false) => {
            tracing::warn!(run_id = %run.run_id, "Run taken over by another worker before it finished here; its end is theirs")
        }
        Err(e) => {
            tracing::error!(run_id = %run.run_id, error = %e, "Cannot record the end of a run; it will be retried after its lease expires")
        }
    }
}

/// Ends a run that could not start (unknown agent, too many attempts).
pub(crate) async fn finish(
    rt: &Arc<Runtime>,
    run: &Run,
    epoch: i64,
    status: RunStatus,
    error: Option<&str>,
    values: Option<&Value>,
    with_error_event: bool,
) {
    let mut events = Vec::new();
    if with_error_event {
        if let Some(msg) = error {
            events.push(event(
                "error",
                &json!({"error": "RunError", "message": msg}),
            ));
        }
    }
    finish_with(rt, run, epoch, status, error, values, events).await;
}
