//! Errors as OpenAI's API writes them (`{"error": {"message", "type", "param", "code"}}`)
//! with the HTTP status that says whose fault it was, and the JSON body extractor that
//! turns malformed and oversized bodies into such errors instead of axum's plain text.

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

/// An error answered to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for a person.
    pub message: String,
    /// OpenAI's `code` (`model_not_found`, `context_length_exceeded`, ...).
    pub code: Option<&'static str>,
    /// The request field at fault.
    pub param: Option<String>,
    /// Seconds after which a retry may succeed (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), code: None, param: None, retry_after: None }
    }

    /// 400: the request cannot be read (malformed JSON, wrong types, missing fields).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 422: the request reads, but a value is out of range or the values do not go together.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// 404 for a model this server does not serve.
    pub fn unknown_model(model: &str, served: &[String]) -> Self {
        let list = if served.is_empty() { "none".to_string() } else { served.join(", ") };
        Self { code: Some("model_not_found"), param: Some("model".into()), ..Self::new(StatusCode::NOT_FOUND, format!("the model `{model}` does not exist here; this server has: {list}")) }
    }

    /// 429 with `Retry-After`: the model's queue is full.
    pub fn queue_full(kind: &str, retry_after: u64) -> Self {
        Self { code: Some("rate_limit_exceeded"), retry_after: Some(retry_after), ..Self::new(StatusCode::TOO_MANY_REQUESTS, format!("the {kind} model's queue is full; retry in {retry_after} s")) }
    }

    /// 503: the server is shutting down or the model's worker stopped.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self { retry_after: Some(1), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message) }
    }

    /// 500: a failure that is not the request's fault.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// The same error, naming the request field at fault.
    pub fn param(mut self, name: &str) -> Self {
        self.param = Some(name.into());
        self
    }

    /// The same error with OpenAI's `code`.
    pub fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// OpenAI's `type` for this status.
    fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            401 => "authentication_error",
            404 if self.code == Some("model_not_found") => "invalid_request_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            400..=499 => "invalid_request_error",
            503 => "service_unavailable",
            _ => "server_error",
        }
    }

    /// A generation's failure sorted by whose fault it is: bad values are the request's
    /// (422), a cancelled run is the client's leaving (499, never seen by it), the rest
    /// the server's (500).
    pub fn from_generation(e: &anyhow::Error) -> Self {
        if is_cancelled(e) {
            return Self::new(StatusCode::from_u16(499).expect("valid status"), "cancelled");
        }
        let invalid = e.chain().any(|c| {
            matches!(c.downcast_ref::<stipple_core::Error>(), Some(stipple_core::Error::InvalidArgument(_) | stipple_core::Error::Memory(_)))
                || matches!(
                    c.downcast_ref::<stipple_text::Error>(),
                    Some(stipple_text::Error::InvalidArgument(_) | stipple_text::Error::Infill(_) | stipple_text::Error::Template(_) | stipple_text::Error::Core(stipple_core::Error::InvalidArgument(_) | stipple_core::Error::Memory(_)))
                )
                || matches!(c.downcast_ref::<stipple_image::Error>(), Some(stipple_image::Error::InvalidArgument(_) | stipple_image::Error::Core(stipple_core::Error::InvalidArgument(_) | stipple_core::Error::Memory(_))))
                || matches!(c.downcast_ref::<stipple_audio::AudioError>(), Some(stipple_audio::AudioError::Invalid(_) | stipple_audio::AudioError::Params(_)))
        });
        if invalid { Self::invalid(format!("{e:#}")) } else { Self::internal(format!("{e:#}")) }
    }
}

/// Whether a generation stopped because its cancel token was set.
pub fn is_cancelled(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(c.downcast_ref::<stipple_core::Error>(), Some(stipple_core::Error::Cancelled))
            || matches!(c.downcast_ref::<stipple_text::Error>(), Some(stipple_text::Error::Core(stipple_core::Error::Cancelled)))
            || matches!(c.downcast_ref::<stipple_image::Error>(), Some(stipple_image::Error::Core(stipple_core::Error::Cancelled)))
            || matches!(c.downcast_ref::<stipple_audio::AudioError>(), Some(stipple_audio::AudioError::Cancelled))
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "message": self.message, "type": self.kind(), "param": self.param, "code": self.code } });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

/// A JSON body, read whatever the content type says (curl's `-d` sends a form type), with
/// OpenAI-style errors: 413 past the body limit, 400 for bad JSON or wrong fields.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|r| {
            let status = r.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(status, "the request body is larger than this server accepts (see `stipple serve --max-body`)").code("request_too_large")
            } else {
                ApiError::new(status, r.body_text())
            }
        })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize(&mut de) {
            Ok(v) => Ok(Self(v)),
            Err(e) => {
                let path = e.path().to_string();
                let err = e.into_inner();
                let message = if err.is_syntax() || err.is_eof() { format!("the body is not valid JSON: {err}") } else { format!("{err}") };
                let mut api = ApiError::bad_request(message);
                if !matches!(path.as_str(), "." | "?" | "") {
                    api = api.param(&path);
                }
                Err(api)
            }
        }
    }
}
