//! The one API error type, and its DCS bodies.
//!
//! v2 answers `{"error_code": "DCS.4800", "error_msg": "...", "error_ext_msg": ...}`;
//! v1.0 answers `{"error": {"code": "111400800", "message": "..."}}` with the
//! numeric code the reference pairs with each DCS code. Internal errors are
//! logged with their cause and answered without it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::catalog::CatalogError;
use crate::model::JobKind;

/// Which API version's error body to answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    V2,
    V1,
}

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// The DCS code, e.g. `DCS.4800`.
    pub code: &'static str,
    pub msg: String,
    pub ext: Option<String>,
    pub flavor: Flavor,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, msg: impl Into<String>) -> Self {
        Self {
            status,
            code,
            msg: msg.into(),
            ext: None,
            flavor: Flavor::V2,
        }
    }

    pub fn with_ext(mut self, ext: impl Into<String>) -> Self {
        self.ext = Some(ext.into());
        self
    }

    pub fn v1(mut self) -> Self {
        self.flavor = Flavor::V1;
        self
    }

    /// DCS.4800 "Invalid {name} in the request."
    pub fn invalid(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "DCS.4800",
            format!("Invalid {name} in the request."),
        )
    }

    pub fn end_before_begin() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "DCS.4025",
            "The end time must be after the start time.",
        )
    }

    pub fn bad_instance_id() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "DCS.4061",
            "Invalid instance ID format.",
        )
    }

    pub fn no_instance() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "DCS.3022",
            "This DCS instance does not exist.",
        )
    }

    pub fn not_found_url() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "DCS.4001",
            "The requested URL does not exist.",
        )
    }

    pub fn bad_json() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "DCS.4005",
            "The message body contains invalid characters or is not in JSON format.",
        )
    }

    pub fn empty_body() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "DCS.4004", "Empty request body.")
    }

    pub fn busy(kind: JobKind) -> Self {
        match kind {
            JobKind::Backup => Self::new(
                StatusCode::BAD_REQUEST,
                "DCS.4096",
                "the instance is backuping.",
            ),
            JobKind::Restore => Self::new(
                StatusCode::BAD_REQUEST,
                "DCS.4097",
                "the instance is restoring.",
            ),
        }
    }

    pub fn unauthorized(code: &'static str, msg: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, msg)
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "DCS.5000",
            "Internal service error.",
        )
    }

    /// The v1.0 numeric code paired with this DCS code in the reference.
    pub fn v1_code(&self) -> String {
        let n = self.code.strip_prefix("DCS.").unwrap_or("5000");
        match (self.status.as_u16(), n) {
            (401, n) => format!("11140{n}"),
            (404, "3022") => "111404022".into(),
            (404, n) => format!("1114{}", &format!("{n:0>5}")[..]),
            (500.., _) => "111500000".into(),
            (_, n) if n.len() == 4 && n.starts_with('4') => format!("111400{}", &n[1..]),
            (_, n) => format!("111400{n}"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.flavor {
            Flavor::V2 => json!({
                "error_code": self.code,
                "error_msg": self.msg,
                "error_ext_msg": self.ext,
            }),
            Flavor::V1 => json!({
                "error": { "code": self.v1_code(), "message": self.msg }
            }),
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::Busy(kind) => Self::busy(kind),
            other => {
                tracing::error!(error = %other, "catalog failure");
                Self::internal()
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_codes_follow_the_reference_table() {
        assert_eq!(ApiError::invalid("start").v1_code(), "111400800");
        assert_eq!(ApiError::end_before_begin().v1_code(), "111400025");
        assert_eq!(ApiError::bad_instance_id().v1_code(), "111400061");
        assert_eq!(ApiError::no_instance().v1_code(), "111404022");
        assert_eq!(ApiError::not_found_url().v1_code(), "111404001");
        assert_eq!(ApiError::busy(JobKind::Backup).v1_code(), "111400096");
        assert_eq!(ApiError::busy(JobKind::Restore).v1_code(), "111400097");
        assert_eq!(
            ApiError::unauthorized("DCS.1001", "x").v1_code(),
            "111401001"
        );
        assert_eq!(ApiError::internal().v1_code(), "111500000");
    }
}
