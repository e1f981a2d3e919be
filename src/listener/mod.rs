//! Serving HTTP/1 to clients that may be slow or hostile: an accept loop with a cap on open
//! connections, a time limit on each request's head and on its body, and a graceful stop.
//!
//! Every open connection holds a file descriptor, so none may be held for long by a client
//! that stalls:
//! - hyper closes a connection whose request head has not arrived `header_timeout` after
//!   it opened, or after its previous answer (an idle keep-alive connection too);
//! - [`deadline::DeadlineBody`] fails a body not in `body_timeout` after its head arrived,
//!   and the handler answers 408 and closes the connection;
//! - past `max_connections`, a new connection is answered 503 at once, without reading
//!   its request, and closed: refused quickly rather than left to hang. (If the client had
//!   already sent its request, the close may reach it as a reset instead.)
//!
//! So a stalled connection lives at most `header_timeout + body_timeout`, and a listener
//! full of them has room again within seconds. Failing `accept` calls (out of file
//! descriptors: EMFILE) are counted, logged once per burst, and retried after a short,
//! growing pause, never in a hot loop.
//!
//! On stop, the listener closes (new connections are refused by the kernel), idle
//! connections close, and requests in flight run to their answer; [`serve`] returns once
//! every connection has closed. Dropping its future instead aborts them all.

pub mod deadline;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::metrics as m;
use deadline::DeadlineBody;

/// What a listener allows each client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
}

/// Which listener: the `listener` label of the connection metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerName {
    Webhook,
    Admin,
}

impl ListenerName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Admin => "admin",
        }
    }
}

/// How a connection ended: the `outcome` label of `dockhand_connections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionOutcome {
    /// At least one request was read (its own outcome is the handler's to count).
    Served,
    /// No request head arrived within `header_timeout`.
    Timeout,
    /// The client hung up, or the connection broke, before a whole request head.
    Closed,
    /// The request head was not HTTP/1 that hyper could read; hyper answered 4xx.
    Invalid,
    /// Over `max_connections`: answered 503 and closed without being read.
    Refused,
}

impl ConnectionOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Served => "served",
            Self::Timeout => "timeout",
            Self::Closed => "closed",
            Self::Invalid => "invalid",
            Self::Refused => "refused",
        }
    }

    fn of(ended: &Result<(), hyper::Error>, read_a_request: bool) -> Self {
        match ended {
            _ if read_a_request => Self::Served,
            Err(err) if err.is_timeout() => Self::Timeout,
            Err(err) if err.is_parse() || err.is_parse_too_large() => Self::Invalid,
            _ => Self::Closed,
        }
    }
}

/// The answer to a connection over the cap: written without waiting, then the socket is
/// closed.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\
    content-type: text/plain\r\ncontent-length: 20\r\nretry-after: 1\r\n\r\ntoo many connections";

/// The first pause after a failed `accept`; it doubles up to [`ACCEPT_BACKOFF_MAX`] while
/// the failures last.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` within `limits` until `stop`, then stops gracefully (see
/// the module's documentation). Never fails: accept errors are retried.
pub async fn serve(
    listener: TcpListener,
    name: ListenerName,
    limits: Limits,
    router: Router,
    stop: CancellationToken,
) {
    // Both series exist from the start, so a dashboard or an alert sees 0 rather than nothing.
    metrics::counter!(m::ACCEPT_ERRORS_TOTAL, "listener" => name.as_str()).increment(0);
    metrics::gauge!(m::OPEN_CONNECTIONS, "listener" => name.as_str()).increment(0.0);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    let mut accept_failures = Burst::default();
    let mut refusals = Burst::default();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            Some(ended) = connections.join_next() => {
                log_panic(ended);
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => {
                if let Some(failures) = accept_failures.end() {
                    tracing::info!(
                        listener = name.as_str(),
                        failures,
                        "accepting connections again"
                    );
                }
                stream
            }
            Err(err) => {
                metrics::counter!(m::ACCEPT_ERRORS_TOTAL, "listener" => name.as_str()).increment(1);
                if is_connection_error(&err) {
                    // That one connection is gone; the next may be fine.
                    continue;
                }
                let failures = accept_failures.add();
                if failures == 1 {
                    tracing::warn!(
                        listener = name.as_str(),
                        error = %err,
                        "cannot accept connections; retrying with backoff"
                    );
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(accept_backoff(failures)) => continue,
                }
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if refusals.add() == 1 {
                tracing::warn!(
                    listener = name.as_str(),
                    max_connections = limits.max_connections,
                    "connection limit reached; refusing new connections"
                );
            }
            refuse(stream, name);
            continue;
        };
        if let Some(refused) = refusals.end() {
            tracing::info!(
                listener = name.as_str(),
                refused,
                "below the connection limit again"
            );
        }
        let open = Open::new(name, permit);
        connections.spawn(connection(
            stream,
            open,
            limits,
            router.clone(),
            stop.clone(),
        ));
    }
    drop(listener);
    while let Some(ended) = connections.join_next().await {
        log_panic(ended);
    }
}

/// Serves one connection until it closes, or until `stop` and its request in flight is
/// answered; then counts how it ended.
async fn connection(
    stream: TcpStream,
    open: Open,
    limits: Limits,
    router: Router,
    stop: CancellationToken,
) {
    let read_a_request = Arc::new(AtomicBool::new(false));
    let seen = read_a_request.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        seen.store(true, Ordering::Relaxed);
        let request = request.map(|body| Body::new(DeadlineBody::new(body, limits.body_timeout)));
        router.clone().oneshot(request)
    });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let conn = http.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    let outcome = ConnectionOutcome::of(&ended, read_a_request.load(Ordering::Relaxed));
    if outcome != ConnectionOutcome::Served {
        tracing::debug!(
            listener = open.name.as_str(),
            outcome = outcome.as_str(),
            "connection closed before a request was read"
        );
    }
    count(open.name, outcome);
    // Counted and out of the cap before the socket closes (with `conn`, on return), so a
    // client that sees the close finds both done.
    drop(open);
}

/// Answers a connection over the cap and closes it, never waiting on the client.
fn refuse(stream: TcpStream, name: ListenerName) {
    let _ = stream.try_write(REFUSAL);
    count(name, ConnectionOutcome::Refused);
}

fn count(name: ListenerName, outcome: ConnectionOutcome) {
    metrics::counter!(
        m::CONNECTIONS_TOTAL,
        "listener" => name.as_str(),
        "outcome" => outcome.as_str(),
    )
    .increment(1);
}

/// An open connection: holds its place under the cap and in the gauge until dropped,
/// whether it ends or is aborted.
struct Open {
    name: ListenerName,
    _permit: OwnedSemaphorePermit,
}

impl Open {
    fn new(name: ListenerName, permit: OwnedSemaphorePermit) -> Self {
        metrics::gauge!(m::OPEN_CONNECTIONS, "listener" => name.as_str()).increment(1.0);
        Self {
            name,
            _permit: permit,
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!(m::OPEN_CONNECTIONS, "listener" => self.name.as_str()).decrement(1.0);
    }
}

/// Consecutive events of one kind, so a burst is logged at its start and its end only.
#[derive(Default)]
struct Burst(u32);

impl Burst {
    /// Counts one more; returns how many in a row.
    fn add(&mut self) -> u32 {
        self.0 = self.0.saturating_add(1);
        self.0
    }

    /// Ends the burst; returns its length if there was one.
    fn end(&mut self) -> Option<u32> {
        let length = std::mem::take(&mut self.0);
        (length > 0).then_some(length)
    }
}

/// The pause after the `failures`-th failed `accept` in a row.
fn accept_backoff(failures: u32) -> Duration {
    ACCEPT_BACKOFF_MIN
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(ACCEPT_BACKOFF_MAX)
}

/// Errors that concern only the connection being accepted, not the listener.
fn is_connection_error(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

fn log_panic(ended: Result<(), tokio::task::JoinError>) {
    if let Err(err) = ended
        && err.is_panic()
    {
        tracing::error!(error = %err, "a connection task panicked");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_accepts_back_off_from_10ms_doubling_up_to_a_second() {
        let pauses: Vec<u128> = (1..=9).map(|n| accept_backoff(n).as_millis()).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        assert_eq!(accept_backoff(u32::MAX), ACCEPT_BACKOFF_MAX);
    }

    #[test]
    fn a_burst_is_reported_once_at_its_end() {
        let mut burst = Burst::default();
        assert_eq!(burst.end(), None);
        assert_eq!((burst.add(), burst.add(), burst.add()), (1, 2, 3));
        assert_eq!(burst.end(), Some(3));
        assert_eq!(burst.end(), None);
    }

    #[test]
    fn a_connection_that_read_a_request_was_served_however_it_ended() {
        assert_eq!(
            ConnectionOutcome::of(&Ok(()), true),
            ConnectionOutcome::Served
        );
        assert_eq!(
            ConnectionOutcome::of(&Ok(()), false),
            ConnectionOutcome::Closed
        );
    }

    #[test]
    fn the_refusal_is_a_complete_http_answer() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}
