//! Checking an answer against the OpenAPI document the API serves: its schema for that
//! operation and status, with `$ref`, `allOf`, `oneOf`, `nullable` and `enum` followed.
//! Objects are closed unless their schema allows more, so a field the API adds without
//! documenting it is found.

use serde_json::{Value, json};

use super::http::Response;

/// What `reference` (`#/components/...`) names in `doc`.
fn resolve<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let pointer = reference.strip_prefix('#').unwrap_or(reference);
    doc.pointer(pointer)
        .unwrap_or_else(|| panic!("{reference} is not in the document"))
}

/// The JSON schema of the `status` answer of `method path`.
fn answer_schema<'a>(doc: &'a Value, path: &str, method: &str, status: u16) -> &'a Value {
    let mut response = &doc["paths"][path][method]["responses"][status.to_string()];
    if let Some(reference) = response["$ref"].as_str() {
        response = resolve(doc, reference);
    }
    let schema = &response["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} {status} has no JSON schema"
    );
    schema
}

/// An `allOf` schema as one object schema: the parts' properties and required fields.
fn merged(doc: &Value, parts: &[Value]) -> Value {
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    for part in parts {
        let part = match part["$ref"].as_str() {
            Some(reference) => resolve(doc, reference),
            None => part,
        };
        let part = match part["allOf"].as_array() {
            Some(inner) => merged(doc, inner),
            None => part.clone(),
        };
        if let Some(fields) = part["properties"].as_object() {
            properties.extend(fields.clone());
        }
        if let Some(names) = part["required"].as_array() {
            required.extend(names.iter().cloned());
        }
    }
    json!({"type": "object", "properties": properties, "required": required})
}

/// Where `value` departs from `schema`: a wrong type, a value outside its enum, a missing
/// required field, or a field the schema does not name (unless it allows more).
fn departures(doc: &Value, schema: &Value, value: &Value, at: &str, found: &mut Vec<String>) {
    if let Some(reference) = schema["$ref"].as_str() {
        return departures(doc, resolve(doc, reference), value, at, found);
    }
    if value.is_null() {
        if schema["nullable"] != true {
            found.push(format!("{at}: null, not nullable"));
        }
        return;
    }
    match schema["allOf"].as_array().map(Vec::as_slice) {
        // `allOf: [one]` only adds `nullable` or a description to `one`.
        Some([one]) => return departures(doc, one, value, at, found),
        Some(parts) => return departures(doc, &merged(doc, parts), value, at, found),
        None => {}
    }
    if let Some(choices) = schema["oneOf"].as_array() {
        let fits = choices.iter().any(|choice| {
            let mut misses = Vec::new();
            departures(doc, choice, value, at, &mut misses);
            misses.is_empty()
        });
        if !fits {
            found.push(format!("{at}: {value} is none of the documented forms"));
        }
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        found.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    let fits = match schema["type"].as_str() {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !fits {
        found.push(format!("{at}: {value} is not of type {}", schema["type"]));
        return;
    }
    if let Some(items) = value.as_array() {
        for (i, item) in items.iter().enumerate() {
            departures(doc, &schema["items"], item, &format!("{at}[{i}]"), found);
        }
    }
    let Some(fields) = value.as_object() else {
        return;
    };
    for name in schema["required"].as_array().into_iter().flatten() {
        let name = name.as_str().unwrap_or_default();
        if !fields.contains_key(name) {
            found.push(format!("{at}.{name}: required, missing"));
        }
    }
    for (name, field) in fields {
        let at = format!("{at}.{name}");
        match (&schema["properties"][name], &schema["additionalProperties"]) {
            (Value::Null, Value::Bool(true)) => {}
            (Value::Null, Value::Object(_)) => {
                departures(doc, &schema["additionalProperties"], field, &at, found);
            }
            (Value::Null, _) => found.push(format!("{at}: not documented")),
            (property, _) => departures(doc, property, field, &at, found),
        }
    }
}

/// Asserts that the `status` answer of `method template` fits its documented schema.
pub fn assert_documented(
    doc: &Value,
    template: &str,
    method: &str,
    response: &Response,
    status: u16,
) {
    let what = format!("{method} {template}");
    assert_eq!(response.status, status, "{what}: {}", response.body);
    let schema = answer_schema(doc, template, method, status);
    let mut found = Vec::new();
    departures(doc, schema, &response.body, "$", &mut found);
    assert!(
        found.is_empty(),
        "{what} departs from the document:\n{}\nanswer: {:#}",
        found.join("\n"),
        response.body
    );
}
