//! An ingress outage as GitHub sees it: for a window of the run, every delivery fails
//! without reaching dockhand. The window is in real time, from the first delivery, since
//! deliveries (and GitHub's 10 s timeout) are.

use std::time::{Duration, Instant};

use super::log::Attempt;

/// How deliveries fail during the outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutageAnswer {
    /// Nothing answers: the ingress is unreachable (`failed to connect`, status code 0).
    Refused,
    /// A load balancer in front of the ingress answers 503: no healthy target.
    Unavailable,
}

/// A window in which every delivery attempt fails as `answer` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngressOutage {
    /// When it starts, after the first delivery (real time).
    pub after: Duration,
    pub lasting: Duration,
    pub answer: OutageAnswer,
}

impl IngressOutage {
    /// What an attempt begun at `now` gets, if the outage (the first delivery having been
    /// at `first`) is on then.
    pub fn attempt_at(&self, first: Instant, now: Instant) -> Option<Attempt> {
        let since = now.saturating_duration_since(first);
        (since >= self.after && since < self.after + self.lasting).then_some(match self.answer {
            OutageAnswer::Refused => Attempt::FailedToConnect,
            OutageAnswer::Unavailable => Attempt::Answered(503),
        })
    }

    /// When it ends (real time), the first delivery having been at `first`.
    pub fn ends(&self, first: Instant) -> Instant {
        first + self.after + self.lasting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_fail_inside_the_window_only() {
        let first = Instant::now();
        let secs = Duration::from_secs;
        let outage = IngressOutage {
            after: secs(5),
            lasting: secs(10),
            answer: OutageAnswer::Unavailable,
        };
        let at = |s| outage.attempt_at(first, first + secs(s));
        assert_eq!(at(4), None);
        assert_eq!(at(5), Some(Attempt::Answered(503)));
        assert_eq!(at(14), Some(Attempt::Answered(503)));
        assert_eq!(at(15), None);
        let refused = IngressOutage {
            answer: OutageAnswer::Refused,
            ..outage
        };
        assert_eq!(
            refused.attempt_at(first, first + secs(6)),
            Some(Attempt::FailedToConnect)
        );
        assert_eq!(outage.ends(first), first + secs(15));
    }
}
