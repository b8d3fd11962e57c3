//! Customer images: upload by id and by lookup, list, serve, delete by index; every bad upload
//! and delete, body limits, audit, and org isolation.

use axum::body::Body;
use axum::http::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, TestResponse, basic_header, request};

backend_tests!(
    upload_list_serve_and_delete,
    uploads_have_their_own_body_limit,
    upload_rejects_bad_files,
    upload_rejects_bad_requests,
    delete_rejects_bad_indexes,
    lookup_upload_finds_the_customer,
    images_are_isolated_between_orgs,
);

const BOUNDARY: &str = "perks-test-boundary-7MA4YWxkTrZu0gW";
/// The image size limit of these tests (the default is 5 MiB).
const MAX: usize = 40 * 1024;

// ---------------------------------------------------------------- helpers

#[track_caller]
fn assert_v2_error(response: &TestResponse, status: u16, code: i64) {
    response.assert_status(status);
    assert_eq!(response.v2_error_code(), code, "{}", response.body);
    assert_eq!(response.json()["errors"][0]["status"], false);
}

async fn app_with_small_images(backend: Backend) -> Option<TestApp> {
    TestApp::with_settings(backend, |s| s.customer_image_max_bytes = MAX).await
}

async fn add_customer(app: &TestApp, auth: &str, mobile: &str) -> i64 {
    let body = json!({"profiles": [{"firstName": "Ana",
        "identifiers": [{"type": "mobile", "value": mobile}]}]});
    let response = app.post_json("/v2/customers", auth, &body).await;
    response.assert_status(200);
    response.json()["createdId"].as_i64().unwrap_or_else(|| panic!("{}", response.body))
}

/// A part: (name, content type, bytes).
type Part<'a> = (&'a str, &'a str, Vec<u8>);

/// A `multipart/form-data` body built by hand.
fn multipart(parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, (name, content_type, data)) in parts.iter().enumerate() {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        body.extend_from_slice(
            format!(
                "Content-Disposition: form-data; name=\"{name}\"; filename=\"photo{i}.bin\"\r\n\
                 Content-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// `size` bytes of a recognisable pattern.
fn bytes(size: usize, seed: u8) -> Vec<u8> {
    (0..size).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn file(size: usize, seed: u8) -> Part<'static> {
    ("FILE", "image/png", bytes(size, seed))
}

async fn post_raw(
    app: &TestApp,
    uri: &str,
    auth: &str,
    content_type: &str,
    body: Vec<u8>,
) -> TestResponse {
    app.send(
        request(Method::POST, uri)
            .header("authorization", auth)
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

async fn upload(app: &TestApp, uri: &str, auth: &str, parts: &[Part<'_>]) -> TestResponse {
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    post_raw(app, uri, auth, &content_type, multipart(parts)).await
}

async fn set_image(app: &TestApp, auth: &str, user: i64, parts: &[Part<'_>]) -> TestResponse {
    upload(app, &format!("/v2/customers/{user}/setImage"), auth, parts).await
}

/// The image entries of a customer.
async fn images(app: &TestApp, auth: &str, user: i64) -> Vec<Value> {
    let response = app
        .get(&format!("/v2/customers/{user}/setImage?source=INSTORE&embed=CUSTOMERIMAGE"), auth)
        .await;
    response.assert_status(200);
    let body = response.json();
    assert_eq!(body["warnings"], json!([]));
    assert_eq!(body["errors"], json!([]));
    // The shared customer object comes with the entries as `customerImage`.
    assert_eq!(body["id"], user);
    assert_eq!(body["profiles"][0]["source"], "INSTORE");
    assert_eq!(body["customerImage"], body["data"]);
    body["data"].as_array().unwrap().clone()
}

async fn delete(app: &TestApp, auth: &str, uri: &str) -> TestResponse {
    app.send(
        request(Method::DELETE, uri).header("authorization", auth).body(Body::empty()).unwrap(),
    )
    .await
}

/// A GET whose answer is read as raw bytes (images are not text).
async fn get_bytes(app: &TestApp, auth: &str, uri: &str) -> (u16, axum::http::HeaderMap, Vec<u8>) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let request =
        request(Method::GET, uri).header("authorization", auth).body(Body::empty()).unwrap();
    let response = app.router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, headers, body)
}

fn handle(entry: &Value) -> String {
    entry["file"]["fileHandle"].as_str().unwrap().to_string()
}

/// Checks an image entry's fixed fields, its name and size.
#[track_caller]
fn assert_entry(entry: &Value, org: i64, user: i64, index: usize, size: usize, message: &str) {
    assert_eq!(entry["code"], 200, "{entry}");
    assert_eq!(entry["message"], message);
    assert_eq!(entry["status"], "true");
    let file = &entry["file"];
    assert_eq!(file["acl"], "PRIVATE");
    assert_eq!(file["fileSize"], size.to_string());
    assert_eq!(file["name"], format!("{org}/{user}/{index}"));
    assert_eq!(file["namespace"], "customerImage");
    assert_eq!(file["s3Token"], "");
    assert_eq!(file["version"], -1);
    assert_eq!(file["latestVersion"], -1);
    assert!(!file["fileHandle"].as_str().unwrap().is_empty());
    let modified = file["lastModified"].as_str().unwrap();
    assert!(
        chrono::NaiveDateTime::parse_from_str(modified, "%Y-%m-%d %H:%M:%S").is_ok(),
        "{modified}"
    );
}

// ---------------------------------------------------------------- tests

async fn upload_list_serve_and_delete(backend: Backend) {
    let Some(app) = app_with_small_images(backend).await else { return };
    let auth = app.basic();
    let org = app.org.org_id;
    let user = add_customer(&app, &auth, "919800000001").await;
    assert!(images(&app, &auth, user).await.is_empty());

    // Two files at once: exactly the minimum and exactly the maximum size.
    let small = 10 * 1024;
    let response =
        set_image(&app, &auth, user, &[file(small, 1), ("FILE", "image/jpeg", bytes(MAX, 2))])
            .await;
    response.assert_status(200);
    let body = response.json();
    assert_eq!(body["warnings"], json!([]));
    assert_eq!(body["errors"], json!([]));
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_entry(&data[0], org, user, 0, small, "Successfully uploaded file");
    assert_entry(&data[1], org, user, 1, MAX, "Successfully uploaded file");

    // A third, later: its index continues.
    let response = set_image(&app, &auth, user, &[file(12_000, 3)]).await;
    response.assert_status(200);
    assert_entry(&response.json()["data"][0], org, user, 2, 12_000, "Successfully uploaded file");

    let listed = images(&app, &auth, user).await;
    assert_eq!(listed.len(), 3);
    for (i, size) in [small, MAX, 12_000].into_iter().enumerate() {
        assert_entry(&listed[i], org, user, i, size, "Success");
    }
    // The customer read embeds the same entries on request.
    let read = app.get(&format!("/v2/customers/{user}?embed=customerImage"), &auth).await;
    read.assert_status(200);
    assert_eq!(read.json()["customerImage"], json!(listed));
    assert_eq!(handle(&listed[0]), handle(&data[0]));

    // Each fileHandle serves its bytes with their content type.
    let (status, headers, served) =
        get_bytes(&app, &auth, &format!("/v2/customers/{user}/images/{}", handle(&listed[1])))
            .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "image/jpeg");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(served, bytes(MAX, 2));
    let (status, headers, served) =
        get_bytes(&app, &auth, &format!("/v2/customers/{user}/images/{}", handle(&listed[0])))
            .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(served, bytes(small, 1));
    // Unknown or malformed handles are 404.
    for bad in ["999999", "abc"] {
        assert_v2_error(
            &app.get(&format!("/v2/customers/{user}/images/{bad}"), &auth).await,
            404,
            404,
        );
    }

    // Delete indexes 0 and 2: the remaining image becomes index 0.
    let response =
        delete(&app, &auth, &format!("/v2/customers/{user}/deleteImage?image_ids=0,2")).await;
    response.assert_status(200);
    let success = json!({"code": 200, "message": "Success", "status": "true"});
    assert_eq!(
        response.json(),
        json!({"data": [success.clone(), success], "warnings": [], "errors": []})
    );
    let listed = images(&app, &auth, user).await;
    assert_eq!(listed.len(), 1);
    assert_entry(&listed[0], org, user, 0, MAX, "Success");
    assert_eq!(handle(&listed[0]), handle(&data[1]));
    assert_v2_error(
        &app.get(&format!("/v2/customers/{user}/images/{}", handle(&data[0])), &auth).await,
        404,
        404,
    );

    // Every write is audited.
    let actions: Vec<String> = app
        .audit(org, "CUSTOMER")
        .await
        .into_iter()
        .filter(|a| a.entity_id == user && a.action.contains("IMAGE"))
        .map(|a| a.action)
        .collect();
    assert_eq!(actions, ["DELETE_IMAGE", "ADD_IMAGE", "ADD_IMAGE"]);
}

async fn uploads_have_their_own_body_limit(backend: Backend) {
    // Default settings: a 1 MiB body limit elsewhere, 5 MiB per image here.
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let user = add_customer(&app, &auth, "919800000001").await;
    let big = 700 * 1024;
    let response = set_image(&app, &auth, user, &[file(big, 1), file(big, 2), file(big, 3)]).await;
    response.assert_status(200);
    assert_eq!(response.json()["data"].as_array().unwrap().len(), 3);
    // Other endpoints keep the global limit.
    let huge = json!({"orgLabels": [{"name": "x", "description": "y".repeat(2 * 1024 * 1024)}]});
    assert_v2_error(&app.post_json("/v2/organization/labels", &auth, &huge).await, 413, 413);
    // Above five largest files, the upload body itself is refused with 413.
    let app =
        TestApp::with_settings(backend, |s| s.customer_image_max_bytes = 16 * 1024).await.unwrap();
    let auth = app.basic();
    let user = add_customer(&app, &auth, "919800000001").await;
    let mut body = multipart(&[file(12 * 1024, 1)]);
    // A preamble bigger than the whole upload may be (5 × 16 KiB + overhead) before any part.
    let mut padded = vec![b'p'; 200 * 1024];
    padded.extend_from_slice(b"\r\n");
    padded.append(&mut body);
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    let response =
        post_raw(&app, &format!("/v2/customers/{user}/setImage"), &auth, &content_type, padded)
            .await;
    assert_v2_error(&response, 413, 413);
    assert!(images(&app, &auth, user).await.is_empty());
}

async fn upload_rejects_bad_files(backend: Backend) {
    let Some(app) = app_with_small_images(backend).await else { return };
    let auth = app.basic();
    let user = add_customer(&app, &auth, "919800000001").await;

    // Too small, too large (alone or beside a good file), empty.
    for parts in [
        vec![file(10 * 1024 - 1, 1)],
        vec![file(MAX + 1, 1)],
        vec![file(20_000, 1), file(MAX + 1, 2)],
        vec![file(20_000, 1), file(100, 2)],
        vec![file(0, 1)],
    ] {
        assert_v2_error(&set_image(&app, &auth, user, &parts).await, 400, 8083);
    }
    // Six files.
    let six: Vec<Part<'_>> = (0..6).map(|i| file(11_000, i)).collect();
    assert_v2_error(&set_image(&app, &auth, user, &six).await, 400, 400);
    // A part with another name, alone or after a good one.
    assert_v2_error(
        &set_image(&app, &auth, user, &[("file", "image/png", bytes(20_000, 1))]).await,
        400,
        400,
    );
    assert_v2_error(
        &set_image(&app, &auth, user, &[file(20_000, 1), ("IMAGE", "image/png", bytes(20_000, 2))])
            .await,
        400,
        400,
    );
    // No part at all.
    assert_v2_error(&set_image(&app, &auth, user, &[]).await, 400, 400);
    // Nothing was stored by any refused upload, and nothing audited.
    assert!(images(&app, &auth, user).await.is_empty());
    assert!(app.audit(app.org.org_id, "CUSTOMER").await.iter().all(|a| a.action != "ADD_IMAGE"));
}

async fn upload_rejects_bad_requests(backend: Backend) {
    let Some(app) = app_with_small_images(backend).await else { return };
    let auth = app.basic();
    let user = add_customer(&app, &auth, "919800000001").await;
    let uri = format!("/v2/customers/{user}/setImage");
    let body = multipart(&[file(20_000, 1)]);

    // Not multipart, no boundary, another boundary, truncated body.
    let response = post_raw(&app, &uri, &auth, "application/json", b"{}".to_vec()).await;
    assert_v2_error(&response, 415, 415);
    let response = post_raw(&app, &uri, &auth, "multipart/form-data", body.clone()).await;
    assert_v2_error(&response, 400, 400);
    let response =
        post_raw(&app, &uri, &auth, "multipart/form-data; boundary=other", body.clone()).await;
    assert_v2_error(&response, 400, 400);
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    let response =
        post_raw(&app, &uri, &auth, &content_type, body[..body.len() / 2].to_vec()).await;
    assert_v2_error(&response, 400, 400);
    // Unknown and malformed customers.
    assert_v2_error(&set_image(&app, &auth, user + 1000, &[file(20_000, 1)]).await, 404, 8015);
    assert_v2_error(
        &upload(&app, "/v2/customers/abc/setImage", &auth, &[file(20_000, 1)]).await,
        400,
        400,
    );
    assert_v2_error(
        &app.get(&format!("/v2/customers/{}/setImage", user + 1000), &auth).await,
        404,
        8015,
    );
    assert_v2_error(
        &app.get(&format!("/v2/customers/{user}/setImage?source=MOON"), &auth).await,
        400,
        8003,
    );
    assert_v2_error(
        &app.get(&format!("/v2/customers/{}/images/1", user + 1000), &auth).await,
        404,
        8015,
    );
    // No credentials.
    assert_v2_error(&set_image(&app, "Basic bm86bm8=", user, &[file(20_000, 1)]).await, 401, 401);
    assert!(images(&app, &auth, user).await.is_empty());
}

async fn delete_rejects_bad_indexes(backend: Backend) {
    let Some(app) = app_with_small_images(backend).await else { return };
    let auth = app.basic();
    let user = add_customer(&app, &auth, "919800000001").await;
    set_image(&app, &auth, user, &[file(11_000, 1), file(12_000, 2)]).await.assert_status(200);
    let uri = |query: &str| format!("/v2/customers/{user}/deleteImage{query}");

    for query in ["", "?image_ids=", "?image_ids=%20"] {
        assert_v2_error(&delete(&app, &auth, &uri(query)).await, 400, 8078);
    }
    for query in
        ["?image_ids=a", "?image_ids=-1", "?image_ids=0,x", "?image_ids=1.5", "?image_ids=0,,1"]
    {
        assert_v2_error(&delete(&app, &auth, &uri(query)).await, 400, 400);
    }
    // An index out of range refuses the whole delete.
    assert_v2_error(&delete(&app, &auth, &uri("?image_ids=0,2")).await, 400, 400);
    assert_eq!(images(&app, &auth, user).await.len(), 2);
    // Unknown customer.
    let response =
        delete(&app, &auth, &format!("/v2/customers/{}/deleteImage?image_ids=0", user + 1000))
            .await;
    assert_v2_error(&response, 404, 8015);
    assert!(app.audit(app.org.org_id, "CUSTOMER").await.iter().all(|a| a.action != "DELETE_IMAGE"));

    // A repeated index counts once.
    let response = delete(&app, &auth, &uri("?image_ids=1,1")).await;
    response.assert_status(200);
    assert_eq!(response.json()["data"].as_array().unwrap().len(), 1);
    let listed = images(&app, &auth, user).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["file"]["fileSize"], "11000");
}

async fn lookup_upload_finds_the_customer(backend: Backend) {
    let Some(app) = app_with_small_images(backend).await else { return };
    let auth = app.basic();
    let user = add_customer(&app, &auth, "919800000001").await;
    let lookup = "/v2/customers/lookup/setImage?source=INSTORE&identifierName=mobile&identifierValue=919800000001";
    let response = upload(&app, lookup, &auth, &[file(11_000, 1)]).await;
    response.assert_status(200);
    assert_entry(
        &response.json()["data"][0],
        app.org.org_id,
        user,
        0,
        11_000,
        "Successfully uploaded file",
    );
    assert_eq!(images(&app, &auth, user).await.len(), 1);

    let unknown = "/v2/customers/lookup/setImage?source=INSTORE&identifierName=mobile&identifierValue=919800000099";
    assert_v2_error(&upload(&app, unknown, &auth, &[file(11_000, 1)]).await, 404, 8015);
    let missing = "/v2/customers/lookup/setImage?source=INSTORE";
    assert_v2_error(&upload(&app, missing, &auth, &[file(11_000, 1)]).await, 400, 8013);
    let bad_source = "/v2/customers/lookup/setImage?source=MOON&identifierName=mobile&identifierValue=919800000001";
    assert_v2_error(&upload(&app, bad_source, &auth, &[file(11_000, 1)]).await, 400, 8003);
    // The size rules apply as on the id path.
    assert_v2_error(&upload(&app, lookup, &auth, &[file(100, 1)]).await, 400, 8083);
    assert_eq!(images(&app, &auth, user).await.len(), 1);
}

async fn images_are_isolated_between_orgs(backend: Backend) {
    let Some(app) = app_with_small_images(backend).await else { return };
    let auth = app.basic();
    let acme_user = add_customer(&app, &auth, "919800000001").await;
    let response = set_image(&app, &auth, acme_user, &[file(11_000, 1)]).await;
    response.assert_status(200);
    let acme_handle = handle(&response.json()["data"][0]);

    let beta = app.another_org("Beta").await;
    let b = basic_header(&beta.till.username, &beta.till.password);
    // Acme's customer does not exist for Beta, whatever the endpoint.
    assert_v2_error(&set_image(&app, &b, acme_user, &[file(11_000, 1)]).await, 404, 8015);
    assert_v2_error(&app.get(&format!("/v2/customers/{acme_user}/setImage"), &b).await, 404, 8015);
    assert_v2_error(
        &app.get(&format!("/v2/customers/{acme_user}/images/{acme_handle}"), &b).await,
        404,
        8015,
    );
    let response =
        delete(&app, &b, &format!("/v2/customers/{acme_user}/deleteImage?image_ids=0")).await;
    assert_v2_error(&response, 404, 8015);
    let lookup = "/v2/customers/lookup/setImage?source=INSTORE&identifierName=mobile&identifierValue=919800000001";
    assert_v2_error(&upload(&app, lookup, &b, &[file(11_000, 1)]).await, 404, 8015);

    // Beta's own customer cannot reach Acme's image by its handle.
    let beta_user = add_customer(&app, &b, "919800000001").await;
    assert_v2_error(
        &app.get(&format!("/v2/customers/{beta_user}/images/{acme_handle}"), &b).await,
        404,
        404,
    );
    assert!(images(&app, &b, beta_user).await.is_empty());
    assert_eq!(images(&app, &auth, acme_user).await.len(), 1);
    assert!(app.audit(beta.org_id, "CUSTOMER").await.iter().all(|a| !a.action.contains("IMAGE")));
}
