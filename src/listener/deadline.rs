//! A request body with a deadline for the whole of it: a client that sends its body slowly,
//! or stops part-way, gets an error when the deadline passes, however it trickles.
//! (tower-http's `TimeoutBody` restarts its clock on every frame, which a byte a second
//! never trips.)

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body was not in by its deadline. Handlers find it in a read error's source chain
/// (see [`is_body_timeout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request body was not received in time")]
pub struct BodyTimeout;

/// `inner`, failing with [`BodyTimeout`] once `deadline` passes before its end.
pub struct DeadlineBody<B> {
    inner: B,
    deadline: Instant,
    /// Made on the first read that has to wait, so a body nobody reads costs no timer.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<B> DeadlineBody<B> {
    /// The deadline starts now: call this as the request's head arrives.
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Instant::now() + timeout,
            sleep: None,
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if Instant::now() >= this.deadline {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `err`, or any error it was caused by, is a [`BodyTimeout`].
pub fn is_body_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(e) = source {
        if e.is::<BodyTimeout>() {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    use super::*;

    /// A body whose chunks the test sends when it likes; it ends when the sender drops.
    struct Channel(mpsc::Receiver<Bytes>);

    impl Body for Channel {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
        }
    }

    fn channel(timeout: Duration) -> (mpsc::Sender<Bytes>, DeadlineBody<Channel>) {
        let (tx, rx) = mpsc::channel(8);
        (tx, DeadlineBody::new(Channel(rx), timeout))
    }

    #[tokio::test]
    async fn a_body_that_arrives_in_time_is_read_whole() {
        let (tx, body) = channel(Duration::from_secs(5));
        tx.send(Bytes::from_static(b"hello ")).await.unwrap();
        tx.send(Bytes::from_static(b"world")).await.unwrap();
        drop(tx);
        let read = body.collect().await.unwrap().to_bytes();
        assert_eq!(read, "hello world");
    }

    #[tokio::test]
    async fn a_body_that_stops_part_way_fails_at_the_deadline() {
        let (tx, body) = channel(Duration::from_millis(100));
        tx.send(Bytes::from_static(b"{\"action\":")).await.unwrap();
        let started = std::time::Instant::now();
        let err = body.collect().await.unwrap_err();
        assert!(is_body_timeout(&*err), "{err}");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(90), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        drop(tx);
    }

    #[tokio::test]
    async fn a_trickling_body_fails_at_the_deadline_though_bytes_keep_coming() {
        let (tx, body) = channel(Duration::from_millis(200));
        let trickle = tokio::spawn(async move {
            while tx.send(Bytes::from_static(b"x")).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let started = std::time::Instant::now();
        let err = body.collect().await.unwrap_err();
        assert!(is_body_timeout(&*err), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        trickle.abort();
    }

    #[test]
    fn the_timeout_is_found_under_other_errors() {
        let wrapped = axum::Error::new(axum::Error::new(BodyTimeout));
        assert!(is_body_timeout(&wrapped));
        let other = axum::Error::new(std::io::Error::other("reset"));
        assert!(!is_body_timeout(&other));
    }
}
