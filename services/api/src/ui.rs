//! The operator dashboard: hand-written HTML, CSS and JavaScript modules from `ui/`,
//! embedded in the binary and served without a token (they hold no data: the page asks
//! `/v1` with the token the operator pastes). Every answer carries a Content-Security-Policy
//! that allows only this origin, so the page loads nothing from elsewhere and runs no
//! inline script or style.

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Only this origin, for everything; no inline script or style, no framing, no forms
/// posting elsewhere.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; \
                   object-src 'none'";

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The files under `/ui/`, by name, with their content type.
const ASSETS: &[(&str, &str, &str)] = &[
    ("index.html", HTML, include_str!("ui/index.html")),
    ("style.css", CSS, include_str!("ui/style.css")),
    ("app.js", JS, include_str!("ui/app.js")),
    ("api.js", JS, include_str!("ui/api.js")),
    ("dom.js", JS, include_str!("ui/dom.js")),
    ("chart.js", JS, include_str!("ui/chart.js")),
    ("view-overview.js", JS, include_str!("ui/view-overview.js")),
    ("view-agent.js", JS, include_str!("ui/view-agent.js")),
    ("view-policies.js", JS, include_str!("ui/view-policies.js")),
    ("view-task.js", JS, include_str!("ui/view-task.js")),
    ("view-runs.js", JS, include_str!("ui/view-runs.js")),
    ("view-repos.js", JS, include_str!("ui/view-repos.js")),
    (
        "view-snapshots.js",
        JS,
        include_str!("ui/view-snapshots.js"),
    ),
    ("view-snapshot.js", JS, include_str!("ui/view-snapshot.js")),
];

/// `GET /ui/{file}`, merged into the API's router. The page itself (`GET /`) is routed
/// and documented in `openapi.json` with the API; its files are not API operations, so
/// the document only mentions them.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/ui/{file}", get(asset))
}

/// `GET /`: the dashboard's page.
pub async fn index() -> Response {
    serve("index.html")
}

/// `GET /ui/{file}`: one of the dashboard's files; 404 (plain text) for any other name.
pub async fn asset(Path(file): Path<String>) -> Response {
    serve(&file)
}

fn serve(name: &str) -> Response {
    let headers = |content_type: &'static str| {
        [
            (CONTENT_TYPE, content_type),
            (HeaderName::from_static("content-security-policy"), CSP),
            (HeaderName::from_static("x-content-type-options"), "nosniff"),
            (HeaderName::from_static("referrer-policy"), "no-referrer"),
            (CACHE_CONTROL, "no-cache"),
        ]
    };
    match ASSETS.iter().find(|(file, _, _)| *file == name) {
        Some((_, content_type, body)) => (headers(content_type), *body).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            headers("text/plain; charset=utf-8"),
            "no such dashboard file\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_only_files_that_are_served() {
        let page = ASSETS[0].2;
        for (start, _) in page.match_indices("/ui/") {
            let name: String = page[start + 4..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '.' || *c == '-')
                .collect();
            assert!(
                ASSETS.iter().any(|(file, _, _)| *file == name),
                "index.html names /ui/{name}"
            );
        }
    }

    #[test]
    fn modules_import_only_files_that_are_served() {
        for (file, _, body) in ASSETS.iter().filter(|(_, t, _)| *t == JS) {
            for line in body.lines().filter(|l| l.starts_with("import ")) {
                let name = line
                    .rsplit("from \"./")
                    .next()
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or_default();
                assert!(
                    ASSETS.iter().any(|(served, _, _)| *served == name),
                    "{file} imports {name:?}: {line}"
                );
            }
        }
    }

    #[test]
    fn nothing_is_loaded_from_elsewhere() {
        for (file, _, body) in ASSETS {
            // The SVG namespace is a name, not an address the page loads.
            let body = body.replace("http://www.w3.org/2000/svg", "");
            for needle in ["http://", "https://", "//cdn", "<script>", "style=\""] {
                assert!(!body.contains(needle), "{file} contains {needle}");
            }
        }
    }
}
