//! The service's errors: each has an HTTP status and a stable code, and is answered as
//! [`ErrorBody`](super::api::ErrorBody). A session of another tenant is `NotFound`, exactly like a
//! session that does not exist, so a token learns nothing about other tenants.

use thiserror::Error;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ApiError {
    /// No bearer token, or one the service does not know.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// The token may not do this (reload policies without `admin`).
    #[error("{0}")]
    Forbidden(String),
    /// No such session (or approval) in the caller's tenant.
    #[error("{0}")]
    NotFound(String),
    /// The id is taken by a session created with another body, or the store has it already.
    #[error("{0}")]
    Conflict(String),
    /// The session waits for the answer to an earlier proposal, and this one was not to queue.
    #[error("{0}")]
    Busy(String),
    /// The body is not JSON.
    #[error("{0}")]
    BadJson(String),
    /// The JSON does not fit (an unknown or missing field, a wrong type), or the session cannot be
    /// opened with these entities, or the policies do not validate.
    #[error("{0}")]
    Invalid(String),
    /// The body is larger than the service accepts.
    #[error("{0}")]
    TooLarge(String),
    /// The body is not `application/json`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// An intent clients may not send on this endpoint (approvals, cancellation and endorsement
    /// have their own, acting as the token's user).
    #[error("{0}")]
    NotAllowed(String),
    /// The session's store refused a write; the session takes no more steps here.
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::Unauthorized => 401,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::Conflict(_) | Self::Busy(_) => 409,
            Self::BadJson(_) | Self::NotAllowed(_) => 400,
            Self::Invalid(_) => 422,
            Self::TooLarge(_) => 413,
            Self::UnsupportedMediaType(_) => 415,
            Self::Unavailable(_) => 503,
        }
    }

    /// The stable code in the body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::Busy(_) => "busy",
            Self::BadJson(_) => "bad_json",
            Self::Invalid(_) => "invalid",
            Self::TooLarge(_) => "too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::NotAllowed(_) => "not_allowed",
            Self::Unavailable(_) => "unavailable",
        }
    }
}
