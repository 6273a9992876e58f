//! API errors: a status code and `{"error": {"code", "message"}}`, plus `problems`
//! (`[{field, message}]`) when the input was invalid.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use fleet_events::validation::{FieldError, Invalid};

use crate::command::CommandError;
use crate::projector::query::{AskError, ErrorCode};

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
