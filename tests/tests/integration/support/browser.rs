//! The dashboard's tests drive a real browser: headless Chromium through chromedriver
//! (WebDriver), signed in with a token; screenshots go to `FLEET_SCREENSHOTS_DIR`
//! (default: a temporary directory).

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::eventually;

/// How long the page may take to show what the log says.
pub const DEADLINE: Duration = Duration::from_secs(30);

const INSTALL: &str = "the dashboard test needs Chromium and chromedriver: \
                       apt-get install -y chromium chromium-driver";

/// A chromedriver child on a free port, killed when dropped.
pub struct Chromedriver {
    child: Child,
    port: u16,
}

impl Chromedriver {
    pub fn start() -> Self {
        let binary = find("chromedriver").unwrap_or_else(|| panic!("{INSTALL}"));
        assert!(
            find("chromium").is_some() || find("google-chrome").is_some(),
            "{INSTALL}"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting chromedriver: {e}; {INSTALL}"));
        Chromedriver { child, port }
    }

    /// A browser session: headless Chromium with a laptop's window.
    pub async fn session(&self) -> Client {
        let url = format!("http://127.0.0.1:{}", self.port);
        let mut options = json!({
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--window-size=1400,900",
            ],
        });
        if let Some(chromium) = find("chromium") {
            options["binary"] = json!(chromium);
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        eventually("chromedriver to start a session", DEADLINE, || {
            let (url, capabilities, connector) = (&url, &capabilities, &connector);
            async move {
                let mut builder = ClientBuilder::new(connector.clone());
                builder.capabilities(capabilities.clone());
                match builder.connect(url).await {
                    Ok(client) => ControlFlow::Break(client),
                    Err(e) => ControlFlow::Continue(e.to_string()),
                }
            }
        })
        .await
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name` on the `PATH`.
fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Runs `script` in the page until `done` accepts its answer, which it returns.
pub async fn poll(
    browser: &Client,
    what: &str,
    script: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    eventually(what, DEADLINE, || async {
        match browser.execute(script, vec![]).await {
            Ok(value) if done(&value) => ControlFlow::Break(value),
            Ok(value) => ControlFlow::Continue(value.to_string()),
            Err(e) => ControlFlow::Continue(e.to_string()),
        }
    })
    .await
}

/// Opens the dashboard at `addr` and signs in with `token`.
pub async fn sign_in(browser: &Client, addr: SocketAddr, token: &str) {
    browser
        .goto(&format!("http://{addr}/"))
        .await
        .expect("open the dashboard");
    browser
        .find(Locator::Css("#token"))
        .await
        .expect("token input")
        .send_keys(token)
        .await
        .expect("paste the token");
    click(browser, "#sign-in-form button[type=submit]").await;
}

/// Clicks the element `css` selects.
pub async fn click(browser: &Client, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
}

pub fn screenshots_dir() -> PathBuf {
    match std::env::var_os("FLEET_SCREENSHOTS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::temp_dir().join("fleet-dashboard-screenshots"),
    }
}

pub async fn screenshot(browser: &Client, dir: &Path, name: &str) {
    // Let a refresh that is under way finish, so the picture shows the page at rest.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let png = browser.screenshot().await.expect("screenshot");
    std::fs::create_dir_all(dir).expect("screenshots directory");
    std::fs::write(dir.join(name), png).expect("write the screenshot");
}
