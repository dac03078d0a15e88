//! The one error type of the client: the server said no ([`Error::Http`]),
//! the request never completed ([`Error::Transport`]), or a success reply
//! was not what the API documents ([`Error::Decode`]).

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Deserialize;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with a status other than 2xx.
    #[error("server answered {}: {}", .0.status, .0.message)]
    Http(Box<HttpError>),
    /// The request did not complete: no connection, a timeout, a body cut
    /// off, or a URL that does not parse.
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
    /// A 2xx reply whose body is not the JSON the API documents (is this a
    /// tensor-wasm server?).
    #[error("unexpected reply ({0})")]
    Decode(#[from] serde_json::Error),
}

impl Error {
    /// The HTTP status, for [`Error::Http`].
    pub fn status(&self) -> Option<StatusCode> {
        self.http().map(|e| e.status)
    }

    /// The API's stable error code (`function_not_found`, `rate_limited`, …),
    /// for [`Error::Http`] with a JSON error body.
    pub fn code(&self) -> Option<&str> {
        self.http().and_then(|e| e.code.as_deref())
    }

    /// How long the server asked us to wait (`Retry-After`), when it did.
    pub fn retry_after(&self) -> Option<Duration> {
        self.http().and_then(|e| e.retry_after)
    }

    /// The details of an [`Error::Http`].
    pub fn http(&self) -> Option<&HttpError> {
        match self {
            Error::Http(e) => Some(e),
            _ => None,
        }
    }
}

/// A non-2xx answer, with the API's `{"error":{"code","message"}}` decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// The HTTP status.
    pub status: StatusCode,
    /// `error.code` of the body; `None` when the body was not the API's
    /// error shape (a proxy's page, say).
    pub code: Option<String>,
    /// `error.message` of the body, else the whole body as text.
    pub message: String,
    /// `Retry-After` in seconds, when present (`429` and `503` carry it).
    pub retry_after: Option<Duration>,
    /// The body exactly as received.
    pub body: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorFields,
}

#[derive(Deserialize)]
struct ErrorFields {
    code: String,
    message: String,
}

impl HttpError {
    /// Builds the error from a refused response's status, headers and body.
    pub(crate) fn new(status: StatusCode, headers: &HeaderMap, body: String) -> Self {
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let (code, message) = match serde_json::from_str::<ErrorBody>(&body) {
            Ok(b) => (Some(b.error.code), b.error.message),
            Err(_) => (None, body.clone()),
        };
        HttpError {
            status,
            code,
            message,
            retry_after,
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn api_error_body_gives_code_message_and_retry_after() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        let body = r#"{"error":{"code":"rate_limited","message":"slow down"}}"#;
        let e = HttpError::new(StatusCode::TOO_MANY_REQUESTS, &headers, body.into());
        assert_eq!(e.code.as_deref(), Some("rate_limited"));
        assert_eq!(e.message, "slow down");
        assert_eq!(e.retry_after, Some(Duration::from_secs(3)));
        let err = Error::Http(Box::new(e));
        assert_eq!(
            err.to_string(),
            "server answered 429 Too Many Requests: slow down"
        );
        assert_eq!(err.code(), Some("rate_limited"));
    }

    #[test]
    fn foreign_body_becomes_the_message_without_a_code() {
        let e = HttpError::new(StatusCode::BAD_GATEWAY, &HeaderMap::new(), "<html>".into());
        assert_eq!(e.code, None);
        assert_eq!(e.message, "<html>");
        assert_eq!(e.retry_after, None);
    }
}
