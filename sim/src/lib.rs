//! A small, fast, honest model of the world dockhand lives in: GitHub's job scheduler and
//! REST API, ECS's task API, and the faults between them, at a settable time scale.
//! The chaos soak (`soak`) runs dockhand's real binaries inside it and reads the
//! simulator's books at the end. Dev-only: nothing here is in the release binary.

pub mod books;
pub mod clock;
pub mod ecs_api;
pub mod faults;
pub mod github_api;
pub mod limits;
pub mod model;
pub mod settings;
pub mod soak;
pub mod webhooks;
pub mod world;

pub use books::Books;
pub use faults::FaultSettings;
pub use settings::{AppSettings, Settings, WebhookSettings};
pub use world::World;
