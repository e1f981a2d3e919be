//! Fresh stores for tests: a SQLite file in a temp dir, or a new Postgres database on the
//! server `scripts/test` provides.

use dockhand::config::StoreSettings;
use dockhand::store::Store;
use sqlx::Executor;

/// The Postgres server `scripts/test` found or started.
pub fn postgres_server_url() -> String {
    std::env::var("DOCKHAND_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DOCKHAND_TEST_DATABASE_URL is not set: run the tests with scripts/test, which \
             provides a Postgres server, or point it at one where tests may CREATE DATABASE"
        )
    })
}

/// Store settings for a brand-new Postgres database.
pub async fn postgres_settings() -> StoreSettings {
    sqlx::any::install_default_drivers();
    let server = postgres_server_url();
    let name = format!("dockhand_test_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::AnyPool::connect(&server)
        .await
        .expect("connecting to the test Postgres server");
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("creating a test database");
    admin.close().await;
    let base = server.rsplit_once('/').map(|(b, _)| b).unwrap_or(&server);
    StoreSettings {
        url: format!("{base}/{name}"),
        migrate_on_start: true,
        max_connections: 10,
        ..Default::default()
    }
}

pub fn sqlite_settings(dir: &tempfile::TempDir) -> StoreSettings {
    StoreSettings {
        url: format!(
            "sqlite://{}",
            dir.path().join("store/dockhand.db").display()
        ),
        migrate_on_start: false,
        max_connections: 10,
        ..Default::default()
    }
}

/// The store backends the dedupe, crash and take-over tests run on. Such a test is a table
/// (rstest `#[case]`) with one row per backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh store of one backend: its settings, and (for SQLite) the directory holding its
/// file, which lives as long as this value.
pub struct TestStore {
    pub settings: StoreSettings,
    dir: Option<tempfile::TempDir>,
}

impl TestStore {
    /// Settings for a brand-new store; nothing is connected or migrated yet.
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                Self {
                    settings: sqlite_settings(&dir),
                    dir: Some(dir),
                }
            }
            Backend::Postgres => Self {
                settings: postgres_settings().await,
                dir: None,
            },
        }
    }

    /// Connects (migrating on the way).
    pub async fn connect(&self) -> Store {
        Store::connect(&self.settings).await.unwrap()
    }

    /// The directory this test may use for files of its own (the SQLite store's, or a
    /// fresh one).
    pub fn dir(&mut self) -> &std::path::Path {
        self.dir
            .get_or_insert_with(|| tempfile::tempdir().unwrap())
            .path()
    }
}
