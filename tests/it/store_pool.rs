//! The store's connections: a Postgres store opens its warm connections at start, so the
//! first launches after a start do not wait for connecting.

use std::time::Duration;

use dockhand::store::WARM_POSTGRES_CONNECTIONS;
use sqlx::Row;

use crate::common::stores::{Backend, TestStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_store_opens_its_warm_connections_before_any_work() {
    let fresh = TestStore::new(Backend::Postgres).await;
    let _store = fresh.connect().await;
    let database = fresh.settings.url.rsplit('/').next().unwrap().to_string();
    let admin = sqlx::PgPool::connect(&crate::common::stores::postgres_server_url())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let open: i64 = sqlx::query("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
            .bind(&database)
            .fetch_one(&admin)
            .await
            .unwrap()
            .get(0);
        if open >= i64::from(WARM_POSTGRES_CONNECTIONS) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} connections open to {database}, not {WARM_POSTGRES_CONNECTIONS}, and no \
             store call was made"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
