//! Reads over a customer's lots: when points expire (expiry schedule), when promised points
//! become redeemable (conversion schedule), and which program(s) a read covers.

use chrono_tz::Tz;

use super::model::{Fixed, LotKind};
use super::store::LotRow;
use super::store_ops::{self, LotFilter};
use crate::db::{Connection, DbError};
use crate::error::{ApiError, Code};
use crate::org::model::OrgId;
use crate::programs::cache::ProgramCache;
use crate::programs::engine::CompiledProgram;
use crate::programs::model::{ExpiryKind, ProgramError, ProgramId};

/// Lots one schedule read looks at, at most (a bound on work per read).
pub const SCHEDULE_LOTS_MAX: i64 = 10_000;
/// The default end of a schedule window: a hundred years from now.
pub const HUNDRED_YEARS_MILLIS: i64 = 100 * 366 * 86_400_000;

/// The programs a read covers: every program with `all`, else `program` (1101 when it is not
/// one of the org's), else the default one.
pub async fn programs_for(
    cache: &ProgramCache,
    c: &mut impl Connection,
    org: OrgId,
    program: Option<i64>,
    all: bool,
) -> Result<Vec<CompiledProgram>, ApiError> {
    let map = |e: ProgramError| match e {
        ProgramError::NotFound => ApiError::new(Code::InvalidProgramId),
        other => ApiError::from(other),
    };
    if all {
        return crate::programs::service::programs_of_org(cache, c, org).await.map_err(map);
    }
    match program {
        Some(id) => Ok(vec![
            crate::programs::service::program_by_id(cache, c, org, ProgramId(id))
                .await
                .map_err(map)?,
        ]),
        // No store holds id 0: the org's default program.
        None => Ok(vec![
            crate::programs::service::program_for_store(cache, c, org, 0).await.map_err(map)?,
        ]),
    }
}

/// Capillary's `pointsType` of a lot, from how it was awarded.
pub fn points_type(source: &str) -> &'static str {
    match source {
        "TRANSACTION" => "bill_regular",
        "LINE_ITEM" => "line_item_regular",
        "MANUAL" => "bill_promotions",
        _ => "customer_promotions",
    }
}

/// Capillary's `expiryType`: `rolling` for a program whose points expire a fixed time after
/// each award, `fixed` for a calendar date (end of period, fixed date).
pub fn expiry_type(program: &CompiledProgram) -> &'static str {
    match program.doc.expiry.kind {
        ExpiryKind::Rolling => "rolling",
        _ => "fixed",
    }
}

/// The local date of an instant, `YYYY-MM-DD`.
pub fn local_date(millis: i64, tz: Tz) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.with_timezone(&tz).format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// One row of an expiry schedule: points of one program and type expiring on one day.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpiryRow {
    pub points: Fixed,
    pub expires_at: i64,
    pub program_id: i64,
    pub points_type: &'static str,
    pub expiry_type: &'static str,
    pub date: String,
}

/// Every lot of `f` (up to [`SCHEDULE_LOTS_MAX`]), in expiry order.
async fn all_lots(
    c: &mut impl Connection,
    org: OrgId,
    f: &LotFilter,
) -> Result<Vec<LotRow>, DbError> {
    let mut lots = Vec::new();
    const PAGE: i64 = 1000;
    while (lots.len() as i64) < SCHEDULE_LOTS_MAX {
        let page = store_ops::lots_page(c, org, f, PAGE, lots.len() as i64).await?;
        let done = (page.len() as i64) < PAGE;
        lots.extend(page);
        if done {
            break;
        }
    }
    Ok(lots)
}

/// Points still to expire in `programs`, by program, points type, expiry type and local day,
/// in date order, for expiry after `from` up to `to`; with `earliest_only`, only the soonest
/// day of each (program, points type, expiry type).
#[allow(clippy::too_many_arguments)]
pub async fn expiry_schedule(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    programs: &[CompiledProgram],
    from: i64,
    to: i64,
    earliest_only: bool,
    tz: Tz,
) -> Result<Vec<ExpiryRow>, DbError> {
    let filter = LotFilter {
        customer,
        program: if programs.len() == 1 { programs.first().map(|p| p.id.0) } else { None },
        kind: Some(LotKind::Regular.as_str()),
        with_points: true,
        expires_after: Some(from),
        expires_until: Some(to),
    };
    let mut rows: Vec<ExpiryRow> = Vec::new();
    for lot in all_lots(c, org, &filter).await? {
        let Some(program) = programs.iter().find(|p| p.id.0 == lot.program_id) else { continue };
        let Some(expires_at) = lot.expires_at else { continue };
        let date = local_date(expires_at, tz);
        let kind = points_type(&lot.source);
        let expiry = expiry_type(program);
        match rows.iter_mut().find(|r| {
            r.program_id == lot.program_id
                && r.points_type == kind
                && r.expiry_type == expiry
                && r.date == date
        }) {
            Some(row) => row.points = row.points + Fixed(lot.remaining),
            None => rows.push(ExpiryRow {
                points: Fixed(lot.remaining),
                expires_at,
                program_id: lot.program_id,
                points_type: kind,
                expiry_type: expiry,
                date,
            }),
        }
    }
    if earliest_only {
        let mut kept: Vec<ExpiryRow> = Vec::new();
        for row in rows {
            let seen = kept.iter().any(|k| {
                k.program_id == row.program_id
                    && k.points_type == row.points_type
                    && k.expiry_type == row.expiry_type
            });
            if !seen {
                kept.push(row);
            }
        }
        rows = kept;
    }
    Ok(rows)
}

/// One row of a conversion schedule: promised points of one program and type becoming
/// redeemable on one day.
#[derive(Clone, Debug, PartialEq)]
pub struct ConversionRow {
    pub points: Fixed,
    pub unlock_at: i64,
    pub program_id: i64,
    pub points_type: &'static str,
    pub date: String,
}

/// Promised points waiting for an external trigger (no date), per lot.
#[derive(Clone, Debug, PartialEq)]
pub struct TriggerRow {
    pub points: Fixed,
    pub program_id: i64,
    pub points_type: &'static str,
    pub lot_id: i64,
    pub transaction_id: Option<i64>,
    pub awarded_at: i64,
}

/// Promised points of `programs` that become redeemable from `from` up to `to` (both
/// inclusive; a lot past its date is due `now`), by program, points type and local day in date
/// order; and those waiting for a trigger.
#[allow(clippy::too_many_arguments)]
pub async fn conversion_schedule(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    programs: &[CompiledProgram],
    from: i64,
    to: i64,
    now: i64,
    tz: Tz,
) -> Result<(Vec<ConversionRow>, Vec<TriggerRow>), DbError> {
    let filter = LotFilter {
        customer,
        program: if programs.len() == 1 { programs.first().map(|p| p.id.0) } else { None },
        kind: Some(LotKind::Promised.as_str()),
        with_points: true,
        expires_after: None,
        expires_until: None,
    };
    let mut lots = all_lots(c, org, &filter).await?;
    lots.retain(|l| programs.iter().any(|p| p.id.0 == l.program_id));
    lots.sort_by_key(|l| (l.unlock_at.unwrap_or(i64::MAX), l.id));
    let mut dated: Vec<ConversionRow> = Vec::new();
    let mut triggered = Vec::new();
    for lot in lots {
        let kind = points_type(&lot.source);
        let Some(unlock_at) = lot.unlock_at else {
            triggered.push(TriggerRow {
                points: Fixed(lot.remaining),
                program_id: lot.program_id,
                points_type: kind,
                lot_id: lot.id,
                transaction_id: lot.transaction_id,
                awarded_at: lot.awarded_at,
            });
            continue;
        };
        // A lot past its date converts at the job's next tick: it is due now.
        let due = unlock_at.max(now);
        if due < from || due > to {
            continue;
        }
        let date = local_date(due, tz);
        match dated
            .iter_mut()
            .find(|r| r.program_id == lot.program_id && r.points_type == kind && r.date == date)
        {
            Some(row) => row.points = row.points + Fixed(lot.remaining),
            None => dated.push(ConversionRow {
                points: Fixed(lot.remaining),
                unlock_at: due,
                program_id: lot.program_id,
                points_type: kind,
                date,
            }),
        }
    }
    Ok((dated, triggered))
}
