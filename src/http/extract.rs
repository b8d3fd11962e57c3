//! Extractors that wrap axum's, so that malformed input gets our envelope with a clear message.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{ApiError, Code};

/// A JSON body (`Content-Type: application/json`), for v2 and admin endpoints.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !content_type_is(&request, "json") {
            return Err(ApiError::new(Code::UnsupportedMediaType));
        }
        let bytes = read_body(request, state).await?;
        parse_json(&bytes).map(Json)
    }
}

/// A v1.1 body: JSON, or XML when `Content-Type` says so (the XML is read into the same shape
/// as the JSON form, with repeated elements as arrays and every leaf as a string).
pub struct V1Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for V1Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let xml = content_type_is(&request, "xml");
        if !xml && !content_type_is(&request, "json") {
            return Err(ApiError::new(Code::UnsupportedMediaType));
        }
        let bytes = read_body(request, state).await?;
        if xml {
            let value = xml_to_value(&bytes)?;
            serde_json::from_value(value)
                .map(V1Body)
                .map_err(|e| ApiError::invalid(format!("Invalid XML body: {e}")))
        } else {
            parse_json(&bytes).map(V1Body)
        }
    }
}

/// Query parameters; a bad value names the parameter in a 400.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e: QueryRejection| ApiError::invalid(e.body_text()))
    }
}

/// Path parameters; a malformed id is a 400, not axum's plain-text rejection.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e: PathRejection| ApiError::invalid(e.body_text()))
    }
}

fn content_type_is(request: &Request, kind: &str) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == format!("application/{kind}")
                || mime == format!("text/{kind}")
                || mime.ends_with(&format!("+{kind}"))
        })
        .unwrap_or(false)
}

async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state).await.map_err(|e: BytesRejection| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(Code::BodyTooLarge)
        } else {
            ApiError::invalid(e.body_text())
        }
    })
}

/// Reads a JSON value already taken from a body (kept whole, say, to be stored) as `T`, with the
/// messages of [`Json`].
pub fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ApiError::invalid(format!("Invalid JSON body: {inner}"))
        } else {
            ApiError::invalid(format!("Invalid value for {path}: {inner}"))
        }
    })
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::invalid(format!("Malformed JSON body: {inner}"))
        } else if path == "." {
            ApiError::invalid(format!("Invalid JSON body: {inner}"))
        } else {
            ApiError::invalid(format!("Invalid value for {path}: {inner}"))
        }
    })
}

/// Most elements nested inside one another in an XML body; deeper documents are refused.
const XML_DEPTH_MAX: usize = 64;

/// Reads an XML document into a JSON value: `{root-name: {...}}`.
pub fn xml_to_value(bytes: &[u8]) -> Result<Value, ApiError> {
    use quick_xml::events::Event;
    let malformed =
        |e: &dyn std::fmt::Display| ApiError::invalid(format!("Malformed XML body: {e}"));
    let mut reader = quick_xml::Reader::from_reader(bytes);
    reader.config_mut().trim_text(true);
    // Each open element: its name, its children so far, and its text.
    let mut stack: Vec<(String, Map<String, Value>, String)> = Vec::new();
    let mut root: Option<(String, Value)> = None;
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf).map_err(|e| malformed(&e))? {
            Event::Start(start) => {
                if stack.len() >= XML_DEPTH_MAX {
                    return Err(ApiError::invalid("XML body is nested too deeply"));
                }
                let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
                stack.push((name, Map::new(), String::new()));
            }
            Event::Empty(empty) => {
                let name = String::from_utf8_lossy(empty.name().as_ref()).into_owned();
                match stack.last_mut() {
                    Some((_, children, _)) => insert_child(children, name, Value::Null),
                    None => root = Some((name, Value::Null)),
                }
            }
            Event::Text(text) => {
                if let Some((_, _, own)) = stack.last_mut() {
                    own.push_str(&text.unescape().map_err(|e| malformed(&e))?);
                }
            }
            Event::CData(data) => {
                if let Some((_, _, own)) = stack.last_mut() {
                    own.push_str(&String::from_utf8_lossy(&data));
                }
            }
            Event::End(_) => {
                let Some((name, children, text)) = stack.pop() else {
                    return Err(malformed(&"unbalanced end tag"));
                };
                let value =
                    if children.is_empty() { Value::String(text) } else { Value::Object(children) };
                match stack.last_mut() {
                    Some((_, parent, _)) => insert_child(parent, name, value),
                    None => root = Some((name, value)),
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    match (root, stack.is_empty()) {
        (Some((name, value)), true) => Ok(Value::Object(Map::from_iter([(name, value)]))),
        _ => Err(malformed(&"no complete root element")),
    }
}

fn insert_child(children: &mut Map<String, Value>, name: String, value: Value) {
    match children.get_mut(&name) {
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
        None => {
            children.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn xml_becomes_the_json_shape() {
        let xml = b"<root><customer><mobile>91</mobile></customer><customer><email>a@b</email></customer></root>";
        assert_eq!(
            xml_to_value(xml).unwrap(),
            json!({"root": {"customer": [{"mobile": "91"}, {"email": "a@b"}]}})
        );
    }

    #[test]
    fn malformed_xml_is_rejected() {
        assert!(xml_to_value(b"<root><a></root>").is_err());
        assert!(xml_to_value(b"").is_err());
    }
}
