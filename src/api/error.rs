//! The one API error type, and the catalogue of every DCS error the API
//! answers.
//!
//! [`Dcs`] is the catalogue: each error's HTTP status, DCS code and message
//! are written once, in [`Dcs::row`], and its v1.0 numeric code is derived
//! from them once, in [`Dcs::v1_code`]. Handlers name an error by its
//! variant and never spell a code.
//!
//! v2 answers `{"error_code": "DCS.4800", "error_msg": "...", "error_ext_msg": ...}`;
//! v1.0 answers `{"error": {"code": "111400800", "message": "..."}}` with the
//! numeric code the reference pairs with each DCS code. Internal errors are
//! logged with their cause and answered without it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::Version;
use crate::catalog::CatalogError;
use crate::model::JobKind;

/// Every error the API answers, one variant per distinct answer (a DCS
/// code may have several messages, or several statuses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dcs {
    TokenInvalid,
    SignatureReused,
    TokenExpired,
    TokenMissing,
    ProjectMismatch,
    LinkDenied,
    NoInstance,
    NoUrl,
    FileGone,
    EmptyBody,
    BadJson,
    EngineUnsupported,
    BadName,
    BadDescription,
    EndBeforeBegin,
    NameExists,
    BadInstanceId,
    BadSaveDays,
    BadBackupType,
    BadPeriodType,
    BadBackupAt,
    BadBeginAt,
    WrongPassword,
    BackupNotSucceeded,
    Backuping,
    Restoring,
    /// A test restore holds the instance's (or the sandbox's) test lane.
    Verifying,
    BadRemark,
    DeleteFailed,
    /// The message names the parameter: see [`ApiError::invalid`].
    Invalid,
    BodyTimeout,
    BadUser,
    BadPassword,
    Internal,
}

impl Dcs {
    /// The HTTP status, DCS code and message of each error.
    pub fn row(self) -> (StatusCode, &'static str, &'static str) {
        use Dcs::*;
        use StatusCode as S;
        match self {
            TokenInvalid => (S::UNAUTHORIZED, "DCS.1001", "Invalid token."),
            SignatureReused => (S::UNAUTHORIZED, "DCS.1001", "Request already used."),
            TokenExpired => (S::UNAUTHORIZED, "DCS.1002", "Token expired."),
            TokenMissing => (S::UNAUTHORIZED, "DCS.1003", "No token in the request."),
            ProjectMismatch => (
                S::UNAUTHORIZED,
                "DCS.1004",
                "Project ID does not match the token.",
            ),
            LinkDenied => (
                S::FORBIDDEN,
                "DCS.2003",
                "The link is invalid or has expired.",
            ),
            NoInstance => (S::NOT_FOUND, "DCS.3022", "This DCS instance does not exist."),
            NoUrl => (S::NOT_FOUND, "DCS.4001", "The requested URL does not exist."),
            FileGone => (S::NOT_FOUND, "DCS.4001", "The backup file no longer exists."),
            EmptyBody => (S::BAD_REQUEST, "DCS.4004", "Empty request body."),
            BadJson => (
                S::BAD_REQUEST,
                "DCS.4005",
                "The message body contains invalid characters or is not in JSON format.",
            ),
            EngineUnsupported => (
                S::BAD_REQUEST,
                "DCS.4006",
                "The selected cache engine type is not supported.",
            ),
            BadName => (
                S::BAD_REQUEST,
                "DCS.4010",
                "Invalid DCS instance name. The name must be 4 to 64 characters in length. \
                 Only letters (case-insensitive), digits, underscores (_) ,and hyphens (-) are allowed.",
            ),
            BadDescription => (
                S::BAD_REQUEST,
                "DCS.4011",
                "DCS instance description cannot exceed 1024 characters.",
            ),
            EndBeforeBegin => (
                S::BAD_REQUEST,
                "DCS.4025",
                "The end time must be after the start time.",
            ),
            NameExists => (
                S::BAD_REQUEST,
                "DCS.4060",
                "This DCS instance name already exists.",
            ),
            BadInstanceId => (S::BAD_REQUEST, "DCS.4061", "Invalid instance ID format."),
            BadSaveDays => (
                S::BAD_REQUEST,
                "DCS.4072",
                "Invalid saveDays instance backup policy parameter in the request.",
            ),
            BadBackupType => (
                S::BAD_REQUEST,
                "DCS.4073",
                "Invalid backupType instance backup policy parameter in the request.",
            ),
            BadPeriodType => (
                S::BAD_REQUEST,
                "DCS.4074",
                "Invalid periodType instance backup policy parameter in the request.",
            ),
            BadBackupAt => (
                S::BAD_REQUEST,
                "DCS.4075",
                "Invalid backupAt instance backup policy parameter in the request.",
            ),
            BadBeginAt => (
                S::BAD_REQUEST,
                "DCS.4076",
                "Invalid beginAt instance backup policy parameter in the request.",
            ),
            WrongPassword => (
                S::BAD_REQUEST,
                "DCS.4080",
                "Instance password verify failed.",
            ),
            BackupNotSucceeded => (
                S::BAD_REQUEST,
                "DCS.4087",
                "The restoration operation is allowed only when the backup task succeeded.",
            ),
            Backuping => (S::BAD_REQUEST, "DCS.4096", "the instance is backuping."),
            Restoring => (S::BAD_REQUEST, "DCS.4097", "the instance is restoring."),
            Verifying => (
                S::BAD_REQUEST,
                "DCS.4096",
                "a test restore of the instance is running.",
            ),
            BadRemark => (
                S::BAD_REQUEST,
                "DCS.4098",
                "The value of the remark parameter must be 0 to 128 characters in length.",
            ),
            DeleteFailed => (
                S::INTERNAL_SERVER_ERROR,
                "DCS.4101",
                "Delete instance backup file failed.",
            ),
            Invalid => (S::BAD_REQUEST, "DCS.4800", "Invalid {name} in the request."),
            BodyTimeout => (
                S::REQUEST_TIMEOUT,
                "DCS.4800",
                "The request body did not arrive in time.",
            ),
            BadUser => (
                S::BAD_REQUEST,
                "DCS.4844",
                "The access_user parameter is missing or its value is invalid.",
            ),
            BadPassword => (
                S::BAD_REQUEST,
                "DCS.4845",
                "The password parameter is missing or its value is invalid.",
            ),
            Internal => (
                S::INTERNAL_SERVER_ERROR,
                "DCS.5000",
                "Internal service error.",
            ),
        }
    }

    pub fn status(self) -> StatusCode {
        self.row().0
    }

    /// The DCS code, e.g. `DCS.4800`.
    pub fn code(self) -> &'static str {
        self.row().1
    }

    /// The v1.0 numeric code the reference pairs with this error: 401s are
    /// `11140` and the code's digits, 404s `1114` and the digits padded to
    /// five (`DCS.3022` is `111404022`), every 5xx `111500000`, and a
    /// `DCS.4xxx` otherwise `111400xxx`.
    pub fn v1_code(self) -> String {
        let (status, code, _) = self.row();
        let n = code.strip_prefix("DCS.").unwrap_or("5000");
        match (status.as_u16(), n) {
            (401, n) => format!("11140{n}"),
            (404, "3022") => "111404022".into(),
            (404, n) => format!("1114{}", &format!("{n:0>5}")[..]),
            (500.., _) => "111500000".into(),
            (_, n) if n.len() == 4 && n.starts_with('4') => format!("111400{}", &n[1..]),
            (_, n) => format!("111400{n}"),
        }
    }
}

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub kind: Dcs,
    pub msg: String,
    pub ext: Option<String>,
    /// Which API version's body to answer with.
    pub version: Version,
}

impl ApiError {
    /// The error with its catalogue message, answered in the v2 shape.
    pub fn new(kind: Dcs) -> Self {
        Self {
            kind,
            msg: kind.row().2.to_owned(),
            ext: None,
            version: Version::V2,
        }
    }

    /// DCS.4800 "Invalid {name} in the request."
    pub fn invalid(name: &str) -> Self {
        let mut e = Self::new(Dcs::Invalid);
        e.msg = e.msg.replacen("{name}", name, 1);
        e
    }

    /// DCS.4096 / DCS.4097: a job of this kind holds the instance.
    pub fn busy(kind: JobKind) -> Self {
        Self::new(match kind {
            JobKind::Backup => Dcs::Backuping,
            JobKind::Restore => Dcs::Restoring,
            JobKind::Verification => Dcs::Verifying,
        })
    }

    pub fn internal() -> Self {
        Self::new(Dcs::Internal)
    }

    pub fn with_ext(mut self, ext: impl Into<String>) -> Self {
        self.ext = Some(ext.into());
        self
    }

    /// The same error, answered in the shape of `version`.
    pub fn in_version(mut self, version: Version) -> Self {
        self.version = version;
        self
    }

    /// The same error, answered in the v1.0 shape.
    pub fn v1(self) -> Self {
        self.in_version(Version::V1)
    }

    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The DCS code, e.g. `DCS.4800`.
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }
}

impl From<Dcs> for ApiError {
    fn from(kind: Dcs) -> Self {
        Self::new(kind)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.version {
            Version::V2 => json!({
                "error_code": self.code(),
                "error_msg": self.msg,
                "error_ext_msg": self.ext,
            }),
            Version::V1 => json!({
                "error": { "code": self.kind.v1_code(), "message": self.msg }
            }),
        };
        (self.status(), Json(body)).into_response()
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
        use Dcs::*;
        let table = [
            (TokenInvalid, "111401001"),
            (SignatureReused, "111401001"),
            (TokenExpired, "111401002"),
            (TokenMissing, "111401003"),
            (ProjectMismatch, "111401004"),
            (LinkDenied, "1114002003"),
            (NoInstance, "111404022"),
            (NoUrl, "111404001"),
            (FileGone, "111404001"),
            (EmptyBody, "111400004"),
            (BadJson, "111400005"),
            (EngineUnsupported, "111400006"),
            (BadName, "111400010"),
            (BadDescription, "111400011"),
            (EndBeforeBegin, "111400025"),
            (NameExists, "111400060"),
            (BadInstanceId, "111400061"),
            (BadSaveDays, "111400072"),
            (BadBackupType, "111400073"),
            (BadPeriodType, "111400074"),
            (BadBackupAt, "111400075"),
            (BadBeginAt, "111400076"),
            (WrongPassword, "111400080"),
            (BackupNotSucceeded, "111400087"),
            (Backuping, "111400096"),
            (Restoring, "111400097"),
            (Verifying, "111400096"),
            (BadRemark, "111400098"),
            (DeleteFailed, "111500000"),
            (Invalid, "111400800"),
            (BodyTimeout, "111400800"),
            (BadUser, "111400844"),
            (BadPassword, "111400845"),
            (Internal, "111500000"),
        ];
        for (kind, want) in table {
            assert_eq!(kind.v1_code(), want, "{kind:?}");
        }
    }

    #[test]
    fn invalid_names_the_parameter() {
        let e = ApiError::invalid("start");
        assert_eq!(
            (e.code(), e.msg.as_str()),
            ("DCS.4800", "Invalid start in the request.")
        );
        assert_eq!(ApiError::busy(JobKind::Restore).code(), "DCS.4097");
    }
}
