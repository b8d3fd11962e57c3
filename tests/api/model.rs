//! Model-based state-machine test: random sequences of bills, returns, redemptions, reversals,
//! transfers, coupon actions and clock jumps, run against the server's service layer and an
//! independent in-memory model, compared after every step, on both backends.
//!
//! Each case sets up one org with a program (a tenth of the bill amount as points, 50 points on
//! registration, points expiring at the end of the third local day after the award, no
//! validation code), a coupon series with limits (at most six coupons issued, four redeemed, two
//! held per customer, one redemption per code, coupons expiring three days after issue) and
//! three customers. It then applies up to 30 random operations, and after every one compares
//! with the model: each customer's balance as `GET /v2/customers/{id}/points/balance` reports
//! it and every balance column of the account; every lot (points left, expiry, source, award
//! time); every coupon (status, redemptions, expiry, whether redeemable now) and the series
//! counters; and `ledger::verify` must find nothing.
//!
//! **Time.** The HTTP handlers read the wall clock (`db::now_millis`) and a bill's points are
//! awarded at the time it is processed, not at its billing date, so backdating bills would not
//! move the lots' expiry. The writes therefore go through the service functions the handlers
//! call (`transactions::service::add`, `points::redemption::{redeem, reverse}`,
//! `points::transfer::transfer`, `coupons::service::{issue, redeem, revoke, reactivate}`), each
//! given the test's clock, which starts at 2026-01-01 and only moves forward by clock jumps; the
//! expiry job is `ledger::process_due_lots` at that clock. Reads go through the HTTP API (the
//! balance) or the store. The registration award is made at the wall clock by the registration
//! API; the model reads it from the store at the start of the case.
//!
//! Cases: `PERKS_MODEL_CASES` (default 12 per backend; e.g. `PERKS_MODEL_CASES=500` for a long
//! run). A failure shrinks to a minimal sequence of operations, printed with `Debug`.

use perks::auth::model::{Actor, Permissions, Principal};
use perks::coupons::service::{self as coupons, CodeRef, CustomerRef, IssueContext, RedeemContext};
use perks::org::model::{OrgId, StoreId, TillId};
use perks::points::ledger;
use perks::points::model::{Balances, Fixed};
use perks::points::redemption::{self, PointsError, Redeem};
use perks::points::store::{self as points_store, LotRow};
use perks::points::transfer::{self, TransferError, TransferRequest};
use perks::programs::engine::CompiledProgram;
use perks::transactions::model::{BillInput, ReturnType, TransactionError, TransactionType};
use perks::transactions::service::{self as bills, AddRequest, Evaluation};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use serde_json::{Map, Value, json};

use crate::backend_tests;
use crate::coupons::create_series;
use crate::helpers::{Backend, TestApp, postgres_url};
use crate::transactions::add_customer;

backend_tests!(the_server_matches_the_model_over_random_operations);

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// 2026-01-01T00:00:00Z: where the test's clock starts in each case.
const START: i64 = 1_767_225_600_000;
/// Asia/Kolkata, the org's zone: +05:30.
const ZONE_OFFSET: i64 = 19_800_000;
/// Fixed units (ten-thousandths) per point.
const POINT: i64 = 10_000;
const CUSTOMERS: usize = 3;
/// Days after the award day at whose local end points (and coupons) expire.
const EXPIRY_DAYS: i64 = 3;
const REGISTRATION_POINTS: i64 = 50;
const MAX_ISSUED: i64 = 6;
const MAX_REDEEMED: i64 = 4;
const MAX_HELD: i64 = 2;
/// Rows per `process_due_lots` call: small, so that runs take several batches.
const DUE_BATCH: i64 = 3;

fn cases() -> u32 {
    std::env::var("PERKS_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(12)
}

/// The last millisecond of the local day `days` after the local day of `at`: the program's
/// rolling expiry and the series' `DAYS` coupon expiry, written again.
fn end_of_day_after(at: i64, days: i64) -> i64 {
    let day = (at + ZONE_OFFSET).div_euclid(DAY);
    (day + days + 1) * DAY - ZONE_OFFSET - 1
}

fn program_doc() -> Value {
    json!({"name": "Default", "default": true, "tiers": [{"name": "Base"}],
        "earn": [{"name": "base", "on": "transaction", "points": "bill.amount * 0.1"},
                 {"name": "welcome", "on": "registration", "points": REGISTRATION_POINTS.to_string()}],
        "expiry": {"type": "rolling", "days": EXPIRY_DAYS},
        "redemption": {"pointValue": 1, "validationCode": "never"}})
}

// ------------------------------------------------------------------------------- operations

/// One step of a case. Customers are indexes 0..3; bills, redemptions and coupons are picked
/// among those made so far (`Index`), and the step is skipped when there are none.
#[derive(Clone, Debug)]
enum Op {
    /// A sale of `amount` (whole currency units), earning a tenth of it.
    Bill {
        who: usize,
        amount: i64,
    },
    /// An AMOUNT return of `percent` of what is left of a sale (over 100: more than is left).
    ReturnAmount {
        bill: Index,
        percent: i64,
    },
    ReturnFull {
        bill: Index,
    },
    /// A redemption of whole points.
    Redeem {
        who: usize,
        points: i64,
    },
    /// A reversal of `percent` of what is left of a redemption (None: all of it).
    Reverse {
        redemption: Index,
        percent: Option<i64>,
    },
    Transfer {
        from: usize,
        to: usize,
        points: i64,
    },
    IssueCoupon {
        who: usize,
    },
    RedeemCoupon {
        coupon: Index,
    },
    RevokeCoupon {
        coupon: Index,
    },
    ReactivateCoupon {
        coupon: Index,
    },
    /// The clock moves `hours` forward; then, with `run_expiry`, the expiry job runs.
    Jump {
        hours: i64,
        run_expiry: bool,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let who = 0..CUSTOMERS;
    prop_oneof![
        4 => (who.clone(), 10i64..=600).prop_map(|(who, amount)| Op::Bill { who, amount }),
        2 => (any::<Index>(), 1i64..=120)
            .prop_map(|(bill, percent)| Op::ReturnAmount { bill, percent }),
        1 => any::<Index>().prop_map(|bill| Op::ReturnFull { bill }),
        3 => (who.clone(), 1i64..=80).prop_map(|(who, points)| Op::Redeem { who, points }),
        2 => (any::<Index>(), prop::option::weighted(0.6, 1i64..=100))
            .prop_map(|(redemption, percent)| Op::Reverse { redemption, percent }),
        2 => (who.clone(), 1..CUSTOMERS, 1i64..=30).prop_map(|(from, step, points)| Op::Transfer {
            from,
            to: (from + step) % CUSTOMERS,
            points,
        }),
        2 => who.clone().prop_map(|who| Op::IssueCoupon { who }),
        2 => any::<Index>().prop_map(|coupon| Op::RedeemCoupon { coupon }),
        1 => any::<Index>().prop_map(|coupon| Op::RevokeCoupon { coupon }),
        1 => any::<Index>().prop_map(|coupon| Op::ReactivateCoupon { coupon }),
        3 => (0i64..=60, any::<bool>())
            .prop_map(|(hours, run_expiry)| Op::Jump { hours, run_expiry }),
    ]
}

fn ops_strategy() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op_strategy(), 1..=30)
}

// ------------------------------------------------------------------------------------ model

/// A lot as the model sees it (all lots here are regular: the program promises nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Lot {
    id: i64,
    customer: i64,
    source: String,
    awarded: i64,
    remaining: i64,
    awarded_at: i64,
    expires_at: Option<i64>,
}

impl Lot {
    fn from_row(row: &LotRow) -> Lot {
        Lot {
            id: row.id,
            customer: row.customer_id,
            source: row.source.clone(),
            awarded: row.awarded,
            remaining: row.remaining,
            awarded_at: row.awarded_at,
            expires_at: row.expires_at,
        }
    }

    fn valid(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }

    fn spendable(&self, now: i64) -> bool {
        self.remaining > 0 && self.valid(now)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Returned {
    Nothing,
    Part,
    Full,
}

#[derive(Clone, Debug)]
struct Sale {
    id: i64,
    number: String,
    customer: i64,
    amount: i64,
    returned_amount: i64,
    returned: Returned,
    lot: Option<i64>,
    awarded: i64,
    /// What returns asked back from the lot so far (taken or forgiven).
    reversed: i64,
}

#[derive(Clone, Debug)]
struct Redemption {
    id: i64,
    customer: i64,
    points: i64,
    /// Points of it reversed so far (restored or lapsed).
    claimed: i64,
    /// What the spend took from each lot.
    taken: Vec<(i64, i64)>,
    /// What reversals took care of per lot.
    handled: Vec<(i64, i64)>,
}

#[derive(Clone, Debug)]
struct Coupon {
    id: i64,
    code: String,
    customer: i64,
    expires_at: i64,
    revoked: bool,
    redemptions: i64,
}

impl Coupon {
    fn expired(&self, now: i64) -> bool {
        self.expires_at <= now
    }
}

/// The rules written again, as plainly as possible.
#[derive(Clone, Debug, Default)]
struct Model {
    lots: Vec<Lot>,
    balances: std::collections::HashMap<i64, Balances>,
    sales: Vec<Sale>,
    redemptions: Vec<Redemption>,
    coupons: Vec<Coupon>,
    issued: i64,
    redeemed: i64,
}

impl Model {
    fn balance(&mut self, customer: i64) -> &mut Balances {
        self.balances.entry(customer).or_default()
    }

    fn lot(&mut self, id: i64) -> &mut Lot {
        self.lots.iter_mut().find(|l| l.id == id).expect("a lot the model knows")
    }

    /// Expires what lapsed by `now` (of one customer, or everyone's).
    fn expire(&mut self, customer: Option<i64>, now: i64) {
        for lot in self.lots.iter_mut() {
            if customer.is_some_and(|c| c != lot.customer) || lot.remaining <= 0 || lot.valid(now) {
                continue;
            }
            let points = lot.remaining;
            lot.remaining = 0;
            let b = self.balances.entry(lot.customer).or_default();
            b.current -= points;
            b.expired += points;
        }
    }

    /// Up to `wanted` from the spendable lots accepted by `accept`, soonest expiry first
    /// (never-expiring last), then oldest, then by id.
    fn plan_fefo(
        &self,
        customer: i64,
        now: i64,
        wanted: i64,
        accept: impl Fn(&Lot) -> bool,
    ) -> Vec<(i64, i64)> {
        let mut lots: Vec<&Lot> = self
            .lots
            .iter()
            .filter(|l| l.customer == customer && l.spendable(now) && accept(l))
            .collect();
        lots.sort_by_key(|l| (l.expires_at.is_none(), l.expires_at, l.awarded_at, l.id));
        let mut left = wanted;
        let mut plan = Vec::new();
        for lot in lots {
            if left <= 0 {
                break;
            }
            let take = lot.remaining.min(left);
            plan.push((lot.id, take));
            left -= take;
        }
        plan
    }

    /// A return's take-back of `amount` from the sale's lot: what the lot cannot give comes
    /// from the other spendable lots while it is valid, is forgiven once it has expired, and
    /// what nothing covers is forgiven (the program allows no negative balance).
    fn take_back(&mut self, customer: i64, now: i64, lot_id: i64, amount: i64) {
        let lot = self.lots.iter().find(|l| l.id == lot_id).expect("the sale's lot");
        let valid = lot.valid(now);
        let take = if valid { lot.remaining.max(0).min(amount) } else { 0 };
        let mut moves = vec![(lot_id, take)];
        if valid && amount > take {
            moves.extend(self.plan_fefo(customer, now, amount - take, |l| l.id != lot_id));
        }
        let total: i64 = moves.iter().map(|(_, t)| t).sum();
        if total > 0 {
            for (id, t) in moves {
                self.lot(id).remaining -= t;
            }
            let b = self.balance(customer);
            b.current -= total;
            b.returned += total;
            b.lifetime -= total;
        }
    }
}

// ------------------------------------------------------------------------------------ world

/// One case's app, clock and model.
struct World {
    app: TestApp,
    org: OrgId,
    principal: Principal,
    program: CompiledProgram,
    series: i64,
    customers: Vec<i64>,
    now: i64,
    model: Model,
    bills: i64,
}

fn refused<E: std::fmt::Debug>(what: &str, result: &Result<impl std::fmt::Debug, E>) -> String {
    format!("{what}: the server answered {result:?}")
}

impl World {
    async fn new(backend: Backend) -> World {
        let app = TestApp::new(backend).await.expect("a backend");
        let org = OrgId(app.org.org_id);
        let doc = perks::programs::service::parse_document(
            &program_doc().to_string(),
            perks::programs::service::DocumentFormat::Json,
        )
        .unwrap();
        perks::programs::service::save_program(
            &app.state.db,
            &app.state.programs,
            org,
            None,
            perks::programs::service::SaveTarget::ByName,
            doc,
        )
        .await
        .unwrap();
        let config = json!({"keyName": "ALLOW_POINTS_TRANSFER", "value": "true"});
        app.post_json("/v2/organization/configs", &app.admin(), &config).await.assert_status(200);
        let series = create_series(
            &app,
            json!({"maxCreate": MAX_ISSUED, "maxRedeem": MAX_REDEEMED,
                "isMultipleVouchersPerUserAllowed": true, "maxVouchersPerUser": MAX_HELD,
                "isMultipleUseAllowed": false, "expiryStrategyType": "DAYS",
                "expiryStrategyValue": EXPIRY_DAYS, "isSMSDisabled": true}),
        )
        .await;
        {
            // The series must be what the model assumes (a misspelt key would be ignored).
            let mut conn = app.state.db.read().await.unwrap();
            let s = coupons::load_series(&mut conn, org, series).await.unwrap();
            let c = &s.config;
            assert_eq!((s.row.max_create, s.row.max_redeem), (MAX_ISSUED, MAX_REDEEMED));
            assert!(c.multiple_vouchers_per_user_allowed && !c.multiple_use_allowed);
            assert!(c.sms_disabled && !c.same_user_multiple_redeem);
            assert_eq!((c.max_vouchers_per_user, c.expiry_strategy_value), (MAX_HELD, EXPIRY_DAYS));
            assert_eq!(c.redemptions_per_code(), Some(1));
            assert!(c.redemption_valid_from.is_none() && c.min_days_between_redemption <= 0);
            assert!(c.max_redemptions_in_series_per_user < 0 && c.min_days_between_vouchers <= 0);
        }
        let mut customers = Vec::new();
        for i in 0..CUSTOMERS {
            customers.push(add_customer(&app, &format!("91984520000{i}")).await);
        }
        let principal = Principal {
            org,
            actor: Actor::Till { id: TillId(app.org.till_id), code: app.org.till.username.clone() },
            store: Some(StoreId(app.org.store_id)),
            till: Some(TillId(app.org.till_id)),
            permissions: Permissions::pos(),
            request_id: None,
        };
        let program = {
            let mut conn = app.state.db.read().await.unwrap();
            perks::programs::service::program_for_store(
                &app.state.programs,
                &mut conn,
                org,
                app.org.store_id,
            )
            .await
            .unwrap()
        };
        // Whatever registration did (the welcome award, at the wall clock) is the model's start.
        let mut model = Model::default();
        let mut conn = app.state.db.read().await.unwrap();
        for &customer in &customers {
            for row in lots_of(&mut conn, org, customer).await {
                model.lots.push(Lot::from_row(&row));
            }
            if let Some(account) =
                points_store::lock_account(&mut conn, org, customer, program.id.0).await.unwrap()
            {
                model.balances.insert(customer, account.balances());
            }
        }
        drop(conn);
        World { app, org, principal, program, series, customers, now: START, model, bills: 0 }
    }

    /// The lots the server made since the model last looked, which must be the model's
    /// `expected` new lots (ids unknown yet) in order; the model takes them with their ids.
    async fn adopt_new_lots(&mut self, expected: Vec<Lot>) -> Result<Vec<i64>, TestCaseError> {
        let known = self.model.lots.iter().map(|l| l.id).max().unwrap_or(0);
        let mut fresh = Vec::new();
        let mut conn = self.app.state.db.read().await.unwrap();
        for &customer in &self.customers {
            for row in lots_of(&mut conn, self.org, customer).await {
                if row.id > known {
                    fresh.push(Lot::from_row(&row));
                }
            }
        }
        fresh.sort_by_key(|l| l.id);
        let without_ids: Vec<Lot> = fresh.iter().map(|l| Lot { id: 0, ..l.clone() }).collect();
        prop_assert_eq!(&without_ids, &expected, "new lots");
        let ids: Vec<i64> = fresh.iter().map(|l| l.id).collect();
        self.model.lots.extend(fresh);
        Ok(ids)
    }

    fn new_lot(&self, customer: i64, source: &str, points: i64, expires_at: Option<i64>) -> Lot {
        Lot {
            id: 0,
            customer,
            source: source.into(),
            awarded: points,
            remaining: points,
            awarded_at: self.now,
            expires_at,
        }
    }

    fn bill_input(&mut self, kind: TransactionType, number: String, amount: i64) -> BillInput {
        BillInput {
            kind,
            bill_number: number,
            billing_at: self.now,
            billing_offset: "+05:30".into(),
            amount: Fixed(amount * POINT),
            gross_amount: Fixed(amount * POINT),
            discount: Fixed::ZERO,
            note: String::new(),
            delivery_status: String::new(),
            outlier_status: "NORMAL".into(),
            not_interested_reason: String::new(),
            return_type: None,
            parent_id: None,
            purchase_at: None,
            parent_bill_number: None,
            payment_modes: Value::Array(Vec::new()),
            extended_fields: Map::new(),
            custom_fields: Map::new(),
            line_items: Vec::new(),
            currency_code: None,
            local_amount: None,
        }
    }

    async fn add_bill(
        &self,
        input: BillInput,
        customer: i64,
    ) -> Result<bills::AddOutcome, TransactionError> {
        let request = AddRequest {
            input,
            customer: Some(customer),
            source: "INSTORE".into(),
            account_id: String::new(),
            evaluation: Evaluation::Inline,
            api_version: "v2",
        };
        bills::add(&self.app.state.db, &self.app.state.programs, &self.principal, request, self.now)
            .await
    }

    async fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let now = self.now;
        match op {
            Op::Bill { who, amount } => {
                let customer = self.customers[*who];
                self.bills += 1;
                let number = format!("B{}", self.bills);
                let input = self.bill_input(TransactionType::Regular, number.clone(), *amount);
                let outcome = self.add_bill(input, customer).await;
                let outcome = outcome.map_err(|e| TestCaseError::fail(format!("bill: {e:?}")))?;
                let points = amount * POINT / 10;
                self.model.expire(Some(customer), now);
                let lot = self.new_lot(customer, "TRANSACTION", points, None);
                let lot = Lot { expires_at: Some(end_of_day_after(now, EXPIRY_DAYS)), ..lot };
                let ids = self.adopt_new_lots(vec![lot]).await?;
                let b = self.model.balance(customer);
                b.current += points;
                b.lifetime += points;
                self.model.sales.push(Sale {
                    id: outcome.transaction.id,
                    number,
                    customer,
                    amount: *amount,
                    returned_amount: 0,
                    returned: Returned::Nothing,
                    lot: ids.first().copied(),
                    awarded: points,
                    reversed: 0,
                });
            }
            Op::ReturnAmount { bill, percent } => {
                if self.model.sales.is_empty() {
                    return Ok(());
                }
                let i = bill.index(self.model.sales.len());
                let sale = self.model.sales[i].clone();
                let left = sale.amount - sale.returned_amount;
                let amount = (left * percent / 100).max(1);
                let expected = match sale.returned {
                    Returned::Full => Some(633),
                    _ if amount > left => Some(630),
                    _ => None,
                };
                let mut input =
                    self.bill_input(TransactionType::Return, sale.number.clone(), amount);
                input.return_type = Some(ReturnType::Amount);
                input.parent_id = Some(sale.id);
                let result = self.add_bill(input, sale.customer).await;
                self.check_return(&result, expected, "amount return")?;
                if expected.is_none() {
                    let after = sale.returned_amount + amount;
                    // The lot gives back its share of everything returned so far (exact here:
                    // a tenth of the amount), less what earlier returns asked.
                    let target = sale.awarded * after / sale.amount;
                    self.finish_return(i, after, target).await;
                }
            }
            Op::ReturnFull { bill } => {
                if self.model.sales.is_empty() {
                    return Ok(());
                }
                let i = bill.index(self.model.sales.len());
                let sale = self.model.sales[i].clone();
                let expected = match sale.returned {
                    Returned::Full => Some(633),
                    Returned::Part => Some(639),
                    Returned::Nothing => None,
                };
                let mut input = self.bill_input(TransactionType::Return, sale.number.clone(), 0);
                input.return_type = Some(ReturnType::Full);
                input.parent_id = Some(sale.id);
                let result = self.add_bill(input, sale.customer).await;
                self.check_return(&result, expected, "full return")?;
                if expected.is_none() {
                    self.finish_return(i, sale.amount, sale.awarded).await;
                }
            }
            Op::Redeem { who, points } => {
                let customer = self.customers[*who];
                let points = points * POINT;
                let request = Redeem {
                    customer,
                    program: &self.program,
                    points: Fixed(points),
                    validation_code: None,
                    skip_validation: true,
                    code_if_given: false,
                    bill_number: "R",
                    external_reference: "",
                    notes: "model",
                    till: Some(self.app.org.till_id),
                    commit: true,
                };
                let result = redemption::redeem(
                    &self.app.state.db,
                    Some(&self.principal),
                    self.org,
                    &request,
                    now,
                )
                .await;
                // A refusal rolls back everything, the expiry pass included.
                let mut after = self.model.clone();
                after.expire(Some(customer), now);
                let current = after.balance(customer).current;
                match result {
                    Ok(done) if current >= points => {
                        let plan = after.plan_fefo(customer, now, points, |_| true);
                        for &(id, take) in &plan {
                            after.lot(id).remaining -= take;
                        }
                        let b = after.balance(customer);
                        b.current -= points;
                        b.redeemed += points;
                        let id = done.redemption_id.ok_or_else(|| TestCaseError::fail("no id"))?;
                        after.redemptions.push(Redemption {
                            id,
                            customer,
                            points,
                            claimed: 0,
                            taken: plan,
                            handled: Vec::new(),
                        });
                        self.model = after;
                    }
                    Err(PointsError::MoreThanAvailable { .. }) if current < points => {}
                    other => {
                        return Err(TestCaseError::fail(format!(
                            "redemption of {points} with {current} current: {other:?}"
                        )));
                    }
                }
            }
            Op::Reverse { redemption: pick, percent } => {
                if self.model.redemptions.is_empty() {
                    return Ok(());
                }
                let i = pick.index(self.model.redemptions.len());
                let r = self.model.redemptions[i].clone();
                let left = r.points - r.claimed;
                let wanted = percent.map(|p| (left * p / 100 / POINT * POINT).max(POINT));
                let result = redemption::reverse(
                    &self.app.state.db,
                    Some(&self.principal),
                    self.org,
                    r.id,
                    Some(r.customer),
                    wanted.map(Fixed),
                    now,
                )
                .await;
                let wanted = wanted.unwrap_or(left);
                match result {
                    Ok(done) if left > 0 && wanted <= left => {
                        let mut after = self.model.clone();
                        after.expire(Some(r.customer), now);
                        let (restored, lapsed) = after.reverse(i, wanted, now);
                        prop_assert_eq!(done.restored, Fixed(restored), "restored");
                        prop_assert_eq!(done.lapsed, Fixed(lapsed), "lapsed");
                        self.model = after;
                    }
                    Err(PointsError::AlreadyReversed) if left <= 0 => {}
                    Err(PointsError::MoreThanLeftToReverse { .. }) if wanted > left => {}
                    other => {
                        return Err(TestCaseError::fail(format!(
                            "reversal of {wanted} of {r:?}: {other:?}"
                        )));
                    }
                }
            }
            Op::Transfer { from, to, points } => {
                let (from, to) = (self.customers[*from], self.customers[*to]);
                let points = points * POINT;
                let request = TransferRequest {
                    from,
                    to,
                    program: &self.program,
                    points: Fixed(points),
                    code: None,
                    notes: "model",
                    till: Some(self.app.org.till_id),
                };
                let result = transfer::transfer(
                    &self.app.state.db,
                    Some(&self.principal),
                    self.org,
                    &request,
                    now,
                )
                .await;
                let mut after = self.model.clone();
                after.expire(Some(from), now);
                after.expire(Some(to), now);
                let not_registration = |l: &Lot| l.source != ledger::REGISTRATION_SOURCE;
                let lots: i64 = after
                    .lots
                    .iter()
                    .filter(|l| l.customer == from && l.spendable(now) && not_registration(l))
                    .map(|l| l.remaining)
                    .sum();
                let available = lots.min(after.balance(from).current).max(0);
                match result {
                    Ok(_) if available >= points => {
                        let plan = after.plan_fefo(from, now, points, not_registration);
                        // One receiving lot per distinct expiry, in the order they were taken.
                        let mut by_expiry: Vec<(Option<i64>, i64)> = Vec::new();
                        for &(id, take) in &plan {
                            let lot = after.lot(id);
                            lot.remaining -= take;
                            let expiry = lot.expires_at;
                            match by_expiry.iter_mut().find(|(e, _)| *e == expiry) {
                                Some((_, sum)) => *sum += take,
                                None => by_expiry.push((expiry, take)),
                            }
                        }
                        after.balance(from).current -= points;
                        after.balance(to).current += points;
                        let expected: Vec<Lot> = by_expiry
                            .into_iter()
                            .map(|(expiry, amount)| self.new_lot(to, "TRANSFER", amount, expiry))
                            .collect();
                        self.model = after;
                        self.adopt_new_lots(expected).await?;
                    }
                    Err(TransferError::NotEnough { available: a, .. }) if available < points => {
                        prop_assert_eq!(a, Fixed(available), "transferable points");
                    }
                    other => {
                        return Err(TestCaseError::fail(format!(
                            "transfer of {points} with {available} transferable: {other:?}"
                        )));
                    }
                }
            }
            Op::IssueCoupon { who } => {
                let customer = self.customers[*who];
                let ctx = IssueContext::api(&self.principal, Map::new());
                let result = coupons::issue(
                    &self.app.state.db,
                    self.org,
                    self.series,
                    &CustomerRef::Id(customer),
                    1,
                    &ctx,
                    now,
                )
                .await;
                let held = self
                    .model
                    .coupons
                    .iter()
                    .filter(|c| c.customer == customer && !c.revoked)
                    .count() as i64;
                let allowed = held < MAX_HELD && self.model.issued < MAX_ISSUED;
                match result {
                    Ok(outcome)
                        if allowed
                            && outcome.coupons.len() == 1
                            && !outcome.coupons[0].existing =>
                    {
                        let coupon = &outcome.coupons[0].coupon;
                        self.model.issued += 1;
                        self.model.coupons.push(Coupon {
                            id: coupon.id,
                            code: coupon.code.clone(),
                            customer,
                            expires_at: end_of_day_after(now, EXPIRY_DAYS),
                            revoked: false,
                            redemptions: 0,
                        });
                    }
                    Err(coupons_error) if !allowed => {
                        let shown = format!("{coupons_error:?}");
                        prop_assert!(shown.starts_with("IssueRefused"), "issue: {}", shown);
                    }
                    other => return Err(TestCaseError::fail(refused("issue", &other))),
                }
            }
            Op::RedeemCoupon { coupon } => {
                if self.model.coupons.is_empty() {
                    return Ok(());
                }
                let i = coupon.index(self.model.coupons.len());
                let c = self.model.coupons[i].clone();
                let ctx = RedeemContext {
                    at: now,
                    store_id: Some(self.app.org.store_id),
                    till_id: Some(self.app.org.till_id),
                    transaction_number: "BILL-1".into(),
                    source: "API",
                    ..RedeemContext::default()
                };
                let result = coupons::redeem(
                    &self.app.state.db,
                    &self.principal,
                    &[CodeRef::Code(c.code.clone())],
                    &CustomerRef::Id(c.customer),
                    &ctx,
                )
                .await;
                let expected = if c.revoked {
                    Some("Revoked")
                } else if c.expired(now) {
                    Some("Expired")
                } else if c.redemptions > 0 {
                    Some("AlreadyRedeemed")
                } else if self.model.redeemed >= MAX_REDEEMED {
                    Some("SeriesRedemptionsExhausted")
                } else {
                    None
                };
                match (result, expected) {
                    (Ok(_), None) => {
                        self.model.coupons[i].redemptions += 1;
                        self.model.redeemed += 1;
                    }
                    (Err((_, e)), Some(name)) => {
                        let shown = format!("{e:?}");
                        prop_assert!(shown.starts_with(name), "expected {}, got {}", name, shown);
                    }
                    (other, expected) => {
                        return Err(TestCaseError::fail(format!(
                            "coupon redemption of {c:?}: expected {expected:?}, got {:?}",
                            other.map(|_| ())
                        )));
                    }
                }
            }
            Op::RevokeCoupon { coupon } => {
                if self.model.coupons.is_empty() {
                    return Ok(());
                }
                let i = coupon.index(self.model.coupons.len());
                let c = self.model.coupons[i].clone();
                let result = coupons::revoke(
                    &self.app.state.db,
                    &self.principal,
                    Some(self.series),
                    Some(&CustomerRef::Id(c.customer)),
                    std::slice::from_ref(&c.code),
                    now,
                )
                .await
                .map_err(|e| TestCaseError::fail(format!("revoke: {e:?}")))?;
                let allowed = !c.revoked && c.redemptions == 0;
                prop_assert_eq!(result.revoked.len(), usize::from(allowed), "revoked {:?}", c);
                prop_assert_eq!(result.failed.len(), usize::from(!allowed), "refused {:?}", c);
                if allowed {
                    self.model.coupons[i].revoked = true;
                }
            }
            Op::ReactivateCoupon { coupon } => {
                if self.model.coupons.is_empty() {
                    return Ok(());
                }
                let i = coupon.index(self.model.coupons.len());
                let c = self.model.coupons[i].clone();
                let result = coupons::reactivate(
                    &self.app.state.db,
                    &self.principal,
                    &CodeRef::Code(c.code.clone()),
                    Some(&CustomerRef::Id(c.customer)),
                    None,
                    now,
                )
                .await;
                match result {
                    Ok(_) if c.redemptions > 0 => {
                        self.model.coupons[i].redemptions -= 1;
                        self.model.redeemed -= 1;
                    }
                    Err(perks::coupons::model::CouponError::NoRedemptionId)
                        if c.redemptions == 0 => {}
                    other => {
                        return Err(TestCaseError::fail(format!(
                            "reactivation of {c:?}: {:?}",
                            other.map(|_| ())
                        )));
                    }
                }
            }
            Op::Jump { hours, run_expiry } => {
                self.now += hours * HOUR;
                if *run_expiry {
                    for _ in 0..1000 {
                        let handled = ledger::process_due_lots(
                            &self.app.state.db,
                            self.now,
                            false,
                            DUE_BATCH,
                        )
                        .await
                        .map_err(|e| TestCaseError::fail(format!("expiry job: {e:?}")))?;
                        if (handled as i64) < DUE_BATCH {
                            break;
                        }
                    }
                    self.model.expire(None, self.now);
                }
            }
        }
        Ok(())
    }

    fn check_return(
        &self,
        result: &Result<bills::AddOutcome, TransactionError>,
        expected: Option<u32>,
        what: &str,
    ) -> Result<(), TestCaseError> {
        match (result, expected) {
            (Ok(_), None) => Ok(()),
            (Err(TransactionError::Coded(code, _)), Some(want)) if code.info().code == want => {
                Ok(())
            }
            (other, expected) => Err(TestCaseError::fail(format!(
                "{what}: expected {expected:?}, got {:?}",
                other.as_ref().map(|_| ())
            ))),
        }
    }

    /// A return the server took: the customer's expiry pass, then the take-back of what the
    /// sale's lot still owes for `target` (cumulative).
    async fn finish_return(&mut self, i: usize, returned_after: i64, target: i64) {
        let now = self.now;
        let sale = self.model.sales[i].clone();
        self.model.expire(Some(sale.customer), now);
        let wanted = (target - sale.reversed).max(0);
        if let Some(lot) = sale.lot
            && wanted > 0
        {
            self.model.take_back(sale.customer, now, lot, wanted);
        }
        let s = &mut self.model.sales[i];
        s.reversed += wanted;
        s.returned_amount = returned_after;
        s.returned = if returned_after >= s.amount { Returned::Full } else { Returned::Part };
    }

    /// Every comparison, against the database as committed.
    async fn check(&self) -> Result<(), TestCaseError> {
        let mut conn = self.app.state.db.read().await.unwrap();
        let mismatches = ledger::verify(&mut conn, Some(self.org), 20).await.unwrap();
        prop_assert!(mismatches.is_empty(), "verify: {:?}", mismatches);
        for &customer in &self.customers {
            let model = self.model.balances.get(&customer).copied().unwrap_or_default();
            let stored =
                points_store::lock_account(&mut conn, self.org, customer, self.program.id.0)
                    .await
                    .unwrap()
                    .map(|a| a.balances())
                    .unwrap_or_default();
            prop_assert_eq!(stored, model, "balances of customer {}", customer);
            let uri = format!("/v2/customers/{customer}/points/balance");
            let r = self.app.get(&uri, &self.app.basic()).await;
            prop_assert_eq!(r.status.as_u16(), 200, "{}", r.body);
            let shown = r.json()["mainPoints"].as_f64().unwrap_or(f64::NAN);
            prop_assert!(
                (shown * POINT as f64).round() as i64 == model.current,
                "balance API of customer {} shows {}, the model has {}",
                customer,
                shown,
                Fixed(model.current).to_f64()
            );
            let lots: Vec<Lot> =
                lots_of(&mut conn, self.org, customer).await.iter().map(Lot::from_row).collect();
            let mut expected: Vec<Lot> =
                self.model.lots.iter().filter(|l| l.customer == customer).cloned().collect();
            expected.sort_by_key(|l| l.id);
            prop_assert_eq!(&lots, &expected, "lots of customer {}", customer);
        }
        let series = coupons::load_series(&mut conn, self.org, self.series).await.unwrap();
        prop_assert_eq!(
            (series.row.num_issued, series.row.num_redeemed),
            (self.model.issued, self.model.redeemed),
            "series counters (issued, redeemed)"
        );
        for c in &self.model.coupons {
            let row = perks::coupons::store::coupon_by_id(&mut conn, self.org, c.id, false)
                .await
                .unwrap()
                .ok_or_else(|| TestCaseError::fail(format!("coupon {} is gone", c.id)))?;
            let state = coupons::state_of(&row, &series, self.now);
            let seen = (row.is_revoked(), row.redemption_count, row.expires_at, state.expired);
            let want = (c.revoked, c.redemptions, Some(c.expires_at), c.expired(self.now));
            prop_assert_eq!(seen, want, "coupon {:?} (revoked, redemptions, expiry, expired)", c);
            let redeemable = !c.revoked
                && !c.expired(self.now)
                && c.redemptions == 0
                && self.model.redeemed < MAX_REDEEMED;
            prop_assert_eq!(state.redeemable, redeemable, "coupon {:?} redeemable", c);
        }
        Ok(())
    }
}

impl Model {
    /// Reverses `wanted` points of redemption `i`: unwound from its lots, the valid ones first
    /// (latest-expiring, never-expiring first, then the newest), then the expired ones, whose
    /// share lapses instead of coming back. Returns (restored, lapsed).
    fn reverse(&mut self, i: usize, wanted: i64, now: i64) -> (i64, i64) {
        let r = self.redemptions[i].clone();
        let mut open: Vec<(Lot, i64)> = Vec::new();
        for &(lot_id, taken) in &r.taken {
            let done: i64 = r.handled.iter().filter(|(l, _)| *l == lot_id).map(|(_, d)| d).sum();
            if taken - done > 0 {
                let lot = self.lots.iter().find(|l| l.id == lot_id).expect("a lot").clone();
                open.push((lot, taken - done));
            }
        }
        open.sort_by_key(|(l, _)| {
            (!l.valid(now), l.expires_at.is_some(), std::cmp::Reverse(l.expires_at), -l.id)
        });
        let (mut left, mut restored, mut lapsed) = (wanted, 0, 0);
        let mut handled = Vec::new();
        for (lot, open_points) in open {
            if left <= 0 {
                break;
            }
            let amount = open_points.min(left);
            left -= amount;
            if lot.valid(now) {
                self.lot(lot.id).remaining += amount;
                restored += amount;
            } else {
                lapsed += amount;
            }
            handled.push((lot.id, amount));
        }
        let b = self.balance(r.customer);
        b.current += restored;
        b.redeemed -= restored;
        let r = &mut self.redemptions[i];
        r.claimed += restored + lapsed;
        r.handled.extend(handled);
        (restored, lapsed)
    }
}

/// Every lot of a customer, by id.
async fn lots_of(c: &mut impl perks::db::Connection, org: OrgId, customer: i64) -> Vec<LotRow> {
    perks::dispatch!(c, |e| sqlx::query_as::<_, LotRow>(
        "SELECT id, customer_id, program_id, kind, source, rule, transaction_id, line_item_id, \
         awarded, remaining, reversed, awarded_at, unlock_at, expires_at FROM point_lots \
         WHERE org_id = $1 AND customer_id = $2 ORDER BY id"
    )
    .bind(org.0)
    .bind(customer)
    .fetch_all(e)
    .await)
    .unwrap()
}

/// Per backend and kind of operation: how many steps changed the model, and how many did not
/// (refused, or skipped for want of a target); printed at the end to show what a run covered.
type Tally = std::collections::BTreeMap<(String, String), (u64, u64)>;
static TALLY: std::sync::Mutex<Tally> = std::sync::Mutex::new(Tally::new());

fn tally(backend: Backend, op: &Op, changed: bool) {
    let shown = format!("{op:?}");
    let kind = shown.split([' ', '{']).next().unwrap_or_default().to_string();
    let mut tally = TALLY.lock().unwrap_or_else(|e| e.into_inner());
    let entry = tally.entry((format!("{backend:?}"), kind)).or_default();
    if changed {
        entry.0 += 1;
    } else {
        entry.1 += 1;
    }
}

async fn run_case(backend: Backend, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut world = World::new(backend).await;
    world.check().await.map_err(|e| TestCaseError::fail(format!("at the start: {e}")))?;
    for (step, op) in ops.iter().enumerate() {
        let at = world.now;
        let before = format!("{:?}{}", world.model, world.now);
        let result = match world.apply(op).await {
            Ok(()) => {
                tally(backend, op, format!("{:?}{}", world.model, world.now) != before);
                world.check().await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            world.app.state.db.close().await;
            return Err(TestCaseError::fail(format!(
                "step {} ({op:?}) at +{} h: {e}",
                step + 1,
                (at - START) / HOUR
            )));
        }
    }
    world.app.state.db.close().await;
    Ok(())
}

async fn the_server_matches_the_model_over_random_operations(backend: Backend) {
    if backend == Backend::Postgres && postgres_url().is_none() {
        eprintln!("SKIPPED: PostgreSQL variant (PERKS_TEST_POSTGRES_URL is unset)");
        return;
    }
    let config = Config {
        cases: cases(),
        max_shrink_iters: 300,
        failure_persistence: None,
        ..Config::default()
    };
    let started = std::time::Instant::now();
    let mut runner = TestRunner::new(config);
    let handle = tokio::runtime::Handle::current();
    let result = runner.run(&ops_strategy(), |ops| {
        tokio::task::block_in_place(|| handle.block_on(run_case(backend, ops)))
    });
    eprintln!(
        "model test ({backend:?}): {} cases in {:.1} s",
        cases(),
        started.elapsed().as_secs_f64()
    );
    let tally = TALLY.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for ((b, kind), (changed, unchanged)) in tally {
        if b == format!("{backend:?}") {
            eprintln!("  {kind}: {changed} applied, {unchanged} refused or skipped");
        }
    }
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, ops)) => {
            panic!("{reason}\nminimal failing sequence ({} steps):\n{ops:#?}", ops.len())
        }
        Err(e) => panic!("{e}"),
    }
}
