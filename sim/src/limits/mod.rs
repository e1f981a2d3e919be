//! The rate limits the simulated APIs enforce, in simulated time: GitHub's secondary limit
//! per App (points in a sliding window, requests in flight) and primary limit per
//! installation (an hourly bucket), and AWS's ECS buckets (RunTask's, the Fargate
//! task-launch bucket's, and one per other operation).
//! Pure bookkeeping: the API layers ask, these answer, nothing here sleeps or locks.

mod ecs;
mod github;

pub use ecs::{EcsLimits, EcsThrottle, EcsThrottled, EcsThrottles, TokenBucket};
pub use github::{GitHubLimits, LimitKind, Primary, QuotaSettings, Refusal, Scope};
