//! Coupon limits under concurrency, on both backends: 1,000 simultaneous redemptions of one
//! single-use code (exactly one succeeds), `maxRedeem` and the per-customer redemption limit over
//! many codes at once, and `maxCreate` / `maxVouchersPerUser` over simultaneous issues.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::coupons::{count_where, create_series, issue, series_json};
use crate::helpers::{Backend, TestApp};
use crate::transactions::add_customer;

backend_tests!(
    a_thousand_redemptions_of_one_code_succeed_once,
    max_redeem_holds_over_many_codes_at_once,
    the_per_customer_limit_holds_at_once,
    issues_never_pass_max_create_or_max_vouchers_per_user,
);

/// An app whose pools wait long enough for a thousand requests queued at once, without the
/// per-minute rate limit.
async fn app(backend: Backend) -> Option<TestApp> {
    TestApp::with_settings(backend, |s| {
        s.rate_limit.enabled = false;
        s.sqlite.busy_timeout_ms = 120_000;
        s.postgres.acquire_timeout_ms = 120_000;
    })
    .await
}

/// Sends `bodies` to `uri` all at once; each answer's HTTP status and v2 error code (0 on success).
async fn fire(app: &TestApp, uri: &str, bodies: Vec<Value>) -> Vec<(u16, i64)> {
    let mut handles = Vec::with_capacity(bodies.len());
    for body in bodies {
        let router = app.router.clone();
        let auth = app.basic();
        let uri = uri.to_string();
        handles.push(tokio::spawn(async move {
            use http_body_util::BodyExt;
            use tower::ServiceExt;
            let request = axum::http::Request::builder()
                .method("POST")
                .uri(uri)
                .header("authorization", auth)
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body.to_string()))
                .unwrap();
            let response = router.oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            (status, json["errors"][0]["code"].as_i64().unwrap_or(0))
        }));
    }
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

fn tally(results: &[(u16, i64)]) -> std::collections::BTreeMap<(u16, i64), usize> {
    let mut map = std::collections::BTreeMap::new();
    for r in results {
        *map.entry(*r).or_default() += 1;
    }
    map
}

fn redeem_body(code: &str, mobile: &str) -> Value {
    json!({"redemptionRequestList": [{"code": code}], "user": {"mobile": mobile}, "billAmount": 100})
}

/// `count` codes of `series` issued to the customer at once.
async fn issue_many(app: &TestApp, series: i64, mobile: &str, count: i64) -> Vec<String> {
    let body = json!({"seriesId": series, "count": count, "customer": {"mobile": mobile}});
    let r = app.post_json("/v2/coupon/issue/multiple", &app.basic(), &body).await;
    r.assert_status(200);
    r.json()["coupons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap().to_string())
        .collect()
}

async fn a_thousand_redemptions_of_one_code_succeed_once(backend: Backend) {
    let Some(app) = app(backend).await else { return };
    add_customer(&app, "919910000001").await;
    let series = create_series(&app, json!({"isSMSDisabled": true})).await;
    let code = issue(&app, series, "919910000001").await;
    let bodies = (0..1000).map(|_| redeem_body(&code, "919910000001")).collect();
    let results = tally(&fire(&app, "/v2/coupon/redeem", bodies).await);
    assert_eq!(results.get(&(200, 0)), Some(&1), "{results:?}");
    assert_eq!(results.get(&(400, 711)), Some(&999), "{results:?}");
    assert_eq!(count_where(&app, "SELECT COUNT(*) FROM coupon_redemptions").await, 1);
    assert_eq!(series_json(&app, series).await["numRedeemed"], 1);
    assert_eq!(
        count_where(&app, "SELECT redemption_count FROM coupons").await,
        1,
        "the coupon's own count"
    );
}

async fn max_redeem_holds_over_many_codes_at_once(backend: Backend) {
    let Some(app) = app(backend).await else { return };
    add_customer(&app, "919910000002").await;
    let series = create_series(
        &app,
        json!({"isSMSDisabled": true, "isMultipleVouchersPerUserAllowed": true, "maxRedeem": 25}),
    )
    .await;
    let codes = issue_many(&app, series, "919910000002", 60).await;
    let bodies = codes.iter().map(|c| redeem_body(c, "919910000002")).collect();
    let results = tally(&fire(&app, "/v2/coupon/redeem", bodies).await);
    assert_eq!(results.get(&(200, 0)), Some(&25), "{results:?}");
    assert_eq!(results.get(&(400, 714)), Some(&35), "{results:?}");
    assert_eq!(series_json(&app, series).await["numRedeemed"], 25);
    assert_eq!(count_where(&app, "SELECT COUNT(*) FROM coupon_redemptions").await, 25);
    assert_eq!(
        count_where(&app, "SELECT COUNT(*) FROM coupons WHERE redemption_count > 0").await,
        25,
        "refused redemptions left nothing behind"
    );
}

async fn the_per_customer_limit_holds_at_once(backend: Backend) {
    let Some(app) = app(backend).await else { return };
    add_customer(&app, "919910000003").await;
    let series = create_series(
        &app,
        json!({"isSMSDisabled": true, "isMultipleVouchersPerUserAllowed": true,
            "maxRedemptionsInSeriesPerUser": 3}),
    )
    .await;
    let codes = issue_many(&app, series, "919910000003", 40).await;
    let bodies = codes.iter().map(|c| redeem_body(c, "919910000003")).collect();
    let results = tally(&fire(&app, "/v2/coupon/redeem", bodies).await);
    assert_eq!(results.get(&(200, 0)), Some(&3), "{results:?}");
    assert_eq!(results.get(&(400, 723)), Some(&37), "{results:?}");
    // A generic multi-use code: one customer redeeming it many times at once is held to the
    // per-code limit too.
    let generic = create_series(
        &app,
        json!({"isSMSDisabled": true, "anyUser": true, "isMultipleUseAllowed": true,
            "redemptionPerCouponMaxLimit": 4, "sameUserMultipleRedeem": true}),
    )
    .await;
    let code = issue(&app, generic, "919910000003").await;
    let bodies = (0..50).map(|_| redeem_body(&code, "919910000003")).collect();
    let results = tally(&fire(&app, "/v2/coupon/redeem", bodies).await);
    assert_eq!(results.get(&(200, 0)), Some(&4), "{results:?}");
    assert_eq!(results.get(&(400, 711)), Some(&46), "{results:?}");
}

async fn issues_never_pass_max_create_or_max_vouchers_per_user(backend: Backend) {
    let Some(app) = app(backend).await else { return };
    add_customer(&app, "919910000004").await;
    add_customer(&app, "919910000005").await;
    let series = create_series(
        &app,
        json!({"isSMSDisabled": true, "isMultipleVouchersPerUserAllowed": true, "maxCreate": 30}),
    )
    .await;
    let bodies: Vec<Value> = (0..100)
        .map(|i| {
            let mobile = if i % 2 == 0 { "919910000004" } else { "919910000005" };
            json!({"seriesId": series, "customer": {"mobile": mobile}})
        })
        .collect();
    let results = tally(&fire(&app, "/v2/coupon/issue", bodies).await);
    assert_eq!(results.get(&(200, 0)), Some(&30), "{results:?}");
    assert_eq!(results.get(&(400, 722)), Some(&70), "{results:?}");
    assert_eq!(series_json(&app, series).await["numIssued"], 30);
    let issued = format!("SELECT COUNT(*) FROM coupons WHERE series_id = {series}");
    assert_eq!(count_where(&app, &issued).await, 30);

    let per_user = create_series(
        &app,
        json!({"isSMSDisabled": true, "isMultipleVouchersPerUserAllowed": true,
            "maxVouchersPerUser": 5}),
    )
    .await;
    let bodies = (0..50)
        .map(|_| json!({"seriesId": per_user, "customer": {"mobile": "919910000004"}}))
        .collect();
    let results = tally(&fire(&app, "/v2/coupon/issue", bodies).await);
    assert_eq!(results.get(&(200, 0)), Some(&5), "{results:?}");
    assert_eq!(results.get(&(400, 722)), Some(&45), "{results:?}");
    let held = format!("SELECT COUNT(*) FROM coupons WHERE series_id = {per_user}");
    assert_eq!(count_where(&app, &held).await, 5);
}
