//! The ledger's rules: awards create lots, every movement is an appended entry that says which
//! lots it moved, and the balance projection moves with it in the same transaction.
//!
//! All functions run inside the caller's write transaction and take `now` explicitly, so that the
//! rules can be tested with time jumps.

use super::model::{Balances, EntryKind, Fixed, LotKind};
use super::store::{self, AccountRow, LotRow, NewEntry, NewLot};
use super::store_currency::{self, CurrencyBalanceRow};
use crate::db::{Connection, DbError};
use crate::org::model::OrgId;

/// Lots read per round when spending; a redemption larger than this many lots loops.
const LOTS_PER_ROUND: i64 = 200;
/// Rounds of [`LOTS_PER_ROUND`] before giving up: a bound on any single spend.
const ROUNDS_MAX: usize = 500;

/// The currency of the programs' own points. Every lot and entry carries a currency: this one,
/// or the id of one of the org's alternate currencies. A currency is one more dimension of an
/// account, so lots, FEFO, expiry, reversal and `perks verify` work the same in each; the
/// `…_in` functions take it, the others work on points.
pub const POINTS: i64 = 0;

/// Who and what a movement is about.
#[derive(Clone, Copy, Debug)]
pub struct Scope {
    pub org: OrgId,
    pub customer: i64,
    pub program: i64,
    pub till: Option<i64>,
    pub now: i64,
}

/// Why a ledger operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("insufficient points: {available} available")]
    Insufficient { available: Fixed },
    #[error("points to spend must be positive")]
    NotPositive,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Opens (creating if needed) and locks the customer's account in the program.
pub async fn open_account(c: &mut impl Connection, scope: Scope) -> Result<AccountRow, DbError> {
    store::ensure_account(c, scope.org, scope.customer, scope.program, scope.now).await?;
    store::lock_account(c, scope.org, scope.customer, scope.program)
        .await?
        .ok_or(DbError::Sqlx(sqlx::Error::RowNotFound))
}

/// Opens (creating if needed) the customer's balance of an alternate currency in the program,
/// with the program account locked (see [`open_account`]): every movement of the customer in the
/// program, whatever its currency, is serialised by that one lock.
pub async fn open_currency_account(
    c: &mut impl Connection,
    scope: Scope,
    currency: i64,
) -> Result<CurrencyBalanceRow, DbError> {
    open_account(c, scope).await?;
    store_currency::ensure_currency_balance(
        c,
        scope.org,
        scope.customer,
        scope.program,
        currency,
        scope.now,
    )
    .await?;
    store_currency::currency_balance(c, scope.org, scope.customer, scope.program, currency)
        .await?
        .ok_or(DbError::Sqlx(sqlx::Error::RowNotFound))
}

/// What an entry records besides its amounts.
#[derive(Clone, Copy, Debug, Default)]
pub struct EntryMeta<'a> {
    pub transaction_id: Option<i64>,
    pub reference: &'a str,
    pub rule: &'a str,
    pub note: &'a str,
    /// When the movement counts (a bill's time); defaults to `now`.
    pub effective_at: Option<i64>,
}

/// [`record_in`] for the programs' points: the form for entry writers that know no currency.
#[allow(dead_code)]
async fn record(
    c: &mut impl Connection,
    scope: Scope,
    kind: EntryKind,
    current_delta: i64,
    promised_delta: i64,
    movements: &[(i64, i64)],
    meta: EntryMeta<'_>,
) -> Result<i64, DbError> {
    record_in(c, scope, POINTS, kind, current_delta, promised_delta, movements, meta).await
}

/// The one place an entry is written: appends it, records the lots it moved, and moves the
/// balance projection of its currency by the entry's effect. Returns the entry id.
#[allow(clippy::too_many_arguments)]
async fn record_in(
    c: &mut impl Connection,
    scope: Scope,
    currency: i64,
    kind: EntryKind,
    current_delta: i64,
    promised_delta: i64,
    movements: &[(i64, i64)],
    meta: EntryMeta<'_>,
) -> Result<i64, DbError> {
    let entry = store::insert_entry_in(
        c,
        scope.org,
        currency,
        &NewEntry {
            customer_id: scope.customer,
            program_id: scope.program,
            kind: kind.as_str(),
            current_delta,
            promised_delta,
            transaction_id: meta.transaction_id,
            reference: meta.reference,
            rule: meta.rule,
            note: meta.note,
            till_id: scope.till,
            created_at: scope.now,
            effective_at: meta.effective_at.unwrap_or(scope.now),
        },
    )
    .await?;
    for &(lot, delta) in movements {
        store::move_lot(c, scope.org, entry, lot, delta).await?;
    }
    let effect = kind.effect(current_delta, promised_delta);
    if currency == POINTS {
        store::apply_balances(c, scope.org, scope.customer, scope.program, &effect, scope.now)
            .await?;
    } else {
        let key = (scope.customer, scope.program, currency);
        store_currency::ensure_currency_balance(c, scope.org, key.0, key.1, key.2, scope.now)
            .await?;
        store_currency::apply_currency_balances(c, scope.org, key, &effect, scope.now).await?;
    }
    Ok(entry)
}

/// An award about to be made.
#[derive(Clone, Debug)]
pub struct Award<'a> {
    pub points: Fixed,
    pub source: &'a str,
    pub rule: &'a str,
    pub transaction_id: Option<i64>,
    pub line_item_id: Option<i64>,
    pub awarded_at: i64,
    /// Set for promised points: the lot stays locked until then.
    pub unlock_at: Option<i64>,
    pub expires_at: Option<i64>,
}

/// Creates a lot for `award` and its entry; returns the lot id (None when nothing to award).
/// The caller has opened (and so locked) the customer's account with [`open_account`].
pub async fn award(
    c: &mut impl Connection,
    scope: Scope,
    award: &Award<'_>,
) -> Result<Option<i64>, DbError> {
    award_in(c, scope, POINTS, award).await
}

/// [`award`] in a currency (0: the program's points).
pub async fn award_in(
    c: &mut impl Connection,
    scope: Scope,
    currency: i64,
    award: &Award<'_>,
) -> Result<Option<i64>, DbError> {
    if !award.points.is_positive() {
        return Ok(None);
    }
    let promised = award.unlock_at.is_some_and(|at| at > scope.now);
    let kind = if promised { LotKind::Promised } else { LotKind::Regular };
    let lot = store::insert_lot_in(
        c,
        scope.org,
        currency,
        &NewLot {
            customer_id: scope.customer,
            program_id: scope.program,
            kind,
            source: award.source,
            rule: award.rule,
            transaction_id: award.transaction_id,
            line_item_id: award.line_item_id,
            awarded: award.points.0,
            awarded_at: award.awarded_at,
            unlock_at: if promised { award.unlock_at } else { None },
            expires_at: award.expires_at,
        },
    )
    .await?;
    let (entry_kind, current, promised_delta) = if promised {
        (EntryKind::PromisedAward, 0, award.points.0)
    } else {
        (EntryKind::Award, award.points.0, 0)
    };
    let meta = EntryMeta {
        transaction_id: award.transaction_id,
        rule: award.rule,
        effective_at: Some(award.awarded_at),
        ..EntryMeta::default()
    };
    let movements = [(lot, award.points.0)];
    record_in(c, scope, currency, entry_kind, current, promised_delta, &movements, meta).await?;
    Ok(Some(lot))
}

/// Takes `points` from the spendable lots, soonest-expiring first, as one entry of `kind`
/// (`Redeem` or a negative `Adjust`). Refused when the balance does not cover it.
pub async fn spend(
    c: &mut impl Connection,
    scope: Scope,
    kind: EntryKind,
    points: Fixed,
    meta: EntryMeta<'_>,
) -> Result<i64, LedgerError> {
    spend_in(c, scope, POINTS, kind, points, meta).await
}

/// [`spend`] in a currency (0: the program's points).
pub async fn spend_in(
    c: &mut impl Connection,
    scope: Scope,
    currency: i64,
    kind: EntryKind,
    points: Fixed,
    meta: EntryMeta<'_>,
) -> Result<i64, LedgerError> {
    // Lock before the expiry pass: two spends that both saw a lapsed lot would expire it twice.
    if store::lock_account(c, scope.org, scope.customer, scope.program).await?.is_none() {
        return Err(LedgerError::Insufficient { available: Fixed::ZERO });
    }
    if !points.is_positive() {
        return Err(LedgerError::NotPositive);
    }
    expire_customer(c, scope).await?;
    let current = current_balance_in(c, scope, currency)
        .await?
        .ok_or(LedgerError::Insufficient { available: Fixed::ZERO })?;
    if current < points.0 {
        return Err(LedgerError::Insufficient { available: Fixed(current.max(0)) });
    }
    let movements = take_fefo_in(c, scope, currency, points.0, &[]).await?;
    let taken: i64 = movements.iter().map(|(_, d)| -d).sum();
    if taken < points.0 {
        // The projection said yes but the lots say no: never spend what the lots do not hold.
        return Err(LedgerError::Insufficient { available: Fixed(taken) });
    }
    Ok(record_in(c, scope, currency, kind, -points.0, 0, &movements, meta).await?)
}

/// The customer's current balance in `currency` (0: the program's points), read under the
/// account's lock for points; `None` when the customer has no account in it.
pub async fn current_balance_in(
    c: &mut impl Connection,
    scope: Scope,
    currency: i64,
) -> Result<Option<i64>, DbError> {
    Ok(if currency == POINTS {
        store::lock_account(c, scope.org, scope.customer, scope.program)
            .await?
            .map(|a| a.current_points)
    } else {
        store_currency::currency_balance(c, scope.org, scope.customer, scope.program, currency)
            .await?
            .map(|b| b.current_points)
    })
}

/// Plans taking up to `wanted` from spendable lots of `currency` (skipping `exclude`),
/// soonest-expiring first; returns `(lot, negative delta)` pairs.
async fn take_fefo_in(
    c: &mut impl Connection,
    scope: Scope,
    currency: i64,
    wanted: i64,
    exclude: &[i64],
) -> Result<Vec<(i64, i64)>, DbError> {
    let mut movements = Vec::new();
    let mut left = wanted;
    let mut seen: Vec<i64> = exclude.to_vec();
    for _ in 0..ROUNDS_MAX {
        if left <= 0 {
            break;
        }
        let lots = store::spendable_lots_in(
            c,
            scope.org,
            scope.customer,
            scope.program,
            currency,
            scope.now,
            LOTS_PER_ROUND + seen.len() as i64,
        )
        .await?;
        let fresh: Vec<&LotRow> = lots.iter().filter(|l| !seen.contains(&l.id)).collect();
        if fresh.is_empty() {
            break;
        }
        for lot in fresh {
            if left <= 0 {
                break;
            }
            let take = lot.remaining.min(left);
            movements.push((lot.id, -take));
            seen.push(lot.id);
            left -= take;
        }
    }
    Ok(movements)
}

/// What reversing a spend gave back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Points put back into the lots the spend took them from.
    pub restored: Fixed,
    /// The share of lots that have expired since: not restored (their points would only have
    /// expired again), and it stays counted as redeemed.
    pub lapsed: Fixed,
    /// The `RedeemReversal` entry (none when nothing could be restored).
    pub entry: Option<i64>,
}

/// Gives back what the spend `entry` took, to the very lots it came from, as one
/// `RedeemReversal` entry with positive movements. Lots that have expired by `now` get nothing
/// back. The caller holds the account lock and makes sure an entry is reversed only once.
pub async fn reverse_spend(
    c: &mut impl Connection,
    scope: Scope,
    entry: i64,
    meta: EntryMeta<'_>,
) -> Result<Restored, DbError> {
    let moved = store::movements_of_entry(c, scope.org, entry).await?;
    let mut movements = Vec::with_capacity(moved.len());
    let mut lapsed = 0i64;
    // A spend moves lots of one currency only: the reversal goes back to that currency.
    let mut currency = POINTS;
    for (lot_id, delta) in moved {
        if delta >= 0 {
            continue;
        }
        let amount = -delta;
        let lot = store::get_lot(c, scope.org, lot_id).await?;
        if let Some(lot) = &lot {
            currency = lot.currency_id;
        }
        let valid = lot.is_some_and(|lot| lot.expires_at.is_none_or(|at| at > scope.now));
        if valid {
            movements.push((lot_id, amount));
        } else {
            lapsed += amount;
        }
    }
    let restored: i64 = movements.iter().map(|(_, d)| d).sum();
    let entry = if restored > 0 {
        let kind = EntryKind::RedeemReversal;
        Some(record_in(c, scope, currency, kind, restored, 0, &movements, meta).await?)
    } else {
        None
    };
    Ok(Restored { restored: Fixed(restored), lapsed: Fixed(lapsed), entry })
}

/// What a take-back (return reversal) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TakeBack {
    pub taken: Fixed,
    /// What could not be taken because the customer had already spent it and the program does
    /// not allow a negative balance.
    pub forgiven: Fixed,
}

/// Takes back points a returned bill earned: `wanted` pairs each lot the bill created with the
/// amount to reverse from it. What a lot no longer holds (spent or expired) comes from the other
/// spendable lots; what the balance cannot cover goes negative only if `allow_negative`.
pub async fn take_back(
    c: &mut impl Connection,
    scope: Scope,
    wanted: &[(LotRow, Fixed)],
    allow_negative: bool,
    meta: EntryMeta<'_>,
) -> Result<TakeBack, DbError> {
    take_back_in(c, scope, POINTS, wanted, allow_negative, meta).await
}

/// [`take_back`] in a currency: `wanted` are lots of `currency`, and what they no longer hold
/// comes from the customer's other lots of that currency.
pub async fn take_back_in(
    c: &mut impl Connection,
    scope: Scope,
    currency: i64,
    wanted: &[(LotRow, Fixed)],
    allow_negative: bool,
    meta: EntryMeta<'_>,
) -> Result<TakeBack, DbError> {
    let mut current_movements: Vec<(i64, i64)> = Vec::new();
    let mut promised_movements: Vec<(i64, i64)> = Vec::new();
    let mut shortfall = 0i64;
    // Points of an expired lot already left the balance through their expiry entry: taking
    // them again from other lots would charge the customer twice, so they are forgiven.
    let mut gone = 0i64;
    for (lot, amount) in wanted {
        let amount = amount.0.max(0);
        let still_valid = lot.expires_at.is_none_or(|at| at > scope.now);
        let available = if still_valid { lot.remaining.max(0) } else { 0 };
        let take = available.min(amount);
        if take > 0 {
            if lot.kind == LotKind::Promised.as_str() {
                promised_movements.push((lot.id, -take));
            } else {
                current_movements.push((lot.id, -take));
            }
        }
        if still_valid {
            shortfall += amount - take;
        } else {
            gone += amount - take;
        }
    }
    if shortfall > 0 {
        let exclude: Vec<i64> = wanted.iter().map(|(l, _)| l.id).collect();
        let more = take_fefo_in(c, scope, currency, shortfall, &exclude).await?;
        shortfall -= more.iter().map(|(_, d)| -d).sum::<i64>();
        current_movements.extend(more);
    }
    let from_current: i64 = current_movements.iter().map(|(_, d)| d).sum();
    let from_promised: i64 = promised_movements.iter().map(|(_, d)| d).sum();
    let (debt, forgiven) = if allow_negative { (shortfall, gone) } else { (0, shortfall + gone) };
    let total = -(from_current + from_promised) + debt;
    if total > 0 {
        let mut movements = current_movements;
        movements.extend(promised_movements);
        let kind = EntryKind::Return;
        record_in(c, scope, currency, kind, from_current - debt, from_promised, &movements, meta)
            .await?;
    }
    Ok(TakeBack { taken: Fixed(total), forgiven: Fixed(forgiven) })
}

/// Expires the customer's lots that lapsed by `now` (one entry per lot); returns the total.
/// The caller holds the account lock ([`open_account`]), so that no one expires a lot twice.
pub async fn expire_customer(c: &mut impl Connection, scope: Scope) -> Result<Fixed, DbError> {
    let mut total = 0;
    for _ in 0..ROUNDS_MAX {
        let due = store::lots_due(
            c,
            Some(scope.org),
            Some((scope.customer, scope.program)),
            scope.now,
            false,
            LOTS_PER_ROUND,
        )
        .await?;
        let count = due.len() as i64;
        for (_, lot) in due {
            total += expire_lot(c, scope, &lot).await?;
        }
        if count < LOTS_PER_ROUND {
            break;
        }
    }
    Ok(Fixed(total))
}

async fn expire_lot(c: &mut impl Connection, scope: Scope, lot: &LotRow) -> Result<i64, DbError> {
    if lot.remaining <= 0 {
        return Ok(0);
    }
    let meta = EntryMeta {
        transaction_id: lot.transaction_id,
        rule: &lot.rule,
        effective_at: lot.expires_at,
        ..EntryMeta::default()
    };
    let movements = [(lot.id, -lot.remaining)];
    record_in(c, scope, lot.currency_id, EntryKind::Expire, -lot.remaining, 0, &movements, meta)
        .await?;
    Ok(lot.remaining)
}

/// Unlocks one promised lot whose date has come: its points move from promised to current.
pub async fn unlock_lot(
    c: &mut impl Connection,
    scope: Scope,
    lot: &LotRow,
) -> Result<(), DbError> {
    store::set_lot_kind(c, scope.org, lot.id, LotKind::Regular).await?;
    if lot.remaining > 0 {
        let meta = EntryMeta {
            transaction_id: lot.transaction_id,
            rule: &lot.rule,
            effective_at: lot.unlock_at,
            ..EntryMeta::default()
        };
        // The points stay in the same lot; the entry only moves them between balances.
        let kind = EntryKind::Unlock;
        record_in(c, scope, lot.currency_id, kind, lot.remaining, -lot.remaining, &[], meta)
            .await?;
    }
    Ok(())
}

/// Expires or unlocks, across orgs, at most `limit` due lots, each in its own short step;
/// returns how many were handled. Scheduler jobs call this until it returns less than `limit`.
pub async fn process_due_lots(
    db: &crate::db::Db,
    now: i64,
    unlock: bool,
    limit: i64,
) -> Result<usize, DbError> {
    // Looking first on a read connection keeps an idle server from taking the writer (and an
    // fsync) on every tick.
    let due = {
        let mut conn = db.read().await?;
        store::lots_due(&mut conn, None, None, now, unlock, limit).await?
    };
    if due.is_empty() {
        return Ok(0);
    }
    let mut tx = db.begin_write().await?;
    for (org, lot) in &due {
        let scope = Scope {
            org: OrgId(*org),
            customer: lot.customer_id,
            program: lot.program_id,
            till: None,
            now,
        };
        store::lock_account(&mut tx, scope.org, scope.customer, scope.program).await?;
        // Another instance (or a bill) may have handled the lot meanwhile: act on what the row
        // says now, under the account lock.
        let Some(lot) = store::get_lot(&mut tx, scope.org, lot.id).await? else { continue };
        if unlock {
            if lot.kind == LotKind::Promised.as_str() && lot.unlock_at.is_some_and(|at| at <= now) {
                unlock_lot(&mut tx, scope, &lot).await?;
            }
        } else if lot.kind == LotKind::Regular.as_str()
            && lot.remaining > 0
            && lot.expires_at.is_some_and(|at| at <= now)
        {
            expire_lot(&mut tx, scope, &lot).await?;
        }
    }
    tx.commit().await?;
    Ok(due.len())
}

/// A balance that does not equal its entries, or a lot that does not equal its movements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    Balance {
        org: i64,
        customer: i64,
        program: i64,
        stored: Balances,
        from_entries: Balances,
    },
    /// An alternate currency's balance that does not equal its entries.
    CurrencyBalance {
        org: i64,
        customer: i64,
        program: i64,
        currency: i64,
        stored: Balances,
        from_entries: Balances,
    },
    Lot {
        org: i64,
        lot: i64,
        remaining: i64,
        from_movements: i64,
    },
}

/// What [`verify_report`] found: how many accounts it recomputed and the differences.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verification {
    /// Accounts (customer and program) whose balances were recomputed.
    pub checked: u64,
    /// At most the requested number of differences; empty when the ledger is consistent.
    pub mismatches: Vec<Mismatch>,
}

impl Verification {
    pub fn is_ok(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// Recomputes every balance (of one org, or all) from the entries and every lot from its
/// movements; returns the differences (at most `limit`).
pub async fn verify(
    c: &mut impl Connection,
    org: Option<OrgId>,
    limit: usize,
) -> Result<Vec<Mismatch>, DbError> {
    Ok(verify_report(c, org, limit).await?.mismatches)
}

/// [`verify`], also counting the accounts checked (what `perks verify` prints). Stops reading
/// accounts once `limit` differences are found.
pub async fn verify_report(
    c: &mut impl Connection,
    org: Option<OrgId>,
    limit: usize,
) -> Result<Verification, DbError> {
    let mut found = Vec::new();
    let mut checked = 0u64;
    let mut after = (0i64, 0i64);
    const PAGE: i64 = 500;
    loop {
        let page = store::accounts_page(c, org, after, PAGE).await?;
        let count = page.len() as i64;
        for (org_id, account) in page {
            after = (account.customer_id, account.program_id);
            checked += 1;
            let sums = store::entry_sums(c, OrgId(org_id), account.customer_id, account.program_id)
                .await?;
            let mut from_entries = Balances::default();
            for (kind, current, promised) in sums {
                if let Some(kind) = EntryKind::parse(&kind) {
                    from_entries += kind.effect(current, promised);
                }
            }
            let stored = account.balances();
            if stored != from_entries && found.len() < limit {
                found.push(Mismatch::Balance {
                    org: org_id,
                    customer: account.customer_id,
                    program: account.program_id,
                    stored,
                    from_entries,
                });
            }
        }
        if count < PAGE || found.len() >= limit {
            break;
        }
    }
    let mut after = (0i64, 0i64, 0i64);
    while found.len() < limit {
        let page = store_currency::currency_balances_page(c, org, after, PAGE).await?;
        let count = page.len() as i64;
        for (org_id, balance) in page {
            after = (balance.customer_id, balance.program_id, balance.currency_id);
            checked += 1;
            let sums = store::entry_sums_in(
                c,
                OrgId(org_id),
                balance.customer_id,
                balance.program_id,
                balance.currency_id,
            )
            .await?;
            let mut from_entries = Balances::default();
            for (kind, current, promised) in sums {
                if let Some(kind) = EntryKind::parse(&kind) {
                    from_entries += kind.effect(current, promised);
                }
            }
            let stored = balance.balances();
            if stored != from_entries && found.len() < limit {
                found.push(Mismatch::CurrencyBalance {
                    org: org_id,
                    customer: balance.customer_id,
                    program: balance.program_id,
                    currency: balance.currency_id,
                    stored,
                    from_entries,
                });
            }
        }
        if count < PAGE {
            break;
        }
    }
    let lots = store::inconsistent_lots(c, org, limit as i64).await?;
    for (org_id, lot, remaining, from_movements) in lots {
        if found.len() < limit {
            found.push(Mismatch::Lot { org: org_id, lot, remaining, from_movements });
        }
    }
    Ok(Verification { checked, mismatches: found })
}

// ------------------------------------------------------------------------ points operations
//
// Transfers, deductions, partial reversals, early conversion of promised points and expiry
// changes. Every balance change below still goes through [`record`].

/// Lots awarded at registration: Capillary does not let them be transferred.
pub const REGISTRATION_SOURCE: &str = "REGISTRATION";

/// Plans taking up to `wanted` from the spendable lots that `accept` lets through,
/// soonest-expiring first; returns each lot with the amount to take from it.
async fn take_fefo_lots(
    c: &mut impl Connection,
    scope: Scope,
    wanted: i64,
    accept: impl Fn(&LotRow) -> bool,
) -> Result<Vec<(LotRow, i64)>, DbError> {
    let mut taken: Vec<(LotRow, i64)> = Vec::new();
    let mut seen: Vec<i64> = Vec::new();
    let mut left = wanted;
    for _ in 0..ROUNDS_MAX {
        if left <= 0 {
            break;
        }
        let lots = store::spendable_lots(
            c,
            scope.org,
            scope.customer,
            scope.program,
            scope.now,
            LOTS_PER_ROUND + seen.len() as i64,
        )
        .await?;
        let fresh: Vec<LotRow> = lots.into_iter().filter(|l| !seen.contains(&l.id)).collect();
        if fresh.is_empty() {
            break;
        }
        for lot in fresh {
            seen.push(lot.id);
            if left <= 0 || !accept(&lot) {
                continue;
            }
            let take = lot.remaining.min(left);
            left -= take;
            taken.push((lot, take));
        }
    }
    Ok(taken)
}

/// Locks both accounts of a transfer (lower customer id first, so that two opposite transfers
/// cannot deadlock) and lets their lapsed lots expire.
async fn open_pair(c: &mut impl Connection, from: Scope, to: Scope) -> Result<(), DbError> {
    let (first, second) = if from.customer <= to.customer { (from, to) } else { (to, from) };
    open_account(c, first).await?;
    open_account(c, second).await?;
    expire_customer(c, from).await?;
    expire_customer(c, to).await?;
    Ok(())
}

/// Points the sender can transfer now: the spendable lots other than registration awards,
/// and never more than the balance. Opens (and locks) both accounts.
pub async fn transferable(
    c: &mut impl Connection,
    from: Scope,
    to: Scope,
) -> Result<Fixed, DbError> {
    open_pair(c, from, to).await?;
    let lots = crate::points::store_ops::spendable_sum_without(
        c,
        from.org,
        from.customer,
        from.program,
        from.now,
        REGISTRATION_SOURCE,
    )
    .await?;
    let account = store::lock_account(c, from.org, from.customer, from.program).await?;
    let balance = account.map(|a| a.current_points).unwrap_or(0);
    Ok(Fixed(lots.min(balance).max(0)))
}

/// What a transfer moved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transferred {
    pub out_entry: i64,
    pub in_entry: i64,
    /// Each receiving lot with the points it got and the expiry it kept.
    pub received_lots: Vec<(i64, i64, Option<i64>)>,
}

/// Moves `points` from the sender's transferable lots (soonest-expiring first) to new lots of
/// the receiver that keep each sent lot's expiry: one `TransferOut` and one `TransferIn` entry,
/// both accounts locked. Refused when the transferable points do not cover it.
pub async fn transfer(
    c: &mut impl Connection,
    from: Scope,
    to: Scope,
    points: Fixed,
    meta: EntryMeta<'_>,
) -> Result<Transferred, LedgerError> {
    if !points.is_positive() {
        return Err(LedgerError::NotPositive);
    }
    let available = transferable(c, from, to).await?;
    if available.0 < points.0 {
        return Err(LedgerError::Insufficient { available });
    }
    let taken = take_fefo_lots(c, from, points.0, |l| l.source != REGISTRATION_SOURCE).await?;
    let total: i64 = taken.iter().map(|(_, t)| t).sum();
    if total < points.0 {
        return Err(LedgerError::Insufficient { available: Fixed(total) });
    }
    let out_movements: Vec<(i64, i64)> = taken.iter().map(|(l, t)| (l.id, -t)).collect();
    let out_entry =
        record(c, from, EntryKind::TransferOut, -points.0, 0, &out_movements, meta).await?;
    // One receiving lot per distinct expiry: a transfer never extends the life of a point.
    let mut by_expiry: Vec<(Option<i64>, i64)> = Vec::new();
    for (lot, amount) in &taken {
        match by_expiry.iter_mut().find(|(e, _)| *e == lot.expires_at) {
            Some((_, sum)) => *sum += amount,
            None => by_expiry.push((lot.expires_at, *amount)),
        }
    }
    let mut in_movements = Vec::with_capacity(by_expiry.len());
    let mut received_lots = Vec::with_capacity(by_expiry.len());
    for (expires_at, amount) in by_expiry {
        let lot = store::insert_lot(
            c,
            to.org,
            &NewLot {
                customer_id: to.customer,
                program_id: to.program,
                kind: LotKind::Regular,
                source: "TRANSFER",
                rule: meta.rule,
                transaction_id: None,
                line_item_id: None,
                awarded: amount,
                awarded_at: to.now,
                unlock_at: None,
                expires_at,
            },
        )
        .await?;
        in_movements.push((lot, amount));
        received_lots.push((lot, amount, expires_at));
    }
    let in_entry = record(c, to, EntryKind::TransferIn, points.0, 0, &in_movements, meta).await?;
    Ok(Transferred { out_entry, in_entry, received_lots })
}

/// What a deduction did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deducted {
    pub entry: i64,
    /// Points the lots gave.
    pub taken: Fixed,
    /// Points beyond the lots, which drove the balance below zero (only when allowed).
    pub debt: Fixed,
}

/// Deducts `points` as one negative `Adjust` entry: first from `target` (a lot of the customer's,
/// when the request names one), then soonest-expiring first. Beyond the balance only with
/// `allow_negative` (the rest becomes a negative balance). The caller has opened the account.
pub async fn deduct(
    c: &mut impl Connection,
    scope: Scope,
    points: Fixed,
    target: Option<i64>,
    allow_negative: bool,
    meta: EntryMeta<'_>,
) -> Result<Deducted, LedgerError> {
    deduct_in(c, scope, POINTS, points, target, allow_negative, meta).await
}

/// [`deduct`] in a currency (0: the program's points): the balance checked is that currency's
/// and only its lots give; `target` must be a lot of that currency. The caller has opened the
/// account ([`open_currency_account`] for an alternate currency).
pub async fn deduct_in(
    c: &mut impl Connection,
    scope: Scope,
    currency: i64,
    points: Fixed,
    target: Option<i64>,
    allow_negative: bool,
    meta: EntryMeta<'_>,
) -> Result<Deducted, LedgerError> {
    if !points.is_positive() {
        return Err(LedgerError::NotPositive);
    }
    expire_customer(c, scope).await?;
    let current = current_balance_in(c, scope, currency)
        .await?
        .ok_or(LedgerError::Insufficient { available: Fixed::ZERO })?;
    if !allow_negative && current < points.0 {
        return Err(LedgerError::Insufficient { available: Fixed(current.max(0)) });
    }
    let mut movements: Vec<(i64, i64)> = Vec::new();
    let mut left = points.0;
    if let Some(lot_id) = target
        && let Some(lot) = store::get_lot(c, scope.org, lot_id).await?
        && lot.currency_id == currency
        && lot.kind == LotKind::Regular.as_str()
        && lot.expires_at.is_none_or(|at| at > scope.now)
        && lot.remaining > 0
    {
        let take = lot.remaining.min(left);
        movements.push((lot.id, -take));
        left -= take;
    }
    if left > 0 {
        let exclude: Vec<i64> = movements.iter().map(|(l, _)| *l).collect();
        let more = take_fefo_in(c, scope, currency, left, &exclude).await?;
        left -= more.iter().map(|(_, d)| -d).sum::<i64>();
        movements.extend(more);
    }
    if left > 0 && !allow_negative {
        // The projection said yes but the lots say no: never deduct what the lots do not hold.
        return Err(LedgerError::Insufficient { available: Fixed(points.0 - left) });
    }
    let entry =
        record_in(c, scope, currency, EntryKind::Adjust, -points.0, 0, &movements, meta).await?;
    Ok(Deducted { entry, taken: Fixed(points.0 - left), debt: Fixed(left) })
}

/// What one (possibly partial) reversal of a spend did, lot by lot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartReversal {
    pub restored: Fixed,
    pub lapsed: Fixed,
    /// The `RedeemReversal` entry (none when nothing could be restored).
    pub entry: Option<i64>,
    /// (lot, restored, lapsed) for every lot this reversal took care of.
    pub lots: Vec<(i64, i64, i64)>,
}

/// Reverses `wanted` points of the spend `entry`, given what earlier reversals already took care
/// of per lot (`handled`). The spend is unwound from its last lots: lots that have not expired
/// get their points back, latest-expiring first; the share of lots expired by now is not
/// restored (it would only expire again) and counts as lapsed. One `RedeemReversal` entry; the
/// caller holds the account lock and checks `wanted` against what is left to reverse.
pub async fn reverse_spend_part(
    c: &mut impl Connection,
    scope: Scope,
    entry: i64,
    handled: &[(i64, i64)],
    wanted: i64,
    meta: EntryMeta<'_>,
) -> Result<PartReversal, DbError> {
    let moved = store::movements_of_entry(c, scope.org, entry).await?;
    let mut open: Vec<(LotRow, i64, bool)> = Vec::with_capacity(moved.len());
    // A spend moves lots of one currency only: the reversal goes back to that currency.
    let mut currency = POINTS;
    for (lot_id, delta) in moved {
        let done = handled.iter().filter(|(l, _)| *l == lot_id).map(|(_, d)| d).sum::<i64>();
        let left = -delta - done;
        if left <= 0 {
            continue;
        }
        let Some(lot) = store::get_lot(c, scope.org, lot_id).await? else { continue };
        currency = lot.currency_id;
        let valid = lot.expires_at.is_none_or(|at| at > scope.now);
        open.push((lot, left, valid));
    }
    // Valid lots first, the latest-expiring (never-expiring) first; then the expired ones.
    open.sort_by(|(a, _, va), (b, _, vb)| {
        vb.cmp(va)
            .then_with(|| match (a.expires_at, b.expires_at) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, Some(_)) => std::cmp::Ordering::Less,
                (Some(_), None) => std::cmp::Ordering::Greater,
                (Some(x), Some(y)) => y.cmp(&x),
            })
            .then_with(|| b.id.cmp(&a.id))
    });
    let mut left = wanted;
    let mut result = PartReversal::default();
    let mut movements = Vec::new();
    for (lot, open_points, valid) in open {
        if left <= 0 {
            break;
        }
        let amount = open_points.min(left);
        left -= amount;
        if valid {
            movements.push((lot.id, amount));
            result.restored = result.restored + Fixed(amount);
            result.lots.push((lot.id, amount, 0));
        } else {
            result.lapsed = result.lapsed + Fixed(amount);
            result.lots.push((lot.id, 0, amount));
        }
    }
    if result.restored.is_positive() {
        result.entry = Some(
            record_in(
                c,
                scope,
                currency,
                EntryKind::RedeemReversal,
                result.restored.0,
                0,
                &movements,
                meta,
            )
            .await?,
        );
    }
    Ok(result)
}

/// Makes a promised lot redeemable now (an external trigger, ahead of its date): the points
/// move from promised to current in the same lot. Returns the points converted.
pub async fn convert_promised(
    c: &mut impl Connection,
    scope: Scope,
    lot: &LotRow,
    meta: EntryMeta<'_>,
) -> Result<Fixed, DbError> {
    if lot.kind != LotKind::Promised.as_str() {
        return Ok(Fixed::ZERO);
    }
    store::set_lot_kind(c, scope.org, lot.id, LotKind::Regular).await?;
    if lot.remaining > 0 {
        record(c, scope, EntryKind::Unlock, lot.remaining, -lot.remaining, &[], meta).await?;
    }
    Ok(Fixed(lot.remaining.max(0)))
}

/// Awards points as a promised lot whatever `unlock_at` says: with no date, the lot waits for an
/// external trigger ([`convert_promised`]). The caller has opened the account.
pub async fn award_promised(
    c: &mut impl Connection,
    scope: Scope,
    award: &Award<'_>,
) -> Result<Option<i64>, DbError> {
    if !award.points.is_positive() {
        return Ok(None);
    }
    let lot = store::insert_lot(
        c,
        scope.org,
        &NewLot {
            customer_id: scope.customer,
            program_id: scope.program,
            kind: LotKind::Promised,
            source: award.source,
            rule: award.rule,
            transaction_id: award.transaction_id,
            line_item_id: award.line_item_id,
            awarded: award.points.0,
            awarded_at: award.awarded_at,
            unlock_at: award.unlock_at,
            expires_at: award.expires_at,
        },
    )
    .await?;
    let meta = EntryMeta {
        transaction_id: award.transaction_id,
        rule: award.rule,
        effective_at: Some(award.awarded_at),
        ..EntryMeta::default()
    };
    record(c, scope, EntryKind::PromisedAward, 0, award.points.0, &[(lot, award.points.0)], meta)
        .await?;
    Ok(Some(lot))
}

/// Moves a lot's expiry; a date already past expires what the lot still holds at once (an
/// `Expire` entry). The caller has opened the account.
pub async fn change_expiry(
    c: &mut impl Connection,
    scope: Scope,
    lot: i64,
    expires_at: Option<i64>,
) -> Result<Fixed, DbError> {
    crate::points::store_ops::set_lot_expiry(c, scope.org, lot, expires_at).await?;
    if expires_at.is_some_and(|at| at <= scope.now) {
        return expire_customer(c, scope).await;
    }
    Ok(Fixed::ZERO)
}
