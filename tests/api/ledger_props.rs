//! Property tests of the points ledger.
//!
//! - Random sequences of awards (some promised), redemptions, take-backs, time jumps and
//!   expiry/unlock runs over one to three customers, on SQLite, driving `points::ledger`
//!   directly. After every step: `verify` finds nothing; the balances, and every lot, equal an
//!   independent in-memory model; no balance is negative unless a take-back allowed it; the
//!   spendable lots add up to the balance.
//! - Random bills and partial returns (LINE_ITEM, AMOUNT, FULL) through `POST /v2/transactions`:
//!   a return never gives back more than the bill earned, each lot gives back its proportion, and
//!   returning everything leaves exactly nothing of what the bill earned.
//! - Parallel redemptions against one balance, on both backends: never overdrawn, never a lot
//!   expired twice, `verify` clean.

use std::collections::{HashMap, HashSet};

use perks::db::Connection;
use perks::org::model::OrgId;
use perks::points::ledger::{self, Award, EntryMeta, LedgerError, Scope, TakeBack};
use perks::points::model::{Balances, EntryKind, Fixed, LotKind};
use perks::points::store::{self as points_store, LotRow};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp};
use crate::transactions::add_customer;

backend_tests!(
    parallel_redemptions_never_overdraw_one_balance,
    a_lapsed_lot_expires_once_when_two_redemptions_overlap,
);

const DAY: i64 = 86_400_000;
/// 2026-01-01T00:00:00Z: where the ledger's clock starts in each case.
const START: i64 = 1_767_225_600_000;
/// Rows per `process_due_lots` call: small, so that runs take several batches.
const DUE_BATCH: i64 = 3;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// The org's default program (the starter program every new org gets).
async fn default_program(app: &TestApp) -> i64 {
    let mut conn = app.state.db.read().await.unwrap();
    perks::dispatch!(&mut conn, |e| sqlx::query_scalar::<_, i64>(
        "SELECT id FROM programs WHERE org_id = $1 ORDER BY is_default DESC, id LIMIT 1"
    )
    .bind(app.org.org_id)
    .fetch_one(e)
    .await)
    .unwrap()
}

/// Every lot of a customer, by id.
async fn lots_of(c: &mut impl Connection, org: OrgId, customer: i64) -> Vec<LotRow> {
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

/// The customer's balances in the program (zeros when there is no account).
async fn balances_of(c: &mut impl Connection, org: OrgId, customer: i64, program: i64) -> Balances {
    points_store::lock_account(c, org, customer, program)
        .await
        .unwrap()
        .map(|a| a.balances())
        .unwrap_or_default()
}

// ------------------------------------------------------------------------------------ model

/// A lot as the model sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ModelLot {
    id: i64,
    customer: i64,
    promised: bool,
    awarded: i64,
    remaining: i64,
    awarded_at: i64,
    unlock_at: Option<i64>,
    expires_at: Option<i64>,
}

impl ModelLot {
    fn from_row(row: &LotRow) -> ModelLot {
        ModelLot {
            id: row.id,
            customer: row.customer_id,
            promised: row.kind == LotKind::Promised.as_str(),
            awarded: row.awarded,
            remaining: row.remaining,
            awarded_at: row.awarded_at,
            unlock_at: row.unlock_at,
            expires_at: row.expires_at,
        }
    }

    fn spendable(&self, now: i64) -> bool {
        !self.promised && self.remaining > 0 && self.expires_at.is_none_or(|at| at > now)
    }
}

/// The ledger's rules written again, as plainly as possible, over an in-memory list of lots.
#[derive(Clone, Debug, Default)]
struct Model {
    lots: Vec<ModelLot>,
    balances: HashMap<i64, Balances>,
    accounts: HashSet<i64>,
    /// Points a customer's balance was driven below their lots by take-backs that allowed it.
    debt: HashMap<i64, i64>,
}

impl Model {
    fn balance(&mut self, customer: i64) -> &mut Balances {
        self.balances.entry(customer).or_default()
    }

    fn debt(&self, customer: i64) -> i64 {
        self.debt.get(&customer).copied().unwrap_or(0)
    }

    fn lot(&mut self, id: i64) -> &mut ModelLot {
        self.lots.iter_mut().find(|l| l.id == id).unwrap()
    }

    fn award(
        &mut self,
        id: i64,
        customer: i64,
        points: i64,
        now: i64,
        unlock_at: Option<i64>,
        expires_at: Option<i64>,
    ) {
        let promised = unlock_at.is_some_and(|at| at > now);
        self.lots.push(ModelLot {
            id,
            customer,
            promised,
            awarded: points,
            remaining: points,
            awarded_at: now,
            unlock_at: if promised { unlock_at } else { None },
            expires_at,
        });
        self.accounts.insert(customer);
        let b = self.balance(customer);
        if promised {
            b.promised += points;
        } else {
            b.current += points;
        }
        b.lifetime += points;
    }

    /// Expires what lapsed by `now` (of one customer, or everyone's); the total.
    fn expire(&mut self, customer: Option<i64>, now: i64) -> i64 {
        let mut total = 0;
        for lot in self.lots.iter_mut() {
            if customer.is_some_and(|c| c != lot.customer)
                || lot.promised
                || lot.remaining <= 0
                || lot.expires_at.is_none_or(|at| at > now)
            {
                continue;
            }
            let points = lot.remaining;
            lot.remaining = 0;
            let b = self.balances.entry(lot.customer).or_default();
            b.current -= points;
            b.expired += points;
            total += points;
        }
        total
    }

    /// Promised lots whose date has come become spendable.
    fn unlock(&mut self, now: i64) {
        for lot in self.lots.iter_mut() {
            if lot.promised && lot.unlock_at.is_some_and(|at| at <= now) {
                lot.promised = false;
                let b = self.balances.entry(lot.customer).or_default();
                b.current += lot.remaining;
                b.promised -= lot.remaining;
            }
        }
    }

    /// Up to `wanted` from the spendable lots, soonest expiry first (never-expiring last), then
    /// oldest, then by id.
    fn plan_fefo(&self, customer: i64, now: i64, wanted: i64, exclude: &[i64]) -> Vec<(i64, i64)> {
        let mut lots: Vec<&ModelLot> = self
            .lots
            .iter()
            .filter(|l| l.customer == customer && l.spendable(now) && !exclude.contains(&l.id))
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

    /// A redemption; `Err(available)` when refused (after the customer's expiry pass).
    fn spend(&mut self, customer: i64, now: i64, points: i64) -> Result<(), i64> {
        if !self.accounts.contains(&customer) {
            return Err(0);
        }
        self.expire(Some(customer), now);
        let current = self.balance(customer).current;
        if current < points {
            return Err(current.max(0));
        }
        let plan = self.plan_fefo(customer, now, points, &[]);
        let taken: i64 = plan.iter().map(|(_, t)| t).sum();
        if taken < points {
            return Err(taken);
        }
        for (id, take) in plan {
            self.lot(id).remaining -= take;
        }
        let b = self.balance(customer);
        b.current -= points;
        b.redeemed += points;
        Ok(())
    }

    /// A return taking `amount` back from each listed lot (what an unexpired lot cannot give
    /// comes from the other spendable lots; what an expired lot cannot give already left with
    /// its expiry and is forgiven; what nothing covers is debt or forgiven).
    fn take_back(
        &mut self,
        customer: i64,
        now: i64,
        wanted: &[(i64, i64)],
        allow_negative: bool,
    ) -> TakeBack {
        let (mut from_current, mut from_promised, mut shortfall, mut gone) = (0, 0, 0, 0);
        let mut moves = Vec::new();
        for &(id, amount) in wanted {
            let lot = self.lots.iter().find(|l| l.id == id).unwrap();
            let valid = lot.expires_at.is_none_or(|at| at > now);
            let available = if valid { lot.remaining.max(0) } else { 0 };
            let take = available.min(amount.max(0));
            if take > 0 {
                if lot.promised {
                    from_promised += take;
                } else {
                    from_current += take;
                }
                moves.push((id, take));
            }
            if valid {
                shortfall += amount.max(0) - take;
            } else {
                gone += amount.max(0) - take;
            }
        }
        if shortfall > 0 {
            let exclude: Vec<i64> = wanted.iter().map(|(id, _)| *id).collect();
            for (id, take) in self.plan_fefo(customer, now, shortfall, &exclude) {
                from_current += take;
                shortfall -= take;
                moves.push((id, take));
            }
        }
        let (debt, forgiven) =
            if allow_negative { (shortfall, gone) } else { (0, shortfall + gone) };
        let total = from_current + from_promised + debt;
        if total > 0 {
            for (id, take) in moves {
                self.lot(id).remaining -= take;
            }
            let b = self.balance(customer);
            b.current -= from_current + debt;
            b.promised -= from_promised;
            b.returned += total;
            b.lifetime -= total;
            *self.debt.entry(customer).or_default() += debt;
        }
        TakeBack { taken: Fixed(total), forgiven: Fixed(forgiven) }
    }
}

// ------------------------------------------------------------------------------- operations

/// What follows a time jump.
#[derive(Clone, Debug)]
enum Run {
    Nothing,
    /// `expire_customer` for one customer.
    Customer(usize),
    /// `process_due_lots` (expiry) to completion.
    Expire,
    /// `process_due_lots` (unlock) to completion.
    Unlock,
    UnlockThenExpire,
}

#[derive(Clone, Debug)]
enum Op {
    Award {
        who: usize,
        points: i64,
        expires_in_days: Option<i64>,
        unlock_in_days: Option<i64>,
    },
    /// A redemption; a refusal is rolled back, or (with `commit_refusal`) committed anyway.
    Spend {
        who: usize,
        points: i64,
        commit_refusal: bool,
    },
    /// Points of one or two of the customer's lots taken back (percent of what each awarded).
    TakeBack {
        who: usize,
        lots: Vec<(Index, i64)>,
        allow_negative: bool,
    },
    Jump {
        days: i64,
        run: Run,
    },
}

fn op_strategy(customers: usize) -> impl Strategy<Value = Op> {
    let who = 0..customers;
    let run = prop_oneof![
        Just(Run::Nothing),
        (0..customers).prop_map(Run::Customer),
        Just(Run::Expire),
        Just(Run::Unlock),
        Just(Run::UnlockThenExpire),
    ];
    prop_oneof![
        4 => (
            who.clone(),
            1i64..=1_000_000,
            prop::option::weighted(0.8, 1i64..=40),
            prop::option::weighted(0.4, -1i64..=8),
        )
            .prop_map(|(who, points, expires_in_days, unlock_in_days)| Op::Award {
                who,
                points,
                expires_in_days,
                unlock_in_days,
            }),
        3 => (who.clone(), 1i64..=1_500_000, any::<bool>())
            .prop_map(|(who, points, commit_refusal)| Op::Spend { who, points, commit_refusal }),
        2 => (who, prop::collection::vec((any::<Index>(), 1i64..=150), 1..=2), any::<bool>())
            .prop_map(|(who, lots, allow_negative)| Op::TakeBack { who, lots, allow_negative }),
        2 => (0i64..=15, run).prop_map(|(days, run)| Op::Jump { days, run }),
    ]
}

fn case_strategy() -> impl Strategy<Value = (usize, Vec<Op>)> {
    (1usize..=3).prop_flat_map(|n| (Just(n), prop::collection::vec(op_strategy(n), 1..=40)))
}

/// One case's database, clock and model.
struct World {
    app: TestApp,
    org: OrgId,
    program: i64,
    customers: Vec<i64>,
    now: i64,
    model: Model,
    /// Customers whose due lots were all expired at the current `now` (nothing due is left).
    expired_now: HashSet<i64>,
}

impl World {
    async fn new(customers: usize) -> World {
        let app = TestApp::new(Backend::Sqlite).await.unwrap();
        let org = OrgId(app.org.org_id);
        let program = default_program(&app).await;
        let mut ids = Vec::new();
        for i in 0..customers {
            ids.push(add_customer(&app, &format!("91984510000{i}")).await);
        }
        // Whatever registration did (a sign-up award, an account) is the model's start.
        let mut model = Model::default();
        let mut conn = app.state.db.read().await.unwrap();
        for &customer in &ids {
            for row in lots_of(&mut conn, org, customer).await {
                model.lots.push(ModelLot::from_row(&row));
            }
            if let Some(account) =
                points_store::lock_account(&mut conn, org, customer, program).await.unwrap()
            {
                model.accounts.insert(customer);
                model.balances.insert(customer, account.balances());
            }
        }
        drop(conn);
        World { app, org, program, customers: ids, now: START, model, expired_now: HashSet::new() }
    }

    fn scope(&self, customer: i64) -> Scope {
        Scope { org: self.org, customer, program: self.program, till: None, now: self.now }
    }

    async fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let db = self.app.state.db.clone();
        match op {
            Op::Award { who, points, expires_in_days, unlock_in_days } => {
                let customer = self.customers[*who];
                let scope = self.scope(customer);
                let expires_at = expires_in_days.map(|d| self.now + d * DAY);
                let unlock_at = unlock_in_days.map(|d| self.now + d * DAY);
                let mut tx = db.begin_write().await.unwrap();
                ledger::open_account(&mut tx, scope).await.unwrap();
                let award = Award {
                    points: Fixed(*points),
                    source: "TEST",
                    rule: "prop",
                    transaction_id: None,
                    line_item_id: None,
                    awarded_at: self.now,
                    unlock_at,
                    expires_at,
                };
                let lot = ledger::award(&mut tx, scope, &award).await.unwrap();
                tx.commit().await.unwrap();
                let lot = lot.ok_or_else(|| TestCaseError::fail("a positive award made no lot"))?;
                self.model.award(lot, customer, *points, self.now, unlock_at, expires_at);
            }
            Op::Spend { who, points, commit_refusal } => {
                let customer = self.customers[*who];
                let before = self.model.clone();
                let expected = self.model.spend(customer, self.now, *points);
                let mut tx = db.begin_write().await.unwrap();
                let result = ledger::spend(
                    &mut tx,
                    self.scope(customer),
                    EntryKind::Redeem,
                    Fixed(*points),
                    EntryMeta { note: "prop", ..EntryMeta::default() },
                )
                .await;
                match (result, expected) {
                    (Ok(_), Ok(())) => {
                        tx.commit().await.unwrap();
                        self.expired_now.insert(customer);
                    }
                    (Err(LedgerError::Insufficient { available }), Err(model_available)) => {
                        prop_assert_eq!(available, Fixed(model_available), "available points");
                        if *commit_refusal {
                            // Only the expiry pass that preceded the refusal may be kept.
                            tx.commit().await.unwrap();
                            self.expired_now.insert(customer);
                        } else {
                            drop(tx);
                            self.model = before;
                        }
                    }
                    (result, expected) => {
                        return Err(TestCaseError::fail(format!(
                            "spend of {points}: ledger {result:?}, model {expected:?}"
                        )));
                    }
                }
            }
            Op::TakeBack { who, lots, allow_negative } => {
                let customer = self.customers[*who];
                let mut own: Vec<&ModelLot> =
                    self.model.lots.iter().filter(|l| l.customer == customer).collect();
                if own.is_empty() {
                    return Ok(());
                }
                own.sort_by_key(|l| l.id);
                let mut wanted: Vec<(i64, i64)> = Vec::new();
                for (index, percent) in lots {
                    let lot = own[index.index(own.len())];
                    if wanted.iter().all(|(id, _)| *id != lot.id) {
                        wanted.push((lot.id, (lot.awarded * percent / 100).max(1)));
                    }
                }
                let scope = self.scope(customer);
                let mut tx = db.begin_write().await.unwrap();
                let mut rows = Vec::new();
                for &(id, amount) in &wanted {
                    let row = points_store::get_lot(&mut tx, self.org, id).await.unwrap().unwrap();
                    rows.push((row, Fixed(amount)));
                }
                let meta = EntryMeta { note: "return", ..EntryMeta::default() };
                let got =
                    ledger::take_back(&mut tx, scope, &rows, *allow_negative, meta).await.unwrap();
                tx.commit().await.unwrap();
                let expected = self.model.take_back(customer, self.now, &wanted, *allow_negative);
                prop_assert_eq!(got, expected, "take-back of {:?}", wanted);
            }
            Op::Jump { days, run } => {
                self.now += days * DAY;
                if *days > 0 {
                    self.expired_now.clear();
                }
                match run {
                    Run::Nothing => {}
                    Run::Customer(who) => {
                        let customer = self.customers[*who];
                        let mut tx = db.begin_write().await.unwrap();
                        let total =
                            ledger::expire_customer(&mut tx, self.scope(customer)).await.unwrap();
                        tx.commit().await.unwrap();
                        let expected = self.model.expire(Some(customer), self.now);
                        prop_assert_eq!(total, Fixed(expected), "expired for the customer");
                        self.expired_now.insert(customer);
                    }
                    Run::Expire => self.run_due(false).await,
                    Run::Unlock => self.run_due(true).await,
                    Run::UnlockThenExpire => {
                        self.run_due(true).await;
                        self.run_due(false).await;
                    }
                }
            }
        }
        Ok(())
    }

    /// The scheduler's pass: `process_due_lots` in small batches until nothing is due.
    async fn run_due(&mut self, unlock: bool) {
        for _ in 0..1000 {
            let handled = ledger::process_due_lots(&self.app.state.db, self.now, unlock, DUE_BATCH)
                .await
                .unwrap();
            if (handled as i64) < DUE_BATCH {
                break;
            }
        }
        if unlock {
            self.model.unlock(self.now);
            // An unlocked lot may already be past its expiry.
            self.expired_now.clear();
        } else {
            self.model.expire(None, self.now);
            self.expired_now.extend(self.customers.iter().copied());
        }
    }

    /// Every invariant, against the database as committed.
    async fn check(&self, step: usize, op: &Op) -> Result<(), TestCaseError> {
        let mut conn = self.app.state.db.read().await.unwrap();
        let mismatches = ledger::verify(&mut conn, Some(self.org), 20).await.unwrap();
        prop_assert!(mismatches.is_empty(), "step {} ({:?}): verify: {:?}", step, op, mismatches);
        for &customer in &self.customers {
            let stored = balances_of(&mut conn, self.org, customer, self.program).await;
            let model = self.model.balances.get(&customer).copied().unwrap_or_default();
            prop_assert_eq!(stored, model, "step {} ({:?}): balances of {}", step, op, customer);

            let rows = lots_of(&mut conn, self.org, customer).await;
            let lots: Vec<ModelLot> = rows.iter().map(ModelLot::from_row).collect();
            let mut expected: Vec<ModelLot> =
                self.model.lots.iter().filter(|l| l.customer == customer).cloned().collect();
            expected.sort_by_key(|l| l.id);
            prop_assert_eq!(&lots, &expected, "step {} ({:?}): lots of {}", step, op, customer);

            let debt = self.model.debt(customer);
            prop_assert!(stored.promised >= 0, "step {step}: promised {}", stored.promised);
            prop_assert!(
                stored.current >= 0 || debt > 0,
                "step {step} ({op:?}): balance {} went negative without a take-back allowing it",
                stored.current
            );
            let regular: i64 = lots.iter().filter(|l| !l.promised).map(|l| l.remaining).sum();
            let promised: i64 = lots.iter().filter(|l| l.promised).map(|l| l.remaining).sum();
            prop_assert_eq!(
                stored.current,
                regular - debt,
                "step {}: regular lots vs balance",
                step
            );
            prop_assert_eq!(stored.promised, promised, "step {}: promised lots vs balance", step);
            if self.expired_now.contains(&customer) {
                let unexpired: i64 = lots
                    .iter()
                    .filter(|l| !l.promised && l.expires_at.is_none_or(|at| at > self.now))
                    .map(|l| l.remaining)
                    .sum();
                prop_assert_eq!(
                    stored.current,
                    unexpired - debt,
                    "step {} ({:?}): unexpired regular lots vs balance after expiry",
                    step,
                    op
                );
            }
        }
        Ok(())
    }
}

async fn run_ledger_case(customers: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut world = World::new(customers).await;
    world.check(0, &Op::Jump { days: 0, run: Run::Nothing }).await?;
    for (i, op) in ops.iter().enumerate() {
        world.apply(op).await?;
        world.check(i + 1, op).await?;
    }
    world.app.state.db.close().await;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn ledger_invariants_hold_over_random_operations((customers, ops) in case_strategy()) {
        runtime().block_on(run_ledger_case(customers, ops))?;
    }
}

// ------------------------------------------------------------------------- bills and returns

/// 10% of each line's amount, and 1% of the bill: lots per line and one per bill.
fn per_line_program() -> Value {
    json!({"name": "Default", "default": true, "tiers": [{"name": "Base"}],
        "earn": [{"name": "lines", "on": "lineItem", "points": "item.amount * 0.1"},
                 {"name": "bonus", "on": "transaction", "points": "bill.amount * 0.01"}]})
}

#[derive(Clone, Debug)]
enum BillOp {
    /// A sale of lines `(quantity in halves, rate in cents, even)`, item codes `I0`, `I1`, ….
    Sale {
        lines: Vec<(i64, i64)>,
    },
    /// A LINE_ITEM return of `(line, quantity in halves)` pairs of one sale.
    ReturnLines {
        bill: Index,
        items: Vec<(Index, i64)>,
    },
    /// An AMOUNT return of `percent` of what is left of the sale (over 100: more than is left).
    ReturnAmount {
        bill: Index,
        percent: i64,
    },
    ReturnFull {
        bill: Index,
    },
}

fn sale_strategy() -> impl Strategy<Value = BillOp> {
    // Rates from 1.00 up, so that every sale earns at least a hundredth of a point.
    prop::collection::vec((1i64..=8, (50i64..=50_000).prop_map(|r| r * 2)), 1..=3)
        .prop_map(|lines| BillOp::Sale { lines })
}

fn bill_ops_strategy() -> impl Strategy<Value = Vec<BillOp>> {
    let op = prop_oneof![
        2 => sale_strategy(),
        3 => (any::<Index>(), prop::collection::vec((any::<Index>(), 1i64..=8), 1..=2))
            .prop_map(|(bill, items)| BillOp::ReturnLines { bill, items }),
        2 => (any::<Index>(), 1i64..=120)
            .prop_map(|(bill, percent)| BillOp::ReturnAmount { bill, percent }),
        1 => any::<Index>().prop_map(|bill| BillOp::ReturnFull { bill }),
    ];
    (sale_strategy(), prop::collection::vec(op, 0..=11)).prop_map(|(first, mut rest)| {
        rest.insert(0, first);
        rest
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Returned {
    Nothing,
    Lines,
    Amount,
    Full,
}

/// A sale as the test remembers it; amounts in cents, quantities in halves.
#[derive(Clone, Debug)]
struct SaleModel {
    id: i64,
    number: String,
    /// `(quantity, amount, returned quantity)` per line.
    lines: Vec<(i64, i64, i64)>,
    amount: i64,
    returned_amount: i64,
    returned: Returned,
    /// Points the sale earned and points its returns took back, in ten-thousandths.
    earned: i64,
    reversed: i64,
}

/// Points of a response's side effects, in ten-thousandths (negative for a return).
fn side_effect_points(body: &Value) -> i64 {
    body["sideEffects"]
        .as_array()
        .map(|effects| {
            effects
                .iter()
                .filter(|e| e["type"] == "points")
                .map(|e| (e["awardedPoints"].as_f64().unwrap_or(0.0) * 10_000.0).round() as i64)
                .sum()
        })
        .unwrap_or(0)
}

const MOBILE: &str = "919845100050";

async fn post_bill(app: &TestApp, body: &Value) -> crate::helpers::TestResponse {
    let uri = format!("/v2/transactions?identifierName=mobile&identifierValue={MOBILE}");
    app.post_json(&uri, &app.basic(), body).await
}

fn cents(value: i64) -> f64 {
    value as f64 / 100.0
}

/// Fixed units (ten-thousandths) of an amount in cents or a quantity in halves.
fn cents_fixed(value: i64) -> i64 {
    value * 100
}
fn halves_fixed(value: i64) -> i64 {
    value * 5_000
}

/// One hundredth of a point in ten-thousandths: the rounding of the program's point decimals.
const ROUNDING_UNIT: i64 = 100;

/// What each lot of a sale would still hold given what came back if shares were exact: each lot
/// gives back its proportion of the returned quantity (line lots of a LINE_ITEM return) or
/// amount (the rest), and everything once the sale is fully returned.
fn expected_remaining(sale: &SaleModel, lot: &LotRow, line_index: Option<usize>) -> i64 {
    let awarded = Fixed(lot.awarded);
    let returned = match (sale.returned, line_index) {
        (Returned::Nothing, _) => Fixed::ZERO,
        (Returned::Full, _) => awarded,
        (Returned::Lines, Some(i)) => {
            let (qty, _, back) = sale.lines[i];
            awarded.prorate(halves_fixed(back), halves_fixed(qty))
        }
        (Returned::Lines, None) => {
            let back: i64 = sale
                .lines
                .iter()
                .map(|&(qty, amount, back)| {
                    Fixed(cents_fixed(amount)).prorate(halves_fixed(back), halves_fixed(qty)).0
                })
                .sum();
            awarded.prorate(back, cents_fixed(sale.amount))
        }
        (Returned::Amount, _) => {
            awarded.prorate(cents_fixed(sale.returned_amount), cents_fixed(sale.amount))
        }
    };
    lot.awarded - returned.0
}

async fn run_bills_case(ops: Vec<BillOp>) -> Result<(), TestCaseError> {
    let app = TestApp::new(Backend::Sqlite).await.unwrap();
    let org = OrgId(app.org.org_id);
    let doc = perks::programs::service::parse_document(
        &per_line_program().to_string(),
        perks::programs::service::DocumentFormat::Json,
    )
    .unwrap();
    let target = perks::programs::service::SaveTarget::ByName;
    perks::programs::service::save_program(
        &app.state.db,
        &app.state.programs,
        org,
        None,
        target,
        doc,
    )
    .await
    .unwrap();
    let customer = add_customer(&app, MOBILE).await;
    let program = default_program(&app).await;
    let mut sales: Vec<SaleModel> = Vec::new();
    let sale_date = "2026-01-10T10:00:00Z";
    let return_date = "2026-01-11T10:00:00Z";
    for (step, op) in ops.iter().enumerate() {
        match op {
            BillOp::Sale { lines } => {
                let number = format!("P-{step}");
                let lines: Vec<(i64, i64, i64)> =
                    lines.iter().map(|&(qty, rate)| (qty, qty * rate / 2, rate)).collect();
                let amount: i64 = lines.iter().map(|l| l.1).sum();
                let items: Vec<Value> = lines
                    .iter()
                    .enumerate()
                    .map(|(i, &(qty, line_amount, rate))| {
                        json!({"itemCode": format!("I{i}"), "qty": qty as f64 / 2.0,
                               "rate": cents(rate), "amount": cents(line_amount)})
                    })
                    .collect();
                let body = json!({"type": "REGULAR", "billNumber": number, "billAmount": cents(amount),
                    "billingDate": sale_date, "lineItemsV2": items});
                let response = post_bill(&app, &body).await;
                response.assert_status(200);
                let body = response.json();
                let earned = side_effect_points(&body);
                prop_assert!(earned > 0, "step {}: the sale earned nothing: {}", step, body);
                sales.push(SaleModel {
                    id: body["createdId"].as_i64().unwrap(),
                    number,
                    lines: lines.iter().map(|&(qty, amount, _)| (qty, amount, 0)).collect(),
                    amount,
                    returned_amount: 0,
                    returned: Returned::Nothing,
                    earned,
                    reversed: 0,
                });
            }
            BillOp::ReturnLines { bill, items } => {
                let count = sales.len();
                let sale = &mut sales[bill.index(count)];
                let mut asked = vec![0i64; sale.lines.len()];
                let mut body_items = Vec::new();
                for (line, qty) in items {
                    let i = line.index(sale.lines.len());
                    asked[i] += qty;
                    body_items.push(json!({"itemCode": format!("I{i}"), "qty": *qty as f64 / 2.0}));
                }
                let expected = match sale.returned {
                    Returned::Full => Some(633),
                    Returned::Amount => Some(638),
                    _ if sale.lines.iter().zip(&asked).any(|(l, a)| l.2 + a > l.0) => Some(626),
                    _ => None,
                };
                let body = json!({"type": "RETURN", "returnType": "LINE_ITEM", "billNumber": sale.number,
                    "billingDate": return_date, "lineItemsV2": body_items});
                let response = post_bill(&app, &body).await;
                if let Some(code) = expected {
                    prop_assert_eq!(
                        response.status.as_u16(),
                        400,
                        "step {}: {}",
                        step,
                        response.body
                    );
                    prop_assert_eq!(response.v2_error_code(), code, "step {}", step);
                } else {
                    prop_assert_eq!(
                        response.status.as_u16(),
                        200,
                        "step {}: {}",
                        step,
                        response.body
                    );
                    for (line, a) in sale.lines.iter_mut().zip(&asked) {
                        line.2 += a;
                    }
                    sale.returned = if sale.lines.iter().all(|l| l.2 == l.0) {
                        Returned::Full
                    } else {
                        Returned::Lines
                    };
                    sale.reversed -= side_effect_points(&response.json());
                }
            }
            BillOp::ReturnAmount { bill, percent } => {
                let count = sales.len();
                let sale = &mut sales[bill.index(count)];
                let left = sale.amount - sale.returned_amount;
                let amount = (left * percent / 100).max(1);
                let expected = match sale.returned {
                    Returned::Full => Some(633),
                    Returned::Lines => Some(632),
                    _ if amount > left => Some(630),
                    _ => None,
                };
                let body = json!({"type": "RETURN", "returnType": "AMOUNT", "billNumber": sale.number,
                    "billAmount": cents(amount), "billingDate": return_date});
                let response = post_bill(&app, &body).await;
                if let Some(code) = expected {
                    prop_assert_eq!(
                        response.status.as_u16(),
                        400,
                        "step {}: {}",
                        step,
                        response.body
                    );
                    prop_assert_eq!(response.v2_error_code(), code, "step {}", step);
                } else {
                    prop_assert_eq!(
                        response.status.as_u16(),
                        200,
                        "step {}: {}",
                        step,
                        response.body
                    );
                    sale.returned_amount += amount;
                    sale.returned = if sale.returned_amount == sale.amount {
                        Returned::Full
                    } else {
                        Returned::Amount
                    };
                    sale.reversed -= side_effect_points(&response.json());
                }
            }
            BillOp::ReturnFull { bill } => {
                let count = sales.len();
                let sale = &mut sales[bill.index(count)];
                let expected = match sale.returned {
                    Returned::Full => Some(633),
                    Returned::Lines | Returned::Amount => Some(639),
                    Returned::Nothing => None,
                };
                let body = json!({"type": "RETURN", "returnType": "FULL", "billNumber": sale.number,
                    "billingDate": return_date});
                let response = post_bill(&app, &body).await;
                if let Some(code) = expected {
                    prop_assert_eq!(
                        response.status.as_u16(),
                        400,
                        "step {}: {}",
                        step,
                        response.body
                    );
                    prop_assert_eq!(response.v2_error_code(), code, "step {}", step);
                } else {
                    prop_assert_eq!(
                        response.status.as_u16(),
                        200,
                        "step {}: {}",
                        step,
                        response.body
                    );
                    sale.returned = Returned::Full;
                    sale.reversed -= side_effect_points(&response.json());
                }
            }
        }

        // After every bill: nothing gives back more than it earned, everything returned gives
        // back exactly what it earned, each lot holds its proportion, and the balance adds up.
        let mut conn = app.state.db.read().await.unwrap();
        for sale in &sales {
            prop_assert!(
                sale.reversed >= 0 && sale.reversed <= sale.earned,
                "step {}: {} earned {} and gave back {}",
                step,
                sale.number,
                sale.earned,
                sale.reversed
            );
            let lots = points_store::lots_of_transaction(&mut conn, org, sale.id).await.unwrap();
            let lines = perks::transactions::store::lines(&mut conn, org, sale.id).await.unwrap();
            let held: i64 = lots.iter().map(|l| l.remaining).sum();
            prop_assert_eq!(
                held,
                sale.earned - sale.reversed,
                "step {}: lots of {}",
                step,
                &sale.number
            );
            if sale.returned == Returned::Full {
                prop_assert_eq!(
                    sale.reversed,
                    sale.earned,
                    "step {}: {} fully returned",
                    step,
                    &sale.number
                );
            }
            for lot in &lots {
                let line_index = lot.line_item_id.map(|id| {
                    let line = lines.iter().find(|l| l.id == id).unwrap();
                    line.item_code.trim_start_matches('I').parse::<usize>().unwrap()
                });
                // Shares are rounded to the program's point decimals (hundredths), so a lot may
                // differ from its exact proportion by at most one hundredth of a point.
                let exact = expected_remaining(sale, lot, line_index);
                prop_assert!(
                    (lot.remaining - exact).abs() <= ROUNDING_UNIT
                        && lot.remaining >= 0
                        && lot.remaining <= lot.awarded,
                    "step {}: lot {} of {} holds {} (exact share leaves {}) ({:?})",
                    step,
                    lot.id,
                    &sale.number,
                    lot.remaining,
                    exact,
                    sale
                );
            }
        }
        let balance = balances_of(&mut conn, org, customer, program).await;
        let net: i64 = sales.iter().map(|s| s.earned - s.reversed).sum();
        prop_assert_eq!(balance.current, net, "step {}: balance", step);
        let mismatches = ledger::verify(&mut conn, Some(org), 10).await.unwrap();
        prop_assert!(mismatches.is_empty(), "step {}: {:?}", step, mismatches);
    }
    app.state.db.close().await;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, max_shrink_iters: 100, ..ProptestConfig::default() })]

    #[test]
    fn returns_never_give_back_more_than_the_bill_earned(ops in bill_ops_strategy()) {
        runtime().block_on(run_bills_case(ops))?;
    }
}

// ----------------------------------------------------------------------------- concurrency

/// Twelve redemptions at once, each in its own write transaction, ask for more than the balance
/// holds while an expired lot is waiting to be expired by each of them: the balance never goes
/// below zero, the lot expires once, and the successful redemptions add up to at most the
/// balance (refusing only what the balance could not cover).
async fn parallel_redemptions_never_overdraw_one_balance(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845100070").await;
    let org = OrgId(app.org.org_id);
    let program = default_program(&app).await;
    let db = app.state.db.clone();
    let scope = move |now: i64| Scope { org, customer, program, till: None, now };
    let points = |p: i64| Fixed(p * 10_000);

    let mut tx = db.begin_write().await.unwrap();
    ledger::open_account(&mut tx, scope(START)).await.unwrap();
    for (amount, expires_at) in [(60, Some(START + DAY)), (70, None), (30, Some(START + 30 * DAY))]
    {
        let award = Award {
            points: points(amount),
            source: "TEST",
            rule: "concurrency",
            transaction_id: None,
            line_item_id: None,
            awarded_at: START,
            unlock_at: None,
            expires_at,
        };
        ledger::award(&mut tx, scope(START), &award).await.unwrap();
    }
    tx.commit().await.unwrap();

    // Two days later the first lot (60) has lapsed: 100 points are spendable.
    let now = START + 2 * DAY;
    let amounts = [15, 25, 10, 20, 30, 5, 40, 15, 25, 10, 20, 35];
    let mut tasks = Vec::new();
    for amount in amounts {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let mut tx = db.begin_write().await.unwrap();
            let meta = EntryMeta { note: "parallel", ..EntryMeta::default() };
            match ledger::spend(&mut tx, scope(now), EntryKind::Redeem, points(amount), meta).await
            {
                Ok(_) => {
                    tx.commit().await.unwrap();
                    (amount, true)
                }
                Err(LedgerError::Insufficient { .. }) => (amount, false),
                Err(e) => panic!("spend of {amount}: {e}"),
            }
        }));
    }
    let mut spent = 0;
    let mut refused = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            (amount, true) => spent += amount,
            (amount, false) => refused.push(amount),
        }
    }
    assert!(spent <= 100, "spent {spent} of 100");
    let mut conn = db.read().await.unwrap();
    let balance = balances_of(&mut conn, org, customer, program).await;
    assert_eq!(balance.current, points(100 - spent).0, "{balance:?}");
    assert_eq!(balance.expired, points(60).0, "the lapsed lot expires once: {balance:?}");
    assert_eq!(balance.redeemed, points(spent).0);
    for amount in &refused {
        assert!(points(*amount).0 > balance.current, "{amount} refused with {balance:?} left");
    }
    // In commit order, no entry ever took the balance below zero.
    let deltas: Vec<i64> = perks::dispatch!(&mut conn, |e| sqlx::query_scalar::<_, i64>(
        "SELECT current_delta FROM ledger_entries WHERE org_id = $1 AND customer_id = $2 ORDER BY id"
    )
    .bind(org.0)
    .bind(customer)
    .fetch_all(e)
    .await)
    .unwrap();
    let mut running = 0;
    for delta in deltas {
        running += delta;
        assert!(running >= 0, "the balance went to {running}");
    }
    let report = ledger::verify(&mut conn, Some(org), 10).await.unwrap();
    assert!(report.is_empty(), "{report:?}");
}

/// Regression: `spend` ran its expiry pass before locking the account, so a second redemption
/// that read a lapsed lot while the first held it uncommitted expired it again (remaining -60,
/// expired 120) once the first committed. The second now waits for the lock before looking.
async fn a_lapsed_lot_expires_once_when_two_redemptions_overlap(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845100071").await;
    let org = OrgId(app.org.org_id);
    let program = default_program(&app).await;
    let db = app.state.db.clone();
    let scope = move |now: i64| Scope { org, customer, program, till: None, now };
    let points = |p: i64| Fixed(p * 10_000);
    let mut tx = db.begin_write().await.unwrap();
    ledger::open_account(&mut tx, scope(START)).await.unwrap();
    for (amount, expires_at) in [(60, Some(START + DAY)), (100, None)] {
        let award = Award {
            points: points(amount),
            source: "TEST",
            rule: "overlap",
            transaction_id: None,
            line_item_id: None,
            awarded_at: START,
            unlock_at: None,
            expires_at,
        };
        ledger::award(&mut tx, scope(START), &award).await.unwrap();
    }
    tx.commit().await.unwrap();

    let now = START + 2 * DAY;
    let meta = EntryMeta { note: "overlap", ..EntryMeta::default() };
    let mut first = db.begin_write().await.unwrap();
    ledger::spend(&mut first, scope(now), EntryKind::Redeem, points(10), meta).await.unwrap();
    let second = {
        let db = db.clone();
        tokio::spawn(async move {
            let mut tx = db.begin_write().await.unwrap();
            ledger::spend(&mut tx, scope(now), EntryKind::Redeem, points(10), meta).await.unwrap();
            tx.commit().await.unwrap();
        })
    };
    // Let the second redemption get as far as it can while the first is uncommitted.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    first.commit().await.unwrap();
    second.await.unwrap();

    let mut conn = db.read().await.unwrap();
    let balance = balances_of(&mut conn, org, customer, program).await;
    assert_eq!(balance.expired, points(60).0, "{balance:?}");
    assert_eq!(balance.current, points(80).0, "{balance:?}");
    let report = ledger::verify(&mut conn, Some(org), 10).await.unwrap();
    assert!(report.is_empty(), "{report:?}");
}
