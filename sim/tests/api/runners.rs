//! The runner list and deleting runners, as GitHub answers them.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;

use super::{eventually, github, installation_token, launch, quick_world, world};

#[tokio::test]
async fn the_runner_list_pages_past_100_runners_and_links_the_next_page() {
    let world = world().await;
    let token = installation_token(&world).await;
    for i in 0..150 {
        world
            .model
            .lock()
            .unwrap()
            .register_jit(&format!("dh-{i:03}"), vec!["self-hosted".into()], 1)
            .unwrap();
    }
    let mut ids = BTreeSet::new();
    for (page, expected) in [(1, 100), (2, 50), (3, 0)] {
        let path = format!("/orgs/sim-org/actions/runners?per_page=100&page={page}");
        let (status, link, body) = super::github_page(&world, &path, &token).await;
        assert_eq!((status, body["total_count"].as_u64()), (200, Some(150)));
        let runners = body["runners"].as_array().unwrap();
        assert_eq!(runners.len(), expected, "page {page}");
        for r in runners {
            assert_eq!(
                (r["status"].as_str(), r["busy"].as_bool()),
                (Some("offline"), Some(false))
            );
            assert_eq!(r["labels"][0]["name"], "self-hosted");
            ids.insert(r["id"].as_u64().unwrap());
        }
        let link = link.unwrap_or_default();
        assert_eq!(
            link.contains("rel=\"next\""),
            page == 1,
            "page {page}: {link}"
        );
        assert_eq!(
            link.contains("rel=\"prev\""),
            page > 1,
            "page {page}: {link}"
        );
    }
    assert_eq!(ids.len(), 150);
    let (_, _, first) = super::github_page(&world, "/orgs/sim-org/actions/runners", &token).await;
    assert_eq!(
        first["runners"].as_array().unwrap().len(),
        30,
        "30 a page by default"
    );
    let (_, link, named) =
        super::github_page(&world, "/orgs/sim-org/actions/runners?name=dh-007", &token).await;
    assert_eq!((named["total_count"].as_u64(), link), (Some(1), None));
    let too_many = "/orgs/sim-org/actions/runners?per_page=101";
    assert_eq!(super::github_page(&world, too_many, &token).await.0, 422);
}

#[tokio::test]
async fn deleting_a_busy_runner_is_refused_with_422_and_an_idle_one_answers_204() {
    let world = quick_world(Duration::from_secs(60)).await;
    let token = installation_token(&world).await;
    world.queue_job(false);
    let (busy, _) = launch(&world, "dh-busy");
    let runner_is = async |id: u64, status: &str, busy: bool| {
        let (_, _, body) =
            super::github_page(&world, "/orgs/sim-org/actions/runners?per_page=100", &token).await;
        body["runners"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id && r["status"] == status && r["busy"] == busy)
    };
    eventually("the runner busy", async || {
        runner_is(busy, "online", true).await
    })
    .await;
    let (idle, arn) = launch(&world, "dh-idle");
    eventually("the runner idle", async || {
        runner_is(idle, "online", false).await
    })
    .await;

    let delete = async |id: u64| {
        let path = format!("/orgs/sim-org/actions/runners/{id}");
        github(&world, Method::DELETE, &path, Some(&token), None)
            .await
            .0
    };
    assert_eq!(delete(busy).await, 422);
    assert_eq!(delete(idle).await, 204);
    assert_eq!(delete(idle).await, 404);
    let stop_code = world.with(|m| m.tasks[&arn].stop_code);
    assert_eq!(
        stop_code,
        Some("EssentialContainerExited"),
        "its task exits"
    );
}
