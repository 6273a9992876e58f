//! The API over HTTPS end to end: `fleet up --api-tls-cert/--api-tls-key` with a
//! certificate from a CA made in the test ([`Pki`]), and the real `fleet` CLI: with
//! `--api-ca-file` it lists the agents; without it the server's certificate is refused
//! with the flag named (69); plain HTTP to the HTTPS port gets no answer. And `fleet up
//! --api-tls-self-signed`: the CA it makes is what the CLI trusts, kept across restarts.
//!
//! Needs nats-server installed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fleet_tests::NatsServer;
use fleet_tests::pki::Pki;

mod support;
use support::{Fleet, free_port, token_after};

#[test]
fn the_cli_reaches_the_api_over_https_with_its_ca_and_refuses_it_without() {
    let nats = NatsServer::start().expect("nats-server");
    let data = tempfile::tempdir().expect("tempdir");
    let pki = Pki::generate();
    let port = free_port();
    let up = Command::new(env!("CARGO_BIN_EXE_fleet"))
        .args(["up", "--nats-url", &nats.url(), "--data-dir"])
        .arg(data.path())
        .arg("--api-addr")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--api-tls-cert")
        .arg(&pki.cert)
        .arg("--api-tls-key")
        .arg(&pki.key)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("fleet up");
    let _up = Stop(up);

    let anonymous = Fleet {
        api: format!("https://localhost:{port}"),
        token: None,
    };
    let ca = pki.ca.to_str().expect("utf-8 path");
    wait_for_https(&anonymous, ca);
    // Once it answers, a tenant's admin, trusting the CA, lists the agents (none yet).
    let created = anonymous.ok(&["tenant", "create", "acme", "--nats-url", &nats.url()]);
    let fleet = anonymous.with_token(&token_after(&created, "admin token"));
    let listed = fleet.ok(&["agent", "ls", "-o", "json", "--api-ca-file", ca]);
    assert_eq!(listed.trim(), "[]", "{listed}");

    // Without it: the certificate is refused, and the flag that fixes it is named.
    let refused = fleet.fails(&["agent", "ls"], 69);
    assert!(refused.contains("--api-ca-file"), "{refused}");
    assert!(!refused.contains("is it running"), "{refused}");

    // Plain HTTP to the HTTPS port gets no API answer.
    let plain = Fleet {
        api: format!("http://127.0.0.1:{port}"),
        token: fleet.token.clone(),
    };
    let ran = plain.run(&["agent", "ls"]);
    assert_ne!(ran.code, 0, "{ran:?}");
}

/// `fleet up --api-tls-self-signed` on `data`, the API on `port`.
fn up_self_signed(nats: &NatsServer, data: &std::path::Path, port: u16) -> Stop {
    let up = Command::new(env!("CARGO_BIN_EXE_fleet"))
        .args(["up", "--nats-url", &nats.url(), "--data-dir"])
        .arg(data)
        .arg("--api-addr")
        .arg(format!("127.0.0.1:{port}"))
        .args(["--api-tls-self-signed", "--api-tls-name", "backup.example"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("fleet up");
    Stop(up)
}

/// Waits until the API answers `fleet` (trusting `ca`) over HTTPS: a token of no tenant
/// is refused (77) once it does.
fn wait_for_https(api: &Fleet, ca: &str) {
    let stranger = api.with_token(&format!("rft1.nobody.{}", "0".repeat(64)));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ran = stranger.run(&["agent", "ls", "--api-ca-file", ca]);
        if ran.code == 77 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never answered over HTTPS: {ran:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn fleet_up_makes_a_certificate_the_cli_trusts_by_its_ca_and_keeps_it() {
    let nats = NatsServer::start().expect("nats-server");
    let data = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let ca_file = data.path().join("api-tls").join("ca.pem");
    let ca = ca_file.to_str().expect("utf-8 path");
    let up = up_self_signed(&nats, data.path(), port);
    let anonymous = Fleet {
        api: format!("https://localhost:{port}"),
        token: None,
    };
    wait_for_https(&anonymous, ca);
    let created = anonymous.ok(&["tenant", "create", "acme", "--nats-url", &nats.url()]);
    let fleet = anonymous.with_token(&token_after(&created, "admin token"));
    let listed = fleet.ok(&["agent", "ls", "-o", "json", "--api-ca-file", ca]);
    assert_eq!(listed.trim(), "[]", "{listed}");
    // By IP address too: the certificate names 127.0.0.1.
    let by_ip = Fleet {
        api: format!("https://127.0.0.1:{port}"),
        token: fleet.token.clone(),
    };
    by_ip.ok(&["agent", "ls", "--api-ca-file", ca]);
    // Not trusted by default: it is nobody's CA but this fleet's.
    let refused = fleet.fails(&["agent", "ls"], 69);
    assert!(refused.contains("--api-ca-file"), "{refused}");

    // A restart keeps the CA the clients trust.
    let first = std::fs::read_to_string(&ca_file).expect("the CA");
    drop(up);
    let _up = up_self_signed(&nats, data.path(), port);
    wait_for_https(&anonymous, ca);
    assert_eq!(std::fs::read_to_string(&ca_file).expect("the CA"), first);
    // The API answers before the restarted projector has caught up with the log.
    fleet.eventually(
        &["agent", "ls", "-o", "json", "--api-ca-file", ca],
        "the restarted control plane lists no agent",
        |out| out.trim() == "[]",
    );
}

/// `fleet up`, stopped with SIGTERM when dropped (also when the test fails).
struct Stop(std::process::Child);

impl Drop for Stop {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}
