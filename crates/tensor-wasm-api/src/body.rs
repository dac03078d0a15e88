//! Request bodies: one reader (the size cap and the body timeout) and one
//! JSON parser, whose every rejection is an [`ApiError`] (`400
//! invalid_request`, `413`, `408`, `415`), so each route answers a slow,
//! large or malformed body the same way.
//!
//! [`JsonBody`] is the extractor for routes that take only JSON. A handler
//! that audits its failures takes `Result<JsonBody<T>, ApiError>` and
//! records a rejected body like any other error. Routes that also take
//! other content types (a raw module, bytes for an invoke) read the body
//! themselves and call [`parse_json`].

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body parsed into `T`. An empty body reads as JSON `null`, so
/// `JsonBody<Option<T>>` makes the body optional.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        read_json(state, &parts.headers, body, state.max_body_bytes())
            .await
            .map(JsonBody)
    }
}

/// Reads a body of at most `limit` bytes (and within the body timeout) and
/// parses it as JSON. A non-empty body must say `application/json` (or
/// `application/*+json`), or say nothing.
pub(crate) async fn read_json<T: DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<T, ApiError> {
    let body = read_body(headers, body, limit, state.body_timeout()).await?;
    let media = media_type(headers);
    if !body.iter().all(u8::is_ascii_whitespace) && !media.is_empty() && !is_json(&media) {
        return Err(ApiError::UnsupportedMediaType(media));
    }
    parse_json(&body)
}

/// Parses a JSON body already read; empty or blank is JSON `null`.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"null"
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| ApiError::InvalidRequest(format!("invalid JSON body: {e}")))
}

/// Reads a whole body, refusing more than `limit` bytes with `413` and a
/// body that has not fully arrived within `timeout` with `408`.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| ApiError::RequestTimeout {
            timeout_ms: timeout.as_millis() as u64,
        })?;
    read.map_err(|e| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = source {
            if err.is::<http_body_util::LengthLimitError>() {
                return ApiError::PayloadTooLarge { limit };
            }
            source = err.source();
        }
        ApiError::InvalidRequest(format!("cannot read request body: {e}"))
    })
}

/// The media type of a request without parameters, lower-cased (`""` if absent).
pub(crate) fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// True for `application/json` and `application/*+json`.
pub(crate) fn is_json(media_type: &str) -> bool {
    media_type == "application/json"
        || (media_type.starts_with("application/") && media_type.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Call {
        export: String,
    }

    #[test]
    fn blank_bodies_are_null_and_errors_are_invalid_request() {
        assert_eq!(parse_json::<Option<Call>>(b"  \n").unwrap(), None);
        let e = parse_json::<Call>(b"").unwrap_err();
        assert_eq!(e.code(), "invalid_request");
        let e = parse_json::<Call>(br#"{"export":"f","extra":1}"#).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid JSON body: unknown field"),
            "{e}"
        );
        assert_eq!(
            parse_json::<Call>(br#"{"export":"f"}"#).unwrap(),
            Call { export: "f".into() }
        );
    }
}
