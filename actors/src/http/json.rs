//! The JSON body extractor of every route: [`Json<T>`].
//!
//! It reads the body within `--max-body-bytes` (413 past it, as the bytes arrive), refuses
//! other content types, names the field that is wrong (`producer_id: expected an integer id`)
//! instead of a Rust type, and refuses text that Postgres cannot hold (a NUL character, written
//! `\u0000` in JSON) anywhere in the body with 400 `validation_failed`. Routes that carry
//! producers' data as it is (arbitrary JSON, NULs included) use [`RawJson<T>`], which skips
//! that check.

use std::ops::Deref;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use nodegrid_protocol::stream::describe_json_path_error;
use serde::de::DeserializeOwned;

use crate::http::error::ApiError;

/// A JSON body of type `T`, checked at the boundary (see the module documentation).
#[derive(Debug)]
pub struct Json<T>(pub T);

/// A JSON body that may carry any text, for routes that pass producers' payloads on as they
/// are.
#[derive(Debug)]
pub struct RawJson<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Json<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> RawJson<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read_json_body(request, payload);
        Box::pin(async move {
            let bytes = body.await?;
            if let Some(offset) = find_nul(&bytes) {
                return Err(ApiError::validation(format!(
                    "the body contains a NUL character (\\u0000) at byte {offset}; text may not contain it"
                )));
            }
            parse_json_object(&bytes).map(Json)
        })
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for RawJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read_json_body(request, payload);
        Box::pin(async move { parse_json_object(&body.await?).map(RawJson) })
    }
}

/// Checks the content type, then reads the body within the configured limit.
pub fn read_json_body(
    request: &HttpRequest,
    payload: &mut Payload,
) -> LocalBoxFuture<'static, Result<web::Bytes, ApiError>> {
    let is_json = request
        .mime_type()
        .ok()
        .flatten()
        .is_some_and(|mime| mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON));
    if !is_json {
        return Box::pin(async {
            Err(ApiError::bad_request(
                "the body must be JSON (Content-Type: application/json)",
            ))
        });
    }
    let bytes = web::Bytes::from_request(request, payload);
    Box::pin(async move { bytes.await.map_err(body_error) })
}

/// Reads a JSON object body as `T`, naming the field that is wrong.
pub fn parse_json_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every body of the API is an object; serde would otherwise read a struct from an array.
    match bytes.iter().find(|byte| !byte.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(_) => return Err(ApiError::validation("the body must be a JSON object")),
        None => {
            return Err(ApiError::bad_request(
                "the body is empty; a JSON object is expected",
            ));
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let message = describe_json_path_error(&error);
        if error.inner().is_data() {
            ApiError::validation(message)
        } else {
            ApiError::bad_request(message)
        }
    })?;
    deserializer.end().map_err(|_| {
        ApiError::bad_request("not valid JSON: trailing characters after the value")
    })?;
    Ok(value)
}

/// Turns a failure to read the body into the client's error: too large, too slow, or cut off.
pub fn body_error(error: actix_web::Error) -> ApiError {
    match error.as_error::<PayloadError>() {
        Some(PayloadError::Overflow) => ApiError::payload_too_large(),
        Some(PayloadError::Io(io)) if io.kind() == std::io::ErrorKind::TimedOut => {
            ApiError::request_timeout()
        }
        Some(other) => ApiError::bad_request(format!("the body could not be read: {other}")),
        None => match error.as_response_error().status_code().as_u16() {
            413 => ApiError::payload_too_large(),
            _ => ApiError::bad_request("the body could not be read"),
        },
    }
}

/// The offset of the first `\u0000` escape inside a JSON string, if any. Raw control bytes
/// cannot appear in JSON strings, so the escape is the only way a NUL gets in.
pub fn find_nul(bytes: &[u8]) -> Option<usize> {
    let mut in_string = false;
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'"' => in_string = !in_string,
            b'\\' if in_string => {
                if bytes.get(index + 1) == Some(&b'u')
                    && bytes
                        .get(index + 2..index + 6)
                        .is_some_and(|hex| hex == b"0000")
                {
                    return Some(index);
                }
                // Skip the escaped character, so that `\"` and `\\` do not end or start
                // anything.
                index += 1;
            }
            _ => {}
        }
        index += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_escapes_are_found_only_where_they_are_nul() {
        assert_eq!(find_nul(br#"{"a":"x\u0000y"}"#), Some(7));
        assert_eq!(find_nul(br#"{"a\u0000":1}"#), Some(3));
        assert_eq!(
            find_nul(br#"{"a":"\\u0000"}"#),
            None,
            "an escaped backslash"
        );
        assert_eq!(find_nul(br#"{"a":"\u0001"}"#), None);
        assert_eq!(find_nul(br#"{"a":"\"\u0000"}"#), Some(8));
        assert_eq!(find_nul(b"{}"), None);
    }
}
