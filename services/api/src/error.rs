//! API errors: a status code and `{"error": {"code", "message"}}`, plus `problems`
//! (`[{field, message}]`) when the input was invalid.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use fleet_events::validation::{FieldError, Invalid};

use fleet_api_model::query::{AskError, ErrorCode};
use fleet_command::CommandError;

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Every problem with the input, each with its field.
    pub problems: Vec<FieldError>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            problems: Vec::new(),
        }
    }

    /// Invalid input: 400 listing every problem.
    pub fn invalid(invalid: Invalid) -> Self {
        let count = invalid.0.len();
        let message = match count {
            1 => format!("invalid input: {}", invalid.0[0]),
            n => format!("invalid input: {n} problems"),
        };
        Self {
            problems: invalid.0,
            ..Self::new(StatusCode::BAD_REQUEST, "invalid", message)
        }
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
}

impl From<AskError> for ApiError {
    fn from(error: AskError) -> Self {
        match error {
            AskError::Refused {
                code: ErrorCode::NotFound,
                message,
            } => Self::not_found(message),
            AskError::Refused {
                code: ErrorCode::BadRequest,
                message,
            } => Self::bad_request(message),
            other => Self::unavailable(other.to_string()),
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::Invalid(invalid) => Self::invalid(invalid),
            CommandError::NotFound(message) => Self::not_found(message),
            CommandError::Conflict(message) => Self::conflict(message),
            CommandError::Unavailable(message) => Self::unavailable(message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": {"code": self.code, "message": self.message}});
        if !self.problems.is_empty() {
            body["error"]["problems"] = json!(self.problems);
        }
        (self.status, Json(body)).into_response()
    }
}

/// The error code for a status that a layer below the handlers answered (axum's body limit,
/// extractors): the same words a handler would use.
pub fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers_too_large",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_client_error() => "bad_request",
        _ => "internal",
    }
}

/// What to say when a layer below answered with no words of its own.
fn message_for(status: StatusCode, said: &str) -> String {
    match (status, said.trim()) {
        (StatusCode::PAYLOAD_TOO_LARGE, _) => {
            format!("the request body is larger than the API takes ({MAX_BODY_BYTES} bytes)")
        }
        (_, "") => status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_lowercase(),
        (_, said) => said.to_owned(),
    }
}

/// The largest request body the API reads (axum's default limit).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// A middleware: any error answered in another shape than JSON (axum's body limit and
/// extractor rejections are plain text) is answered again as `{"error": {code, message}}`.
/// Streams (SSE) and successes pass untouched.
pub async fn json_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    // Such bodies are a line of text; more than a page is not read.
    let said = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    ApiError::new(status, code_for(status), message_for(status, &said)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_too_large_says_the_limit_and_an_empty_answer_gets_its_reason() {
        assert_eq!(code_for(StatusCode::PAYLOAD_TOO_LARGE), "too_large");
        assert!(
            message_for(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Failed to buffer the request body"
            )
            .contains("2097152 bytes")
        );
        assert_eq!(
            message_for(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, ""),
            "request header fields too large"
        );
        assert_eq!(
            message_for(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Expected request with `Content-Type: application/json`\n"
            ),
            "Expected request with `Content-Type: application/json`"
        );
        assert_eq!(code_for(StatusCode::IM_A_TEAPOT), "bad_request");
        assert_eq!(code_for(StatusCode::BAD_GATEWAY), "internal");
    }
}
