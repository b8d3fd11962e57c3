//! The two response envelopes, each built in one place: v1.1 (`response.status`, JSON or XML)
//! and v2 (`data`/`createdId`/`entity`, `warnings`, `errors`, `pagination`).
//!
//! [`render_envelopes`] is the outermost layer of the API. It learns the request's flavour
//! before the handler runs, then renders whatever came back: an [`ApiError`] becomes the
//! flavour's error envelope, a [`V1Reply`] is serialised as JSON or XML, and any bare 4xx/5xx
//! from axum or tower (unknown path, wrong method, body limit, panic) is turned into an
//! envelope too, so no client ever sees a plain-text error.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, Code};

/// Which envelope family a request is answered in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// v1.1 paths; `xml` when `format=xml` or the client accepts only XML.
    V1 { xml: bool },
    /// v2 and the `/x/perks` admin API.
    V2,
    /// v3 paths (OAuth), whose error body also carries `"data": null`.
    V3,
}

impl Flavour {
    pub fn of(request: &Request) -> Flavour {
        let path = request.uri().path();
        if path.starts_with("/v1.1/") {
            let format = request
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("format=")))
                .map(str::to_ascii_lowercase);
            let xml = match format.as_deref() {
                Some("xml") => true,
                Some(_) => false,
                None => request
                    .headers()
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|a| a.contains("application/xml") && !a.contains("json")),
            };
            Flavour::V1 { xml }
        } else if path.starts_with("/v3/") {
            Flavour::V3
        } else {
            Flavour::V2
        }
    }

    /// Renders an error in this flavour's envelope.
    pub fn error_response(self, error: &ApiError) -> Response {
        let info = error.code.info();
        let status = error.status();
        let mut response = match self {
            Flavour::V1 { xml } => {
                let body = json!({"response": {"status": {
                    "success": "false", "code": info.code, "message": error.message,
                }}});
                v1_body(status, &body, xml)
            }
            Flavour::V2 | Flavour::V3 => {
                let mut body = json!({
                    "errors": [{"status": false, "code": info.code, "message": error.message}],
                    "warnings": [],
                });
                if self == Flavour::V3 {
                    body["data"] = Value::Null;
                }
                (status, axum::Json(body)).into_response()
            }
        };
        if let Some(seconds) = error.retry_after_seconds {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(Enveloped);
        response
    }
}

/// Marks a response that is already in an envelope.
#[derive(Clone, Copy, Debug)]
pub struct Enveloped;

/// The outermost API layer; see the module doc.
pub async fn render_envelopes(request: Request, next: Next) -> Response {
    let flavour = Flavour::of(&request);
    let mut response = next.run(request).await;
    if let Some(error) = response.extensions_mut().remove::<ApiError>() {
        return flavour.error_response(&error);
    }
    if let Some(reply) = response.extensions_mut().remove::<V1Reply>() {
        let xml = matches!(flavour, Flavour::V1 { xml: true });
        let mut rendered = v1_body(reply.status, &reply.body, xml);
        rendered.extensions_mut().insert(Enveloped);
        return rendered;
    }
    let status = response.status();
    if (status.is_client_error() || status.is_server_error())
        && response.extensions().get::<Enveloped>().is_none()
    {
        let code = Code::for_status(status);
        let mut error = ApiError::new(code);
        if let Some(retry) = response.headers().get(header::RETRY_AFTER) {
            error.retry_after_seconds = retry.to_str().ok().and_then(|s| s.parse().ok());
        }
        return flavour.error_response(&error);
    }
    response
}

/// A v1.1 answer; the envelope layer serialises it as JSON or XML.
#[derive(Clone, Debug)]
pub struct V1Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl V1Reply {
    /// A single-entity success: `{"response": {"status": {...200...}, <key>: <value>}}`.
    pub fn ok(key: &str, value: impl Serialize) -> Result<V1Reply, ApiError> {
        let value = serde_json::to_value(value).map_err(|e| ApiError::internal(&e))?;
        let mut response = Map::new();
        response.insert("status".into(), v1_status(200, "SUCCESS"));
        response.insert(key.into(), value);
        Ok(V1Reply { status: StatusCode::OK, body: json!({ "response": response }) })
    }

    /// A batch answer: `items` each carry their own `item_status`; the request code is 200 when
    /// all succeeded, 201 when some failed and 500 when all failed, mirrored in the HTTP status.
    pub fn batch(entities_key: &str, entity_key: &str, items: Vec<Value>) -> V1Reply {
        let succeeded = items
            .iter()
            .filter(|item| {
                matches!(
                    item.pointer("/item_status/success"),
                    Some(Value::String(s)) if s == "true"
                ) || item.pointer("/item_status/success") == Some(&Value::Bool(true))
            })
            .count();
        let (code, message, status) = if succeeded == items.len() {
            (200, "SUCCESS", StatusCode::OK)
        } else if succeeded > 0 {
            (201, "Some requests have failed due to errors", StatusCode::CREATED)
        } else {
            (500, "All requests have failed due to errors", StatusCode::INTERNAL_SERVER_ERROR)
        };
        let mut response = Map::new();
        response.insert("status".into(), v1_status(code, message));
        response.insert(entities_key.into(), json!({ entity_key: items }));
        V1Reply { status, body: json!({ "response": response }) }
    }
}

impl V1Reply {
    /// A single-entity answer that carries its own `item_status` (v1.1 reads of one customer):
    /// `{"response": {"status": ..., <key>: item}}`, request code 200 when the item succeeded and
    /// 500 when it failed, mirrored in the HTTP status.
    pub fn single(key: &str, item: Value) -> V1Reply {
        let mut reply = V1Reply::batch(key, key, vec![item]);
        if let Some(response) = reply.body.get_mut("response")
            && let Some(wrapped) = response.get_mut(key)
            && let Some(item) = wrapped.get_mut(key).and_then(|list| list.get_mut(0))
        {
            let item = item.take();
            *wrapped = item;
        }
        reply
    }
}

impl IntoResponse for V1Reply {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// The v1.1 `status` block.
pub fn v1_status(code: u32, message: &str) -> Value {
    json!({"success": if code == 200 { "true" } else { "false" }, "code": code, "message": message})
}

/// A v1.1 `item_status` block.
pub fn item_status(success: bool, code: u32, message: &str) -> Value {
    json!({"success": if success { "true" } else { "false" }, "code": code, "message": message})
}

fn v1_body(status: StatusCode, body: &Value, xml: bool) -> Response {
    if xml {
        let mut text = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        match body.as_object() {
            Some(map) => {
                for (key, value) in map {
                    write_xml(&mut text, key, value);
                }
            }
            None => write_xml(&mut text, "response", body),
        }
        (status, [(header::CONTENT_TYPE, "application/xml")], Body::from(text)).into_response()
    } else {
        (status, axum::Json(body)).into_response()
    }
}

/// Writes `value` as element `name`: arrays become repeated elements, objects nest, null is empty.
fn write_xml(out: &mut String, name: &str, value: &Value) {
    match value {
        Value::Array(items) => {
            for item in items {
                write_xml(out, name, item);
            }
        }
        Value::Object(map) => {
            out.push('<');
            out.push_str(name);
            out.push('>');
            for (key, child) in map {
                write_xml(out, key, child);
            }
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
        Value::Null => {
            out.push('<');
            out.push_str(name);
            out.push_str("/>");
        }
        Value::String(s) => push_leaf(out, name, &quick_xml::escape::escape(s.as_str())),
        Value::Bool(b) => push_leaf(out, name, if *b { "true" } else { "false" }),
        Value::Number(n) => push_leaf(out, name, &n.to_string()),
    }
}

fn push_leaf(out: &mut String, name: &str, text: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(text);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// v2 list envelope: `{"pagination": {...}, "data": [...], "warnings": [], "errors": []}`.
pub fn v2_list(data: impl Serialize, limit: i64, offset: i64, total: i64) -> Response {
    axum::Json(json!({
        "pagination": {"limit": limit, "offset": offset, "total": total},
        "data": data,
        "warnings": [],
        "errors": [],
    }))
    .into_response()
}

/// v2 create envelope: `{"createdId": id, "warnings": []}`.
pub fn v2_created(id: i64) -> Response {
    axum::Json(json!({"createdId": id, "warnings": []})).into_response()
}

/// v2 entity envelope (the Intouch-style APIs: custom and extended fields, org configs):
/// `{"entity": ..., "warnings": [], "errors": [], "success": true}`.
pub fn v2_entity(entity: Value) -> Response {
    axum::Json(json!({"entity": entity, "warnings": [], "errors": [], "success": true}))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_repeats_array_elements_and_escapes_text() {
        let mut out = String::new();
        write_xml(&mut out, "entities", &json!({"entity": [{"id": 1}, {"name": "a<b"}]}));
        assert_eq!(
            out,
            "<entities><entity><id>1</id></entity><entity><name>a&lt;b</name></entity></entities>"
        );
    }

    #[test]
    fn batch_status_reflects_item_outcomes() {
        let ok = json!({"item_status": item_status(true, 1000, "ok")});
        let bad = json!({"item_status": item_status(false, 1001, "bad")});
        assert_eq!(V1Reply::batch("a", "b", vec![ok.clone()]).status, StatusCode::OK);
        assert_eq!(V1Reply::batch("a", "b", vec![ok, bad.clone()]).status, StatusCode::CREATED);
        assert_eq!(V1Reply::batch("a", "b", vec![bad]).status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
