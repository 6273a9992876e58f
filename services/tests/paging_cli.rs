//! More policies than a page holds, end to end: `GET /v1/policies` answers a page at a
//! time (500 by default), and the CLI (`policy ls`, `policy show` by name, `task ls` with
//! its policy names) and the dashboard's lists read every page. At fleet scale (the
//! simulator's thousands of policies) one answer with every policy was larger than NATS
//! carries, and the API said the projector did not answer.
//!
//! Needs nats-server installed.

use serde_json::Value;

mod support;
use support::running::fleet_up;
use support::{Fleet, free_port, token_after};

/// More than two pages, and (about 1.1 MB as one answer) more than NATS carries at once.
const POLICIES: usize = 1100;

/// `n` policies in one document stream, each firing on 29 February only (no task of the
/// scheduler's own while the test runs).
fn documents(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "name: p-{i:04}\nkind: backup\nschedule:\n  cron: {{expr: '0 2 29 2 *', timezone: UTC}}\n\
                 repository: {{url: /srv/restic/r{i}, secret: main}}\ninclude: [/srv]\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

fn names(listed: &Value) -> Vec<String> {
    listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|p| p["spec"]["name"].as_str().expect("a name").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_policies_than_a_page_are_listed_paged_and_found_by_name() {
    let nats = fleet_tests::NatsServer::start().expect("nats-server");
    let data = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let nats_url = nats.url();
    let _up = fleet_up(&nats_url, data.path(), port);
    let anonymous = Fleet {
        api: format!("http://127.0.0.1:{port}"),
        token: None,
    };
    let created = anonymous.create_tenant("acme", &nats_url);
    let token = token_after(&created, "admin token");
    let fleet = anonymous.with_token(&token);
    fleet.eventually(&["policy", "ls"], "the API up", |_| true);
    let ran = fleet.run_with_stdin(&["policy", "apply", "-f", "-"], &documents(POLICIES));
    assert_eq!(ran.code, 0, "{ran:?}");

    // The CLI reads every page: all of them, in name order.
    let listed = fleet.eventually(&["policy", "ls", "-o", "json"], "every policy", |out| {
        serde_json::from_str::<Value>(out)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
            == Some(POLICIES)
    });
    let all = names(&serde_json::from_str(&listed).expect("json"));
    let expected: Vec<String> = (0..POLICIES).map(|i| format!("p-{i:04}")).collect();
    assert_eq!(all, expected);
    let table = fleet.ok(&["policy", "ls"]);
    assert_eq!(
        table.lines().count(),
        POLICIES + 1,
        "a header and a row each"
    );
    // Found by name past the first page.
    let shown = fleet.ok(&["policy", "show", "p-1013"]);
    assert!(
        shown.contains("p-1013") && shown.contains("/srv/restic/r1013"),
        "{shown}"
    );
    // A table naming policies (tasks: none yet) still answers.
    fleet.ok(&["task", "ls"]);

    // The API itself: a page of 500 by default, then the rest.
    let api = support::running::Api {
        addr: format!("127.0.0.1:{port}"),
        token,
    };
    let first = api.ok("/v1/policies");
    assert_eq!(names(&first), expected[..500]);
    let second = api.ok("/v1/policies?limit=500&offset=500");
    assert_eq!(names(&second), expected[500..1000]);
    let rest = api.ok("/v1/policies?limit=500&offset=1000");
    assert_eq!(names(&rest), expected[1000..]);
    let (status, refused) = api.get("/v1/policies?limit=1001");
    assert_eq!(status, 400, "{refused}");
}
