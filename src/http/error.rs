//! The one error type of the HTTP layer: `{"error": {"code", "message"}}` with the status
//! saying who must act.

use crate::app::{AppError, ErrorKind};
use crate::projection::ProjectionError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
}

impl ApiError {
    pub(super) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut r = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"campaign-ledger\""),
            );
        }
        r
    }
}

impl From<AppError> for ApiError {
    /// Each kind of failure as the status that says who must act; the details of a server-side
    /// failure go to the log, not the body.
    fn from(e: AppError) -> ApiError {
        let internal = |what: &str, message: &str| {
            tracing::error!(error = %e, "{what}");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
        };
        match e.kind() {
            ErrorKind::Conflict => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{e}; send the command again"),
            ),
            ErrorKind::Invalid => ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
            ErrorKind::Unavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                format!("{e}; retry in a moment"),
            ),
            ErrorKind::UnknownProjection => match &e {
                AppError::Projection(p) => ApiError::new(
                    StatusCode::NOT_FOUND,
                    "unknown_projection",
                    format!("there is no projection named {:?}; GET /v1/projections lists them", p.unknown_name().unwrap_or_default()),
                ),
                _ => ApiError::new(StatusCode::NOT_FOUND, "unknown_projection", e.to_string()),
            },
            ErrorKind::NotInLog => {
                ApiError::new(StatusCode::NOT_FOUND, "not_in_log", e.to_string())
            }
            ErrorKind::StoreFailure => internal(
                "store failure",
                "the ledger could not read or write its log; an operator should run `campaign-ledger audit verify`",
            ),
            ErrorKind::Undecodable => internal(
                "command handling failed",
                "a stored event could not be read back; an operator should run `campaign-ledger audit verify`",
            ),
            ErrorKind::ProjectionFailure => internal(
                "projection failure",
                "the projection database failed; an operator can rebuild it with `campaign-ledger projections rebuild NAME`",
            ),
        }
    }
}

impl From<ProjectionError> for ApiError {
    fn from(e: ProjectionError) -> ApiError {
        AppError::from(e).into()
    }
}
