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
    }
}

pub async fn postgres_store() -> Store {
    Store::connect(&postgres_settings().await).await.unwrap()
}

pub async fn sqlite_store(dir: &tempfile::TempDir) -> Store {
    Store::connect(&sqlite_settings(dir)).await.unwrap()
}

/// Runs an async test body once on SQLite and once on Postgres, as two tests.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$name($crate::common::stores::sqlite_store(&dir).await).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::common::stores::postgres_store().await).await;
                }
            }
        )*
    };
}

/// Like [`on_both_stores!`], for test bodies that build their own app from store settings.
#[macro_export]
macro_rules! on_both_stores_settings {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$name($crate::common::stores::sqlite_settings(&dir)).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::common::stores::postgres_settings().await).await;
                }
            }
        )*
    };
}
