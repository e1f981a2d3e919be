//! ECS task state change events on the jobs queue: EventBridge sends them there, and a
//! worker hands each to the lifecycle at once. An event that cannot be handled now (the
//! store, GitHub or the queue faltering) comes back later like any message; one that is not
//! an event dockhand reads goes to the dead-letter queue with the reason.

use super::Worker;
use super::heartbeat::Heartbeat;
use super::outcome::{Deferral, JobError, Outcome, Settled};
use super::settle::Handling;
use crate::lifecycle::{TaskEvent, TaskEventError};

impl Worker {
    pub(super) async fn task_event(
        &self,
        handling: &Handling<'_>,
        event: Result<TaskEvent, TaskEventError>,
    ) -> Settled {
        let result = match event {
            Err(err) => Err(JobError::Permanent(err.to_string())),
            Ok(event) => match self.0.events.get() {
                None => {
                    tracing::debug!(
                        ecs.task = event.task_arn(),
                        "no lifecycle in this process (a dry run): the task event is dropped"
                    );
                    Ok(Outcome::TaskEvent)
                }
                Some(reconciler) => {
                    let heartbeat = Heartbeat::start(self, handling.message);
                    let handled = reconciler.task_event(&event).await;
                    heartbeat.stop().await;
                    match handled {
                        Ok(outcome) => {
                            tracing::debug!(
                                ecs.task = event.task_arn(),
                                outcome = outcome.as_str(),
                                "task event handled"
                            );
                            Ok(Outcome::TaskEvent)
                        }
                        Err(err) => Err(JobError::Deferred(Deferral::Error(format!(
                            "task event {}: {err:#}",
                            event.id
                        )))),
                    }
                }
            },
        };
        self.settle(handling, None, None, result).await
    }
}
