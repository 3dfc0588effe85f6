//! The HTTP server: our own accept loop on hyper (HTTP/1.1 and h2c), in place of `axum::serve`,
//! so that slow or idle clients cannot hold connections forever.
//!
//! Per connection, a small state machine ([`Clock`]) says what the connection is waiting for:
//!
//! - **head**: a request head is due. From the accept, and on a kept-alive connection from the
//!   first byte of the next request, the client has `server.header_read_timeout` to finish it;
//!   then the connection is dropped without an answer (there is no request to answer yet).
//! - **busy**: requests are being served (a stream until its body ends). No connection-level
//!   deadline: the body read timeout (in `body::read_limited`) and the request timeout (a layer)
//!   bound the request itself.
//! - **idle**: kept alive between requests. After `server.keep_alive_timeout` the connection is
//!   shut down gracefully (HTTP/1.1: closed; HTTP/2: GOAWAY).
//!
//! hyper's own `header_read_timeout` is off: its clock starts as soon as hyper waits for a head,
//! idle time included, so an idle kept-alive connection would be cut at the header timeout.
//!
//! At `server.max_connections` open connections the loop stops accepting; further clients wait
//! in the kernel's listen backlog until a connection closes (chosen over accept-and-close: a
//! client then sees a slow connect, not a reset it may not retry).
//!
//! Errors hyper answers itself (a malformed request line or header: 400; a head over
//! `server.max_header_bytes`: 431; HTTP/2 protocol errors) cannot be given our JSON shape:
//! hyper writes a bare status line and closes, with no hook for the body, before the
//! application runs.

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;
use tracing::{debug, warn};

/// The connection-level limits, from `[server]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub header_read_timeout: Duration,
    pub keep_alive_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
}

impl Limits {
    pub(crate) fn from_config(server: &agentd_config::ServerConfig) -> Limits {
        Limits {
            header_read_timeout: server.header_read_timeout,
            keep_alive_timeout: server.keep_alive_timeout,
            max_header_bytes: server.max_header_bytes,
            max_connections: server.max_connections,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Head,
    Busy,
    Idle,
}

struct State {
    phase: Phase,
    since: Instant,
    requests: usize,
    http2: bool,
}

/// What a connection is waiting for, and since when (see the module docs).
struct Clock {
    state: Mutex<State>,
    changed: Notify,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            state: Mutex::new(State {
                phase: Phase::Head,
                since: Instant::now(),
                requests: 0,
                http2: false,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, state: &mut State, phase: Phase) {
        state.phase = phase;
        state.since = Instant::now();
        self.changed.notify_one();
    }

    /// Bytes arrived. The first read tells HTTP/2 (its preface) from HTTP/1; an HTTP/1 byte on
    /// an idle connection starts the next request's head.
    fn on_read(&self, first: bool, bytes: &[u8]) {
        let mut state = self.lock();
        if first && bytes.starts_with(b"PRI * HTTP/2.0") {
            // HTTP/2 multiplexes and pings: no head phase between requests, only idle.
            state.http2 = true;
            if state.requests == 0 {
                self.set(&mut state, Phase::Idle);
            }
        } else if state.phase == Phase::Idle && !state.http2 {
            self.set(&mut state, Phase::Head);
        }
    }

    fn request_started(self: &Arc<Self>) -> RequestGuard {
        let mut state = self.lock();
        state.requests += 1;
        if state.phase != Phase::Busy {
            self.set(&mut state, Phase::Busy);
        }
        RequestGuard(self.clone())
    }

    fn request_ended(&self) {
        let mut state = self.lock();
        state.requests = state.requests.saturating_sub(1);
        if state.requests == 0 {
            self.set(&mut state, Phase::Idle);
        }
    }

    /// When the current phase runs out, and what it is.
    fn deadline(&self, limits: &Limits) -> (Phase, Option<Instant>) {
        let state = self.lock();
        let limit = match state.phase {
            Phase::Head => Some(limits.header_read_timeout),
            Phase::Idle => Some(limits.keep_alive_timeout),
            Phase::Busy => None,
        };
        (state.phase, limit.map(|l| state.since + l))
    }
}

/// Ends a request (for the connection's clock) when dropped: when the response body is done or
/// dropped, or when the handler future is dropped because the connection went away.
struct RequestGuard(Arc<Clock>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// A response body that holds `guard` until it is finished or dropped. Also used for the
/// concurrency limit's permit, so a stream counts as in flight until it ends.
pub(crate) struct Guarded<G> {
    inner: Body,
    guard: Option<G>,
}

impl<G: Send + Unpin + 'static> Guarded<G> {
    pub(crate) fn wrap(resp: Response, guard: G) -> Response {
        resp.map(|inner| {
            Body::new(Guarded {
                inner,
                guard: Some(guard),
            })
        })
    }
}

impl<G: Unpin> hyper::body::Body for Guarded<G> {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            // Done: release now rather than when hyper gets round to dropping the body.
            self.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, telling the connection's clock when bytes arrive.
struct TimedIo {
    inner: TcpStream,
    clock: Arc<Clock>,
    first: bool,
}

impl AsyncRead for TimedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            if buf.filled().len() > before {
                let first = std::mem::replace(&mut self.first, false);
                self.clock.on_read(first, &buf.filled()[before..]);
            }
        }
        polled
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Ours instead (see the module docs); with a timer set, hyper would default to 30 s.
        .header_read_timeout(None)
        // hyper-util's builder has no `max_header_size`; a head that does not fit the read
        // buffer is refused with 431 all the same.
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// Accepts connections until `shutdown` resolves, then stops accepting (the listener is closed,
/// so new connections are refused), calls `on_drain`, asks every connection to finish its
/// requests and close, and waits up to `grace` for them. Returns once they are all closed or
/// the grace is over (the ones left are closed then).
pub(crate) async fn run(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    grace: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_drain: impl FnOnce(),
) {
    let builder = Arc::new(builder(&limits));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let drain = CancellationToken::new();
    let force = CancellationToken::new();
    let tracker = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors and the like: wait for some to be freed.
                    warn!(error = %e, "Cannot accept a connection; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        // Nagle would hold back every small SSE event for up to 40 ms.
        let _ = tcp.set_nodelay(true);
        let conn = Connection {
            builder: builder.clone(),
            app: app.clone(),
            limits,
            drain: drain.clone(),
            force: force.clone(),
        };
        tracker.spawn(async move {
            conn.serve(tcp).await;
            debug!(%peer, "Connection closed");
            drop(permit);
        });
    }
    drop(listener);
    on_drain();
    drain.cancel();
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        warn!("Grace period over; closing the connections still open");
        force.cancel();
        // Dropping a connection is immediate; this only lets the tasks run their drops.
        let _ = tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await;
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    app: Router,
    limits: Limits,
    drain: CancellationToken,
    force: CancellationToken,
}

impl Connection {
    async fn serve(self, tcp: TcpStream) {
        let clock = Arc::new(Clock::new());
        let io = TimedIo {
            inner: tcp,
            clock: clock.clone(),
            first: true,
        };
        let app = self.app;
        let request_clock = clock.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let guard = request_clock.request_started();
            let mut app = app.clone();
            async move {
                let resp = app.call(req.map(Body::new)).await;
                Ok::<_, Infallible>(Guarded::wrap(resp.unwrap_or_else(|e| match e {}), guard))
            }
        });
        // With upgrades: the agent API's WebSocket endpoints take the connection over.
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(conn);
        let mut closing = false;
        loop {
            let (phase, deadline) = clock.deadline(&self.limits);
            // Once shutting down, an idle connection is already on its way out; a slow head
            // still gets cut at its deadline rather than at the end of the drain.
            let deadline = deadline.filter(|_| !(closing && phase == Phase::Idle));
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        debug!(error = %e, "Connection ended with an error");
                    }
                    return;
                }
                () = clock.changed.notified() => {}
                () = sleep_until(deadline) => match phase {
                    Phase::Head => {
                        debug!("Request head not received within server.header_read_timeout_ms; closing the connection");
                        return;
                    }
                    Phase::Idle => {
                        debug!("Idle for server.keep_alive_timeout_ms; closing the connection");
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                    Phase::Busy => {}
                },
                () = self.drain.cancelled(), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = self.force.cancelled() => return,
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(60),
            max_header_bytes: 65536,
            max_connections: 4,
        }
    }

    /// The deadline of the current phase, as an offset from when it began (real time: the
    /// gateway does not enable tokio's `test-util`, and nothing here waits).
    fn phase(clock: &Clock, l: &Limits) -> (Phase, Option<Duration>) {
        let (phase, deadline) = clock.deadline(l);
        let since = clock.lock().since;
        (phase, deadline.map(|d| d - since))
    }

    #[test]
    fn the_clock_moves_through_head_busy_idle_head() {
        let clock = Arc::new(Clock::new());
        let l = limits();
        let accepted = clock.lock().since;
        assert_eq!(
            phase(&clock, &l),
            (Phase::Head, Some(l.header_read_timeout))
        );
        clock.on_read(true, b"GET / HTTP/1.1\r\n");
        assert_eq!(
            clock.lock().since,
            accepted,
            "the head clock runs from the accept"
        );
        let guard = clock.request_started();
        assert_eq!(phase(&clock, &l), (Phase::Busy, None));
        clock.on_read(false, b"body bytes");
        assert_eq!(
            phase(&clock, &l),
            (Phase::Busy, None),
            "body bytes change nothing"
        );
        drop(guard);
        assert_eq!(phase(&clock, &l), (Phase::Idle, Some(l.keep_alive_timeout)));
        clock.on_read(false, b"G");
        assert_eq!(
            phase(&clock, &l),
            (Phase::Head, Some(l.header_read_timeout)),
            "a byte on an idle connection starts the next head"
        );
    }

    #[test]
    fn http2_connections_have_no_head_phase_between_requests() {
        let clock = Arc::new(Clock::new());
        let l = limits();
        clock.on_read(true, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        assert_eq!(phase(&clock, &l).0, Phase::Idle);
        let a = clock.request_started();
        let b = clock.request_started();
        drop(a);
        assert_eq!(phase(&clock, &l).0, Phase::Busy, "one stream still open");
        drop(b);
        assert_eq!(phase(&clock, &l).0, Phase::Idle);
        clock.on_read(false, b"ping frame");
        assert_eq!(phase(&clock, &l).0, Phase::Idle);
    }
}
