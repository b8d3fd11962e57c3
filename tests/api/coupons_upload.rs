//! Coupon uploads: pre-made codes into the pool or tagged to customers, redemptions made
//! elsewhere, per-row error reports, no duplicates when a file is uploaded again, bad uploads
//! refused, and a file of many rows streamed and processed in bounded batches by the job.

use axum::body::Body;
use axum::http::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::coupons::{count_where, create_series, issue, redeem, refused, series_json};
use crate::helpers::{Backend, TestApp, TestResponse, request};
use crate::transactions::add_customer;

backend_tests!(
    codes_go_to_the_pool_or_to_customers,
    redemptions_made_elsewhere_are_imported_once,
    bad_uploads_are_refused,
    a_large_file_is_processed_in_batches,
    imports_and_live_redemptions_run_together,
);

const BOUNDARY: &str = "perks-test-boundary";

async fn upload(app: &TestApp, uri: &str, fields: &[(&str, &str)], file: &str) -> TestResponse {
    let mut body = String::new();
    for (name, value) in fields {
        body.push_str(&format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"coupons.csv\"\r\n\
         Content-Type: text/csv\r\n\r\n{file}\r\n--{BOUNDARY}--\r\n"
    ));
    app.send(
        request(Method::POST, uri)
            .header("authorization", app.basic())
            .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

/// Runs the coupon job until the uploads are done (bounded).
async fn run_jobs(app: &TestApp) {
    for _ in 0..100 {
        perks::jobs::coupons::run_once(&app.state, perks::db::now_millis()).await;
        let pending = count_where(
            app,
            "SELECT COUNT(*) FROM coupon_upload_jobs WHERE status IN ('STARTED', 'PROCESSING', 'UPLOADING')",
        )
        .await;
        if pending == 0 {
            return;
        }
    }
    panic!("uploads still pending after 100 runs");
}

async fn job_status(app: &TestApp, series: i64, redeem: bool) -> Value {
    let path = if redeem { "getRedeemUploadStatus" } else { "getUploadStatus" };
    let r = app.get(&format!("/coupon/api/v1/upload/{path}/{series}"), &app.basic()).await;
    r.assert_status(200);
    r.json()["result"]["uploadJobStatuses"][0].clone()
}

async fn codes_go_to_the_pool_or_to_customers(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_customer(&app, "919940000001").await;
    let series = create_series(
        &app,
        json!({"isSMSDisabled": true, "isMultipleVouchersPerUserAllowed": true}),
    )
    .await;
    let file = "code\r\nPOOL-A1\r\nPOOL-A2\r\n\r\nPOOL-A3\r\npool-a1\r\nBAD CODE\r\n";
    let r = upload(
        &app,
        &format!("/coupon/api/v1/upload/file/{series}"),
        &[("customerIdentifier", "NOT_TAGGED")],
        file,
    )
    .await;
    r.assert_status(200);
    let job = r.json()["result"].clone();
    assert_eq!(job["uploadStatus"], "STARTED", "{}", r.body);
    assert_eq!(job["totalUploadedCount"], 6);
    assert_eq!(job["couponSeriesId"], series);
    run_jobs(&app).await;
    let status = job_status(&app, series, false).await;
    assert_eq!(status["uploadStatus"], "COMPLETED", "{status}");
    assert_eq!(status["successCount"], 3);
    assert_eq!(status["errorCount"], 2);
    let url = status["errorFileUrl"].as_str().unwrap().to_string();
    let report = app.get(&url, &app.basic()).await;
    report.assert_status(200);
    assert!(report.body.starts_with("row,errorCode,errorMessage,line\n"), "{}", report.body);
    assert!(report.body.contains("5,629,") && report.body.contains("pool-a1"), "{}", report.body);
    assert!(report.body.contains("6,702,"), "{}", report.body);
    // Pool codes are handed out oldest first, and count as issued then.
    assert_eq!(issue(&app, series, "919940000001").await, "POOL-A1");
    assert_eq!(issue(&app, series, "919940000001").await, "POOL-A2");
    assert_eq!(series_json(&app, series).await["numIssued"], 2);
    // The same file again: every code exists already, nothing is duplicated.
    upload(
        &app,
        &format!("/coupon/api/v1/upload/file/{series}"),
        &[("customerIdentifier", "NOT_TAGGED")],
        file,
    )
    .await
    .assert_status(200);
    run_jobs(&app).await;
    assert_eq!(job_status(&app, series, false).await["errorCount"], 5);
    assert_eq!(count_where(&app, "SELECT COUNT(*) FROM coupons").await, 3);

    // Tagged to customers by mobile in column 0, code in column 1; maxCreate holds.
    let tagged = create_series(
        &app,
        json!({"isSMSDisabled": true, "isMultipleVouchersPerUserAllowed": true, "maxCreate": 2}),
    )
    .await;
    let file = "919940000001,TAG-1\n919940009999,TAG-2\n919940000001,TAG-3\n919940000001,TAG-4\n";
    let fields = [
        ("customerIdentifier", "MOBILE"),
        ("customerIdentifierColumn", "0"),
        ("couponCodeColumn", "1"),
    ];
    upload(&app, &format!("/coupon/api/v1/upload/file/{tagged}"), &fields, file)
        .await
        .assert_status(200);
    run_jobs(&app).await;
    let status = job_status(&app, tagged, false).await;
    assert_eq!(
        (status["successCount"].as_i64(), status["errorCount"].as_i64()),
        (Some(2), Some(2)),
        "{status}"
    );
    let report = app.get(status["errorFileUrl"].as_str().unwrap(), &app.basic()).await;
    assert!(report.body.contains("2,701,") && report.body.contains("4,722,"), "{}", report.body);
    assert_eq!(series_json(&app, tagged).await["numIssued"], 2);
    redeem(&app, "tag-1", "919940000001").await.assert_status(200);
    assert_eq!(
        count_where(&app, "SELECT COUNT(*) FROM domain_events WHERE event_type = 'coupon.issued'")
            .await,
        4
    );
}

async fn redemptions_made_elsewhere_are_imported_once(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_customer(&app, "919940000002").await;
    add_customer(&app, "919940000003").await;
    let series = create_series(
        &app,
        json!({"isSMSDisabled": true, "isMultipleVouchersPerUserAllowed": true}),
    )
    .await;
    let a = issue(&app, series, "919940000002").await;
    let b = issue(&app, series, "919940000002").await;
    let c = issue(&app, series, "919940000003").await;
    let elsewhere =
        issue(&app, create_series(&app, json!({"isSMSDisabled": true})).await, "919940000002")
            .await;
    let till = app.org.till_id;
    let at = 1_760_000_000_000_i64;
    let file = format!(
        "redeemed date,till,mobile,code,bill id,bill number,details\n\
         {at},{till},919940000002,{a},BID-1,BN-1,store 4\n\
         {at},{till},919940000002,{b},BID-2,BN-2,\n\
         {at},{till},919940000002,{c},BID-3,BN-3,\n\
         {at},424242,919940000003,{c},,,\n\
         {at},{till},919940000002,{elsewhere},,,\n\
         {at},{till},919940000002,NOPE,,,\n"
    );
    let headers = r#"{"redeemedDateInMillis": 0, "redeemedAt": 1, "mobile": 2, "couponCode": 3, "billId": 4, "billNumber": 5, "details": 6}"#;
    let fields = [
        ("customerIdentifier", "MOBILE"),
        ("couponIdentifier", "COUPON_CODE"),
        ("uploadHeaders", headers),
        ("details", "imported from the old POS"),
    ];
    let r =
        upload(&app, &format!("/coupon/api/v1/upload/redeemFile/{series}"), &fields, &file).await;
    r.assert_status(200);
    assert_eq!(r.json()["uploadRedeemedCouponStatus"], "STARTED", "{}", r.body);
    run_jobs(&app).await;
    let status = job_status(&app, series, true).await;
    assert_eq!(status["uploadRedeemedCouponStatus"], "COMPLETED");
    assert_eq!(
        (status["successCount"].as_i64(), status["errorCount"].as_i64()),
        (Some(2), Some(4)),
        "{status}"
    );
    let report = app.get(status["errorFileUrl"].as_str().unwrap(), &app.basic()).await;
    for expected in ["4,710,", "5,629,", "6,629,", "7,719,"] {
        assert!(report.body.contains(expected), "{expected}: {}", report.body);
    }
    assert_eq!(series_json(&app, series).await["numRedeemed"], 2);
    let read = app.get(&format!("/v2/coupon?couponCodes={a}"), &app.basic()).await;
    let redemption = read.json()[0]["redemptions"][0].clone();
    assert_eq!(redemption["billId"], "BID-1");
    assert_eq!(redemption["transactionNumber"], "BN-1");
    assert_eq!(redemption["tillId"], till);
    assert_eq!(redemption["redemptionTime"], "2025-10-09T08:53:20Z");
    assert_eq!(refused(&redeem(&app, &a, "919940000002").await), 711);
    // The same file again imports nothing twice.
    upload(&app, &format!("/coupon/api/v1/upload/redeemFile/{series}"), &fields, &file)
        .await
        .assert_status(200);
    run_jobs(&app).await;
    assert_eq!(job_status(&app, series, true).await["successCount"], 0);
    assert_eq!(count_where(&app, "SELECT COUNT(*) FROM coupon_redemptions").await, 2);
    // By coupon id and user id.
    let id = app.get(&format!("/v2/coupon?couponCodes={c}"), &app.basic()).await.json()[0]["id"]
        .as_i64()
        .unwrap();
    let customer =
        app.get(&format!("/v2/coupon?couponCodes={c}"), &app.basic()).await.json()[0]["issuedTo"]
            .as_i64()
            .unwrap();
    let file = format!("{customer};{id};{at};{till}").replace(';', ",");
    let fields = [
        ("customerIdentifier", "USER_ID"),
        ("couponIdentifier", "COUPON_ID"),
        (
            "uploadHeaders",
            r#"{"userId": 0, "couponId": 1, "redeemedDateInMillis": 2, "redeemedAt": 3}"#,
        ),
    ];
    upload(&app, &format!("/coupon/api/v1/upload/redeemFile/{series}"), &fields, &file)
        .await
        .assert_status(200);
    run_jobs(&app).await;
    assert_eq!(job_status(&app, series, true).await["successCount"], 1);
    assert_eq!(
        count_where(&app, "SELECT COUNT(*) FROM coupon_redemptions WHERE source = 'UPLOAD'").await,
        3
    );
}

async fn bad_uploads_are_refused(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let series = create_series(&app, json!({})).await;
    let uri = format!("/coupon/api/v1/upload/file/{series}");
    let r = upload(&app, &uri, &[], "A1\n").await;
    assert_eq!(refused(&r), 629);
    assert!(r.body.contains("customerIdentifier"), "{}", r.body);
    let r = upload(&app, &uri, &[("customerIdentifier", "PHONE")], "A1\n").await;
    assert_eq!(refused(&r), 629);
    let r = upload(&app, &uri, &[("customerIdentifier", "NOT_TAGGED")], "").await;
    assert_eq!(refused(&r), 629);
    let r = upload(&app, &uri, &[("customerIdentifier", "NOT_TAGGED")], &"X".repeat(5000)).await;
    assert_eq!(refused(&r), 629);
    let r = upload(
        &app,
        "/coupon/api/v1/upload/file/999999",
        &[("customerIdentifier", "NOT_TAGGED")],
        "A1\n",
    )
    .await;
    assert_eq!((r.status.as_u16(), r.v2_error_code()), (404, 707));
    let r = app.post_json(&uri, &app.basic(), &json!({"file": "A1"})).await;
    assert_eq!(r.status.as_u16(), 415);
    let redeem_uri = format!("/coupon/api/v1/upload/redeemFile/{series}");
    let fields = [
        ("customerIdentifier", "MOBILE"),
        ("couponIdentifier", "COUPON_CODE"),
        ("uploadHeaders", "{mobile: 0}"),
    ];
    assert_eq!(refused(&upload(&app, &redeem_uri, &fields, "1,2\n").await), 629);
    let fields = [
        ("customerIdentifier", "NOT_TAGGED"),
        ("couponIdentifier", "COUPON_CODE"),
        (
            "uploadHeaders",
            r#"{"mobile": 0, "couponCode": 1, "redeemedDateInMillis": 2, "redeemedAt": 3}"#,
        ),
    ];
    assert_eq!(refused(&upload(&app, &redeem_uri, &fields, "1,2\n").await), 629);
    // Refused uploads are failed jobs whose staged rows the job purges; nothing was issued.
    let failed =
        count_where(&app, "SELECT COUNT(*) FROM coupon_upload_jobs WHERE status = 'FAILED'").await;
    assert_eq!(failed, 6);
    for _ in 0..10 {
        perks::jobs::coupons::run_once(&app.state, perks::db::now_millis()).await;
    }
    assert_eq!(count_where(&app, "SELECT COUNT(*) FROM coupon_upload_rows").await, 0);
    assert_eq!(count_where(&app, "SELECT COUNT(*) FROM coupons").await, 0);
    let r = app.get("/coupon/api/v1/upload/getUploadStatus/999999", &app.basic()).await;
    assert_eq!(r.v2_error_code(), 707);
    assert_eq!(
        app.get("/coupon/api/v1/upload/errorFile/999999", &app.basic()).await.status.as_u16(),
        404
    );
}

async fn a_large_file_is_processed_in_batches(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let series = create_series(&app, json!({})).await;
    const ROWS: usize = 12_345;
    let mut file = String::with_capacity(ROWS * 12);
    for i in 0..ROWS {
        file.push_str(&format!("BULK{i:07}\n"));
    }
    let r = upload(
        &app,
        &format!("/coupon/api/v1/upload/file/{series}"),
        &[("customerIdentifier", "NOT_TAGGED")],
        &file,
    )
    .await;
    r.assert_status(200);
    assert_eq!(r.json()["result"]["totalUploadedCount"], ROWS as i64);
    // Two workers at once: each batch is processed under one lease only.
    let now = perks::db::now_millis();
    let (a, b) = tokio::join!(
        perks::coupons::upload::process_due(&app.state.db, now, 5),
        perks::coupons::upload::process_due(&app.state.db, now, 5),
    );
    let processed = a.unwrap().rows + b.unwrap().rows;
    let status = job_status(&app, series, false).await;
    assert_eq!(status["actualRowCount"], processed, "no row was processed twice");
    assert_eq!(status["successCount"], processed);
    assert_eq!(count_where(&app, "SELECT COUNT(*) FROM coupons").await, processed);
    run_jobs(&app).await;
    let status = job_status(&app, series, false).await;
    assert_eq!(status["successCount"], ROWS as i64, "{status}");
    assert_eq!(status["errorCount"], 0);
    assert_eq!(count_where(&app, "SELECT COUNT(*) FROM coupons").await, ROWS as i64);
}

async fn imports_and_live_redemptions_run_together(backend: Backend) {
    let Some(app) = TestApp::with_settings(backend, |s| {
        s.rate_limit.enabled = false;
        s.sqlite.busy_timeout_ms = 120_000;
        s.postgres.acquire_timeout_ms = 120_000;
    })
    .await
    else {
        return;
    };
    add_customer(&app, "919940000010").await;
    let series = create_series(
        &app,
        json!({"isSMSDisabled": true,
        "isMultipleVouchersPerUserAllowed": true, "maxRedeem": 250}),
    )
    .await;
    let body = json!({"seriesId": series, "count": 300, "customer": {"mobile": "919940000010"}});
    let r = app.post_json("/v2/coupon/issue/multiple", &app.basic(), &body).await;
    r.assert_status(200);
    let codes: Vec<String> = r.json()["coupons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap().to_string())
        .collect();
    // The file redeems the first 200 codes; live requests redeem codes 100..300 at the same time,
    // so 100 codes are wanted by both, and the series allows 250 redemptions in all.
    let till = app.org.till_id;
    let mut file = String::new();
    for (i, code) in codes[..200].iter().enumerate() {
        file.push_str(&format!(
            "919940000010,{code},{},{till}\n",
            1_760_000_000_000_i64 + i as i64
        ));
    }
    let fields = [
        ("customerIdentifier", "MOBILE"),
        ("couponIdentifier", "COUPON_CODE"),
        (
            "uploadHeaders",
            r#"{"mobile": 0, "couponCode": 1, "redeemedDateInMillis": 2, "redeemedAt": 3}"#,
        ),
    ];
    upload(&app, &format!("/coupon/api/v1/upload/redeemFile/{series}"), &fields, &file)
        .await
        .assert_status(200);
    let mut live = Vec::new();
    for code in &codes[100..] {
        let code = code.clone();
        let router = app.router.clone();
        let auth = app.basic();
        live.push(tokio::spawn(async move {
            use tower::ServiceExt;
            let body = json!({"redemptionRequestList": [{"code": code}], "user": {"mobile": "919940000010"}});
            let request = axum::http::Request::builder()
                .method("POST")
                .uri("/v2/coupon/redeem")
                .header("authorization", auth)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap();
            router.oneshot(request).await.unwrap().status().as_u16()
        }));
    }
    let job = {
        let state = app.state.clone();
        tokio::spawn(async move {
            for _ in 0..200 {
                let p = perks::coupons::upload::process_due(&state.db, perks::db::now_millis(), 2)
                    .await
                    .unwrap();
                if p.finished_jobs > 0 {
                    return;
                }
            }
            panic!("the import did not finish");
        })
    };
    let mut statuses = std::collections::BTreeMap::new();
    for h in live {
        *statuses.entry(h.await.unwrap()).or_insert(0) += 1;
    }
    job.await.unwrap();
    assert!(statuses.keys().all(|s| *s == 200 || *s == 400), "no 5xx: {statuses:?}");
    // Each code once at most, the series limit held, and the counters agree with the rows.
    let redeemed = count_where(&app, "SELECT COUNT(*) FROM coupon_redemptions").await;
    let distinct =
        count_where(&app, "SELECT COUNT(DISTINCT coupon_id) FROM coupon_redemptions").await;
    assert_eq!(redeemed, distinct, "a code redeemed twice");
    assert_eq!(redeemed, 250, "{statuses:?}");
    assert_eq!(series_json(&app, series).await["numRedeemed"], redeemed);
    let counted =
        count_where(&app, "SELECT CAST(SUM(redemption_count) AS BIGINT) FROM coupons").await;
    assert_eq!(counted, redeemed);
}
