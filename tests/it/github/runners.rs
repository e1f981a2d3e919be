//! Finding and removing runner registrations, on an organization and on a repository.

use super::*;

#[tokio::test]
async fn find_runner_then_delete_runner_removes_a_stale_registration() {
    let (fake, app) = start().await;
    let target = org("acme");
    let stale = fake.register_runner(&target, "dockhand-stale", false);
    let other = fake.register_runner(&target, "dockhand-other", true);

    let found = app
        .find_runner(INSTALLATION, &target, "dockhand-stale")
        .await
        .unwrap()
        .expect("the stale runner is found");
    assert_eq!(found.id, RunnerId(stale));
    assert_eq!(found.name, "dockhand-stale");
    assert!(!found.busy);
    assert_eq!(found.status, "offline");
    let list = fake.requests_to(Endpoint::ListRunners);
    assert_eq!(list[0].path, "/orgs/acme/actions/runners");
    assert_eq!(
        list[0].query.as_deref(),
        Some("name=dockhand-stale&per_page=100")
    );
    assert_eq!(list[0].auth, token(INSTALLATION));

    app.delete_runner(INSTALLATION, &target, found.id)
        .await
        .unwrap();

    let delete = fake.requests_to(Endpoint::DeleteRunner);
    assert_eq!(
        delete,
        [recorded(
            "DELETE",
            &format!("/orgs/acme/actions/runners/{stale}"),
            None,
            token(INSTALLATION)
        )]
    );
    let left: Vec<_> = fake.runners().into_iter().map(|r| r.id).collect();
    assert_eq!(left, [other]);
    assert_eq!(
        app.find_runner(INSTALLATION, &target, "dockhand-stale")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn find_and_delete_work_on_a_repository_too() {
    let (fake, app) = start().await;
    let target = repo("acme", "widgets");
    let id = fake.register_runner(&target, "dockhand-r", false);
    // Same name on the org: not the repository's runner.
    fake.register_runner(&org("acme"), "dockhand-r", false);

    let found = app
        .find_runner(INSTALLATION, &target, "dockhand-r")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, RunnerId(id));
    app.delete_runner(INSTALLATION, &target, found.id)
        .await
        .unwrap();

    assert_eq!(
        fake.requests_to(Endpoint::DeleteRunner)[0].path,
        format!("/repos/acme/widgets/actions/runners/{id}")
    );
    assert_eq!(fake.runners().len(), 1);
    assert_eq!(fake.runners()[0].target, org("acme"));
}

#[tokio::test]
async fn deleting_an_unknown_runner_is_ok() {
    let (fake, app) = start().await;

    app.delete_runner(INSTALLATION, &org("acme"), RunnerId(424242))
        .await
        .expect("404 means already gone");

    assert_eq!(fake.count(Endpoint::DeleteRunner), 1);
}

#[tokio::test]
async fn deleting_a_busy_runner_is_a_validation_error() {
    let (fake, app) = start().await;
    let id = fake.register_runner(&org("acme"), "dockhand-busy", true);

    let err = app
        .delete_runner(INSTALLATION, &org("acme"), RunnerId(id))
        .await
        .unwrap_err();
    assert!(matches!(err, GitHubError::Validation { .. }), "{err:?}");
    assert_eq!(fake.runners().len(), 1);

    fake.set_busy(id, false);
    app.delete_runner(INSTALLATION, &org("acme"), RunnerId(id))
        .await
        .unwrap();
    assert!(fake.runners().is_empty());
}
