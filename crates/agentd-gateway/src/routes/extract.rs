//! `Path` and `Query` extractors that refuse in the API's error shape. axum's own answer a path
//! that is not UTF-8 once percent-decoded, or a query it cannot deserialise (`?tenant=a&tenant=b`),
//! with a `text/plain` 400 that no SDK can parse and the OpenAPI document does not describe.

use crate::error::ErrorResponse;
use crate::middleware::format_for;
use agentd_core::ApiError;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// [`Path`], refusing with a JSON 400 (`code: invalid_path`).
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ErrorResponse;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(e) => Err(refusal(parts, "invalid_path", e.body_text())),
        }
    }
}

/// [`Query`], refusing with a JSON 400 (`code: invalid_query`).
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ErrorResponse;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(e) => Err(refusal(parts, "invalid_query", e.body_text())),
        }
    }
}

fn refusal(parts: &Parts, code: &'static str, message: String) -> ErrorResponse {
    ErrorResponse {
        format: format_for(parts.uri.path()),
        error: ApiError::invalid(code, message),
    }
}
