//! Simulated time: it runs `scale` times faster than the wall clock, so that a soak of
//! thousands of jobs, each queued, started and run for minutes, takes minutes.

use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};

/// A moment in the simulation: how long after its start, in simulated time.
pub type SimTime = Duration;

/// The simulation's clock. Copies share the same start (and each keeps its own
/// [`Clock::advance`]s).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    started: Instant,
    wall_start: DateTime<Utc>,
    scale: f64,
    /// Simulated time added by `advance`.
    skipped: Duration,
}

impl Clock {
    /// A clock starting now, `scale` simulated seconds to the real one (at least 1).
    pub fn start(scale: f64) -> Self {
        Self {
            started: Instant::now(),
            wall_start: Utc::now(),
            scale: scale.max(1.0),
            skipped: Duration::ZERO,
        }
    }

    pub fn now(&self) -> SimTime {
        self.started.elapsed().mul_f64(self.scale) + self.skipped
    }

    /// The simulated time of a past (or future) real instant.
    pub fn at(&self, instant: Instant) -> SimTime {
        instant
            .saturating_duration_since(self.started)
            .mul_f64(self.scale)
            + self.skipped
    }

    /// Moves this clock (this copy only) on by `by` of simulated time at once: tests step
    /// the model's clock rather than wait.
    pub fn advance(&mut self, by: Duration) {
        self.skipped += by;
    }

    /// How long `sim` takes in real time.
    pub fn real(&self, sim: Duration) -> Duration {
        sim.div_f64(self.scale)
    }

    /// Simulated time as GitHub's timestamps show it.
    pub fn timestamp(&self, at: SimTime) -> String {
        let at = self.wall_start + chrono::Duration::from_std(at).unwrap_or_default();
        at.to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    /// Simulated time as ECS's timestamps show it (epoch seconds, fractional), on the wall
    /// clock: dockhand runs in real time and judges tasks' ages (idle, pending, running) by
    /// its own clock, so the moment a task started must be the real moment it was
    /// simulated.
    pub fn epoch_secs(&self, at: SimTime) -> f64 {
        self.wall_start.timestamp_millis() as f64 / 1000.0 + self.real(at).as_secs_f64()
    }
}
