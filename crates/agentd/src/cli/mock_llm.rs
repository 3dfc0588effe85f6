//! `agentd mock-llm`: the mock provider as a standalone server, for users' offline and load tests.

use agentd_mock::MockOptions;
use clap::Args;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args)]
pub(super) struct MockArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    addr: SocketAddr,
    /// Delay before the first stream event, in milliseconds.
    #[arg(long, default_value_t = 0)]
    ttft_ms: u64,
    /// Delay between stream events, in milliseconds.
    #[arg(long, default_value_t = 0)]
    token_delay_ms: u64,
    /// Length of a reply, in tokens, when the request sets no limit.
    #[arg(long, default_value_t = 20)]
    tokens: usize,
    /// Accept only this API key (default: any non-empty key).
    #[arg(long)]
    require_key: Option<String>,
}

pub(super) fn run(args: MockArgs) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let opts = MockOptions {
        ttft: Duration::from_millis(args.ttft_ms),
        token_delay: Duration::from_millis(args.token_delay_ms),
        default_tokens: args.tokens,
        require_key: args.require_key,
        ..MockOptions::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr).await?;
        tracing::info!(addr = %listener.local_addr()?, "Mock LLM provider listening (OpenAI: /v1/chat/completions, /v1/embeddings, /v1/models; Anthropic: /v1/messages)");
        tokio::select! {
            r = agentd_mock::serve(listener, opts) => r?,
            _ = super::serve::shutdown_signal() => tracing::info!("Stopped"),
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
