//! Browsing against the real restic: a directory's children with kinds and sizes, pages
//! that add up to the whole, the top of a snapshot, and why there is no page (a path that
//! is not there or not a directory, a missing snapshot, secret or the wrong password).

use std::fs;

use fleet_events::browse::{BrowsePage, BrowseRequest, DEFAULT_PAGE, EntryKind};
use fleet_events::envelope::SCHEMA_VERSION;
use fleet_events::event::{ErrorClass, TaskError};
use fleet_events::policy::RepositoryRef;
use fleet_events::samples;

use super::lab::Lab;

fn request(lab: &Lab, snapshot: &str, path: &str) -> BrowseRequest {
    BrowseRequest {
        schema: SCHEMA_VERSION,
        tenant: samples::tenant(),
        policy: samples::POLICY,
        repository: RepositoryRef {
            url: lab.repo().display().to_string(),
            secret: "main".into(),
        },
        snapshot: snapshot.to_owned(),
        path: path.to_owned(),
        after: None,
        limit: DEFAULT_PAGE,
    }
}

fn permanent(result: Result<BrowsePage, TaskError>, says: &str) {
    let error = result.expect_err("no page");
    assert_eq!(error.class, ErrorClass::Permanent, "{error:?}");
    assert!(error.message.contains(says), "{says:?} in {error:?}");
}

#[tokio::test]
async fn a_directory_is_listed_a_page_at_a_time() {
    let Some(lab) = Lab::new() else { return };
    lab.init().await;
    let data = lab.data(6); // sub/first and file-1 .. file-5
    fs::write(data.join("file-1"), "twelve bytes").expect("a file");
    std::os::unix::fs::symlink("file-1", data.join("link")).expect("a symlink");
    let snapshot = lab.hand_backup(&data);
    let dir = data.display().to_string();

    let page = lab
        .browse(&request(&lab, &snapshot, &dir))
        .await
        .expect("a page");
    assert_eq!(
        (page.path.as_str(), page.next.as_deref()),
        (dir.as_str(), None)
    );
    let seen: Vec<(&str, EntryKind, Option<u64>)> = page
        .entries
        .iter()
        .map(|e| (e.name.as_str(), e.kind, e.size))
        .collect();
    assert_eq!(
        seen,
        [
            ("file-1", EntryKind::File, Some(12)),
            ("file-2", EntryKind::File, Some(18)),
            ("file-3", EntryKind::File, Some(18)),
            ("file-4", EntryKind::File, Some(18)),
            ("file-5", EntryKind::File, Some(18)),
            ("link", EntryKind::Symlink, None),
            ("sub", EntryKind::Dir, None),
        ]
    );
    assert!(page.entries.iter().all(|e| e.mtime.is_some()));

    // Pages of 3 after each other's `next` add up to the whole, and a trailing slash or
    // a `.` name the same directory.
    let mut paged = Vec::new();
    let mut after = None;
    for _ in 0..5 {
        let asked = BrowseRequest {
            path: format!("{dir}/./"),
            after: after.clone(),
            limit: 3,
            ..request(&lab, &snapshot, &dir)
        };
        let page = lab.browse(&asked).await.expect("a page");
        assert!(page.entries.len() <= 3);
        paged.extend(page.entries);
        after = page.next;
        if after.is_none() {
            break;
        }
    }
    assert_eq!(after, None, "the last page says so");
    assert_eq!(paged, page.entries);

    let sub = lab
        .browse(&request(&lab, &snapshot, &format!("{dir}/sub")))
        .await
        .expect("a page");
    assert_eq!(sub.entries.len(), 1);
    assert_eq!(sub.entries[0].name, "first");

    // The top of the snapshot holds the first component of the backed-up path.
    let top = lab
        .browse(&request(&lab, &snapshot, "/"))
        .await
        .expect("a page");
    let first = dir.split('/').nth(1).expect("an absolute path");
    assert_eq!(top.entries.len(), 1);
    assert_eq!(
        (top.entries[0].name.as_str(), top.entries[0].kind),
        (first, EntryKind::Dir)
    );
}

#[tokio::test]
async fn no_page_says_why() {
    let Some(lab) = Lab::new() else { return };
    lab.init().await;
    let data = lab.data(2);
    let snapshot = lab.hand_backup(&data);
    let dir = data.display().to_string();

    let missing_path = request(&lab, &snapshot, &format!("{dir}/nowhere"));
    permanent(lab.browse(&missing_path).await, "is not in snapshot");
    let a_file = request(&lab, &snapshot, &format!("{dir}/file-1"));
    permanent(lab.browse(&a_file).await, "is not a directory");
    let missing_snapshot = request(&lab, &"ab".repeat(32), &dir);
    permanent(
        lab.browse(&missing_snapshot).await,
        "is not in the repository",
    );
    let invalid = BrowseRequest {
        limit: 0,
        ..request(&lab, &snapshot, &dir)
    };
    permanent(lab.browse(&invalid).await, "limit");

    let mut no_secret = request(&lab, &snapshot, &dir);
    no_secret.repository.secret = "elsewhere".into();
    permanent(lab.browse(&no_secret).await, "\"elsewhere\"");
    let mut wrong = request(&lab, &snapshot, &dir);
    wrong.repository.secret = "wrong".into();
    let error = lab.browse(&wrong).await.expect_err("wrong password");
    assert_eq!(error.class, ErrorClass::Auth, "{error:?}");
}
