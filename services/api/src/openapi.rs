//! `GET /v1/openapi.json`: the OpenAPI 3.0 document of this API, written by hand in
//! `openapi.json` beside this file, with the crate's version filled in. No token needed.
//!
//! The tests keep it true: here, every route in the router's source is documented with
//! its methods and every documented operation is routed; in the `api` scenarios of
//! `fleet-tests`, every documented operation answers over real HTTP with a documented
//! status, and answers about real objects have the documented shapes.

use std::sync::LazyLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

/// The document as written; `info.version` is a placeholder.
const SOURCE: &str = include_str!("openapi.json");
/// What stands for the crate's version in [`SOURCE`].
const VERSION_PLACEHOLDER: &str = "\"version\": \"CARGO_PKG_VERSION\"";

/// The document served: [`SOURCE`] with the crate's version.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    let version = format!("\"version\": \"{}\"", env!("CARGO_PKG_VERSION"));
    SOURCE.replacen(VERSION_PLACEHOLDER, &version, 1)
});

/// `GET /v1/openapi.json`.
pub async fn document() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], DOCUMENT.as_str())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use serde_json::Value;

    use super::*;

    const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

    fn document() -> Value {
        serde_json::from_str(&DOCUMENT).expect("the document is JSON")
    }

    /// Every `(path, method)` the router's source declares with `.route("...", ...)`, in
    /// `mod.rs` and in the routers it merges (`events.rs`).
    fn routed() -> BTreeMap<String, BTreeSet<String>> {
        let mut routes = BTreeMap::new();
        for source in [include_str!("lib.rs"), include_str!("events.rs")] {
            // Only code: the tests of a file may build paths of their own.
            let code = source.split("#[cfg(test)]").next().unwrap_or_default();
            let code: String = code
                .lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            for (start, _) in code.match_indices(".route(") {
                let call = call_at(&code[start + ".route".len()..]);
                let path = first_string(call).expect("a route's path is a string literal");
                let methods: BTreeSet<String> = METHODS
                    .iter()
                    .filter(|m| calls(call, m))
                    .map(|m| (*m).to_owned())
                    .collect();
                assert!(!methods.is_empty(), "no method found for {path}: {call}");
                let previous = routes.insert(path.clone(), methods);
                assert!(previous.is_none(), "{path} is routed twice");
            }
        }
        routes
    }

    /// The parenthesised argument list at the start of `text`.
    fn call_at(text: &str) -> &str {
        let mut depth = 0;
        for (i, c) in text.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        return &text[..=i];
                    }
                }
                _ => {}
            }
        }
        panic!("unbalanced parentheses in {text}")
    }

    fn first_string(text: &str) -> Option<String> {
        let start = text.find('"')? + 1;
        let len = text[start..].find('"')?;
        Some(text[start..start + len].to_owned())
    }

    /// Whether `code` calls the method router `name(...)` (`get(`, `.post(`,
    /// `axum::routing::patch(`), not a handler that merely ends in that name.
    fn calls(code: &str, name: &str) -> bool {
        code.match_indices(&format!("{name}(")).any(|(i, _)| {
            code[..i]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
        })
    }

    fn documented(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
        let paths = doc["paths"].as_object().expect("paths");
        paths
            .iter()
            .map(|(path, item)| {
                let item = item.as_object().expect("a path item is an object");
                for key in item.keys() {
                    assert!(
                        METHODS.contains(&key.as_str()) || key == "parameters",
                        "{path}: {key} is not a method the router uses"
                    );
                }
                let methods = METHODS
                    .iter()
                    .filter(|m| item.contains_key(**m))
                    .map(|m| (*m).to_owned())
                    .collect();
                (path.clone(), methods)
            })
            .collect()
    }

    fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
        match value {
            Value::Object(fields) => {
                for (key, value) in fields {
                    match (key.as_str(), value) {
                        ("$ref", Value::String(target)) => found.push(target),
                        _ => refs(value, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
            _ => {}
        }
    }

    /// An operation's parameters, `$ref`s resolved.
    fn parameters<'a>(doc: &'a Value, operation: &'a Value) -> Vec<&'a Value> {
        let listed = operation["parameters"].as_array().map(Vec::as_slice);
        listed
            .unwrap_or_default()
            .iter()
            .map(|parameter| match parameter["$ref"].as_str() {
                Some(target) => doc.pointer(&target[1..]).expect("resolves"),
                None => parameter,
            })
            .collect()
    }

    #[test]
    fn the_document_is_openapi_3_0_with_the_crate_version() {
        let doc = document();
        let version = doc["openapi"].as_str().expect("openapi");
        assert!(version.starts_with("3.0."), "{version}");
        assert_eq!(doc["info"]["title"], "restic-fleet");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(
            doc["components"]["securitySchemes"]["bearerAuth"]["scheme"],
            "bearer"
        );
        assert!(!DOCUMENT.contains("CARGO_PKG_VERSION"));
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 50, "only {} references", found.len());
        for target in found {
            assert!(target.starts_with("#/components/"), "{target}");
            assert!(
                doc.pointer(&target[1..]).is_some(),
                "{target} is not defined"
            );
        }
    }

    #[test]
    fn every_operation_has_an_id_responses_and_its_path_parameters() {
        let doc = document();
        let mut ids = BTreeSet::new();
        for (path, methods) in documented(&doc) {
            let wanted: BTreeSet<&str> = path
                .split('/')
                .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            for method in methods {
                let operation = &doc["paths"][&path][&method];
                let id = operation["operationId"].as_str().expect("operationId");
                assert!(ids.insert(id.to_owned()), "{id} is used twice");
                let responses = operation["responses"].as_object().expect("responses");
                assert!(!responses.is_empty(), "{method} {path} has no responses");
                for (status, response) in responses {
                    assert!(status.parse::<u16>().is_ok(), "{method} {path}: {status}");
                    assert!(
                        response.get("$ref").is_some() || response.get("description").is_some(),
                        "{method} {path} {status} has no description"
                    );
                }
                let declared: BTreeSet<&str> = parameters(&doc, operation)
                    .into_iter()
                    .filter(|p| p["in"] == "path")
                    .map(|p| {
                        assert_eq!(p["required"], true, "{method} {path}");
                        p["name"].as_str().expect("name")
                    })
                    .collect();
                assert_eq!(declared, wanted, "{method} {path}: path parameters");
                let public = operation["security"].as_array().is_some_and(Vec::is_empty);
                if path.starts_with("/v1/") && !public {
                    assert!(responses.contains_key("401"), "{method} {path} lacks 401");
                }
                if method != "get" {
                    assert!(responses.contains_key("403"), "{method} {path} lacks 403");
                }
            }
        }
    }

    #[test]
    fn every_route_is_documented_and_every_documented_operation_is_routed() {
        let routed = routed();
        let documented = documented(&document());
        assert!(
            routed.len() > 20,
            "only {} routes read: {routed:?}",
            routed.len()
        );
        for (path, methods) in &routed {
            assert_eq!(
                documented.get(path),
                Some(methods),
                "{path} is routed with {methods:?}: document it in openapi.json"
            );
        }
        for (path, methods) in &documented {
            assert_eq!(
                routed.get(path),
                Some(methods),
                "{path} is documented with {methods:?} but not routed so"
            );
        }
    }

    #[test]
    fn route_calls_are_told_from_handlers() {
        let call = call_at("(\"/x\", get(read::policy).delete(write_policy::delete)) rest");
        assert!(call.ends_with("delete))"));
        assert_eq!(first_string(call).as_deref(), Some("/x"));
        assert!(calls(call, "get") && calls(call, "delete"));
        assert!(!calls(call, "put") && !calls("(forget(x))", "get"));
        assert!(calls("(axum::routing::patch(write::settings))", "patch"));
    }
}
