//! An App's webhook delivery log (`GET /app/hook/deliveries`) and redeliveries
//! (`POST /app/hook/deliveries/{id}/attempts`): every attempt logged, paged by cursor,
//! newest first, for the App's JWT only; a redelivery sends the same event again under the
//! same guid.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use dockhand_sim::limits::QuotaSettings;
use dockhand_sim::{AppSettings, Settings, WebhookSettings, World};
use reqwest::Method;
use serde_json::{Value, json};

use super::{eventually, fixture, github, github_page, installation_token, jwt, world_with};

const DELIVERIES: &str = "/app/hook/deliveries";

/// What a stand-in ingress received: each delivery's guid, signature and body.
type Received = Arc<Mutex<Vec<(String, String, String)>>>;

/// A stand-in for dockhand's ingress: answers every delivery with `status`, and keeps what
/// it received.
struct Ingress {
    status: Arc<AtomicU16>,
    received: Received,
}

async fn ingress(world: &World) -> Ingress {
    async fn take(
        State((status, received)): State<(Arc<AtomicU16>, Received)>,
        headers: HeaderMap,
        body: String,
    ) -> StatusCode {
        let header = |name: &str| headers[name].to_str().unwrap().to_string();
        let delivery = (
            header("x-github-delivery"),
            header("x-hub-signature-256"),
            body,
        );
        received.lock().unwrap().push(delivery);
        StatusCode::from_u16(status.load(Ordering::Relaxed)).unwrap()
    }
    let status = Arc::new(AtomicU16::new(202));
    let received = Received::default();
    let app = axum::Router::new()
        .route("/webhook", axum::routing::post(take))
        .with_state((status.clone(), received.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    world.webhooks.set_url(&url);
    Ingress { status, received }
}

/// A world of `apps` Apps (keys: the test key, then the second key) and no operator
/// redeliveries.
fn settings(apps: usize) -> Settings {
    let keys = [
        "github-app-test-key.pub.pem",
        "github-app-second-key.pub.pem",
    ];
    Settings {
        apps: (0..apps)
            .map(|n| AppSettings::nth(n, std::fs::read(fixture(keys[n])).unwrap()))
            .collect(),
        webhooks: WebhookSettings {
            redeliver_failed_after: None,
            ..WebhookSettings::default()
        },
        ..Settings::default()
    }
}

async fn world(apps: usize) -> World {
    world_with(settings(apps)).await
}

fn app_jwt() -> String {
    jwt("github-app-test-key.pem", 31337)
}

/// Deliveries logged, all Apps.
fn logged(world: &World) -> usize {
    world.webhooks.log.lock().unwrap().all().count()
}

/// The `cursor` of a `Link` header's `rel="next"`.
fn next_cursor(link: Option<&str>) -> Option<String> {
    let next = link?.split(", ").find(|l| l.ends_with("rel=\"next\""))?;
    let url = next.split('>').next()?.trim_start_matches('<');
    let query = url.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "cursor")
        .map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn the_log_pages_by_cursor_newest_first_over_more_than_a_hundred_deliveries() {
    let world = world(1).await;
    let _ingress = ingress(&world).await;
    let jobs: Vec<u64> = (0..130).map(|_| world.queue_job(false)).collect();
    eventually("130 deliveries logged", async || logged(&world) == 130).await;

    let token = app_jwt();
    let (status, link, first) =
        github_page(&world, &format!("{DELIVERIES}?per_page=100"), &token).await;
    assert_eq!(status, 200, "{first}");
    let first = first.as_array().unwrap().clone();
    assert_eq!(first.len(), 100);
    let cursor = next_cursor(link.as_deref()).expect("a next page");
    let path = format!("{DELIVERIES}?per_page=100&cursor={cursor}");
    let (status, link, rest) = github_page(&world, &path, &token).await;
    assert_eq!(status, 200, "{rest}");
    let rest = rest.as_array().unwrap().clone();
    assert_eq!(rest.len(), 30);
    let link = link.expect("a link to the first page");
    assert!(
        next_cursor(Some(&link)).is_none() && link.contains("rel=\"first\""),
        "{link}"
    );

    let all: Vec<&Value> = first.iter().chain(&rest).collect();
    let ids: Vec<u64> = all.iter().map(|d| d["id"].as_u64().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "newest first, each once"
    );
    let now = chrono::Utc::now();
    for delivery in &all {
        assert_eq!(delivery["event"], "workflow_job");
        assert_eq!(delivery["action"], "queued");
        assert_eq!(
            (
                delivery["status"].as_str(),
                delivery["status_code"].as_u64()
            ),
            (Some("OK"), Some(202))
        );
        assert_eq!(delivery["redelivery"], false);
        assert_eq!(delivery["installation_id"], 4242);
        assert!(delivery["repository_id"].is_u64() && delivery["duration"].is_f64());
        let at: chrono::DateTime<chrono::Utc> =
            delivery["delivered_at"].as_str().unwrap().parse().unwrap();
        assert!((now - at).num_seconds().abs() < 60, "the wall clock: {at}");
    }
    let guids: std::collections::HashSet<&str> =
        all.iter().map(|d| d["guid"].as_str().unwrap()).collect();
    assert_eq!(guids.len(), jobs.len());
}

#[tokio::test]
async fn the_log_is_the_apps_own_and_refuses_bad_paging() {
    let world = world(2).await;
    let _ingress = ingress(&world).await;
    world.queue_job(false);
    eventually("one delivery per App", async || logged(&world) == 2).await;
    let token = app_jwt();
    let second = jwt("github-app-second-key.pem", 31338);
    let get = async |query: &str, auth: Option<&str>| {
        let path = format!("{DELIVERIES}{query}");
        github(&world, Method::GET, &path, auth, None).await
    };
    let (_, mine) = get("", Some(&token)).await;
    let (_, theirs) = get("", Some(&second)).await;
    assert_eq!(
        (
            mine[0]["installation_id"].as_u64(),
            theirs[0]["installation_id"].as_u64()
        ),
        (Some(4242), Some(4243))
    );
    assert_ne!(
        mine[0]["guid"], theirs[0]["guid"],
        "each App's delivery has its own guid"
    );
    let their_cursor = format!("?cursor=v1_{}", theirs[0]["id"]);
    for (query, status) in [
        ("?per_page=101", 422),
        ("?per_page=0", 422),
        ("?per_page=ten", 422),
        ("?page=2", 422),
        ("?status=pending", 422),
        ("?cursor=v1_1", 400),
        ("?cursor=not-a-cursor", 400),
        (their_cursor.as_str(), 400),
        ("?status=failure", 200),
    ] {
        assert_eq!(get(query, Some(&token)).await.0, status, "{query}");
    }
    assert_eq!(get("?status=failure", Some(&token)).await.1, json!([]));
    let installation = installation_token(&world).await;
    let stranger = jwt("github-app-other-key.pem", 31337);
    for auth in [None, Some(installation.as_str()), Some(stranger.as_str())] {
        assert_eq!(get("", auth).await.0, 401, "{auth:?}");
    }
}

#[tokio::test]
async fn a_redelivery_sends_the_same_event_under_the_same_guid_marked_as_one() {
    let world = world(2).await;
    let ingress = ingress(&world).await;
    ingress.status.store(503, Ordering::Relaxed);
    world.queue_job(false);
    eventually("one delivery per App", async || logged(&world) == 2).await;
    let token = app_jwt();
    let (_, log) = github(&world, Method::GET, DELIVERIES, Some(&token), None).await;
    let failed = log[0].clone();
    assert_eq!(
        (failed["status"].as_str(), failed["status_code"].as_u64()),
        (Some("Invalid HTTP Response: 503"), Some(503))
    );
    let attempts = |id: &Value| format!("{DELIVERIES}/{id}/attempts");
    let post = async |path: &str, auth: &str| {
        github(&world, Method::POST, path, Some(auth), Some(json!({}))).await
    };

    ingress.status.store(202, Ordering::Relaxed);
    assert_eq!(
        post(&attempts(&failed["id"]), &token).await,
        (202, json!({}))
    );
    eventually("the redelivery logged", async || logged(&world) == 3).await;
    let (_, log) = github(&world, Method::GET, DELIVERIES, Some(&token), None).await;
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 2, "App 31337's deliveries only");
    let again = &log[0];
    assert!(again["id"].as_u64() > failed["id"].as_u64());
    assert_eq!(again["guid"], failed["guid"]);
    assert_eq!(
        (again["redelivery"].as_bool(), again["status_code"].as_u64()),
        (Some(true), Some(202))
    );
    assert_eq!(log[1]["redelivery"], false);

    let received = ingress.received.lock().unwrap().clone();
    let guid = failed["guid"].as_str().unwrap();
    let same: Vec<&(String, String, String)> =
        received.iter().filter(|(g, ..)| g == guid).collect();
    assert_eq!(same.len(), 2, "sent, then sent again");
    assert_eq!(
        (&same[0].1, &same[0].2),
        (&same[1].1, &same[1].2),
        "the same body and signature"
    );
    let secret = world.with(|m| m.settings.webhook_secret.clone());
    assert_eq!(
        same[1].1,
        dockhand_sim::webhooks::sign(secret.as_bytes(), same[1].2.as_bytes())
    );

    // Another App's delivery, an id never logged, and not an id at all: 404; no JWT: 401.
    let second = jwt("github-app-second-key.pem", 31338);
    let (_, theirs) = github(&world, Method::GET, DELIVERIES, Some(&second), None).await;
    assert_eq!(post(&attempts(&theirs[0]["id"]), &token).await.0, 404);
    assert_eq!(post(&attempts(&json!(1)), &token).await.0, 404);
    assert_eq!(
        post(&format!("{DELIVERIES}/latest/attempts"), &token)
            .await
            .0,
        404
    );
    let installation = installation_token(&world).await;
    assert_eq!(post(&attempts(&failed["id"]), &installation).await.0, 401);
    let asked = world
        .github
        .calls()
        .into_iter()
        .find(|(e, _)| *e == "redeliver");
    assert_eq!(asked, Some(("redeliver", 5)));
    let accepted = world.webhooks.stats.redeliveries.load(Ordering::Relaxed);
    assert_eq!(accepted, 1);
}

#[tokio::test]
async fn an_unreachable_ingress_is_logged_as_failed_to_connect() {
    let world = world(1).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/webhook", closed.local_addr().unwrap());
    drop(closed);
    world.webhooks.set_url(&url);
    world.queue_job(false);
    eventually("the attempt logged", async || logged(&world) == 1).await;
    let (_, log) = github(&world, Method::GET, DELIVERIES, Some(&app_jwt()), None).await;
    assert_eq!(
        (log[0]["status"].as_str(), log[0]["status_code"].as_u64()),
        (Some("failed to connect"), Some(0))
    );
    // Without an operator's redelivery it stays failed.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(logged(&world), 1);
}

#[tokio::test]
async fn reading_the_log_costs_a_point_and_a_redelivery_five() {
    // Real time, so that the window (a minute) outlasts the test.
    let quota = QuotaSettings {
        points_per_window: 6,
        ..QuotaSettings::default()
    };
    let world = world_with(Settings {
        time_scale: 1.0,
        quota: Some(quota),
        ..settings(1)
    })
    .await;
    let _ingress = ingress(&world).await;
    world.queue_job(false);
    eventually("the delivery logged", async || logged(&world) == 1).await;
    let token = app_jwt();
    let (status, log) = github(&world, Method::GET, DELIVERIES, Some(&token), None).await;
    assert_eq!(status, 200);
    let path = format!("{DELIVERIES}/{}/attempts", log[0]["id"]);
    let (status, _) = github(&world, Method::POST, &path, Some(&token), None).await;
    assert_eq!(status, 202);
    let (status, body) = github(&world, Method::GET, DELIVERIES, Some(&token), None).await;
    assert_eq!(status, 403, "6 points spent: {body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("secondary rate limit")
    );
}
