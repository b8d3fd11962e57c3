//! Bill times on the wire: v2 ISO-8601 (offset kept, none means UTC), v1.1 `YYYY-MM-DD HH:MM:SS`
//! (offset ignored, clock time in the store's zone), and their formatting for reads.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use super::model::TransactionError;
use crate::error::Code;

/// An instant in UTC millis and the offset to show it with (`+05:30`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BillTime {
    pub millis: i64,
    pub offset: String,
}

fn invalid(field: &str, value: &str) -> TransactionError {
    TransactionError::coded(
        Code::InvalidInput,
        format!("{field} '{value}' is not a valid date-time"),
    )
}

fn offset_text(offset: FixedOffset) -> String {
    let seconds = offset.local_minus_utc();
    let sign = if seconds < 0 { '-' } else { '+' };
    let minutes = seconds.abs() / 60;
    format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
}

fn naive(value: &str) -> Option<NaiveDateTime> {
    const FORMATS: [&str; 4] =
        ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"];
    FORMATS.iter().find_map(|f| NaiveDateTime::parse_from_str(value, f).ok()).or_else(|| {
        NaiveDate::parse_from_str(value, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0))
    })
}

/// The instant of a wall-clock time in `tz` (the earlier one in a DST overlap; a time in a DST
/// gap moves forward by the gap).
pub fn local_to_millis(local: NaiveDateTime, tz: Tz) -> i64 {
    match tz.from_local_datetime(&local) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
            t.timestamp_millis()
        }
        chrono::LocalResult::None => {
            tz.from_utc_datetime(&local).timestamp_millis()
                - i64::from(tz.offset_from_utc_datetime(&local).fix().local_minus_utc()) * 1000
        }
    }
}

/// v2: ISO-8601 with an offset is that instant (the offset is kept for reads); without one the
/// time is UTC. With `wall_clock` (`CONF_ORG_DISABLE_MACHINE_TIME_CONV`) the clock time is taken
/// as is, in the store's zone, and any offset is dropped. Absent means now.
pub fn parse_v2(
    field: &str,
    value: Option<&str>,
    tz: Tz,
    wall_clock: bool,
    now: i64,
) -> Result<BillTime, TransactionError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(BillTime { millis: now, offset: zone_offset(now, tz) });
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(value)
        .or_else(|_| DateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%z"))
    {
        if wall_clock {
            let millis = local_to_millis(t.naive_local(), tz);
            return Ok(BillTime { millis, offset: zone_offset(millis, tz) });
        }
        return Ok(BillTime { millis: t.timestamp_millis(), offset: offset_text(*t.offset()) });
    }
    let local = naive(value).ok_or_else(|| invalid(field, value))?;
    if wall_clock {
        let millis = local_to_millis(local, tz);
        return Ok(BillTime { millis, offset: zone_offset(millis, tz) });
    }
    Ok(BillTime {
        millis: Utc.from_utc_datetime(&local).timestamp_millis(),
        offset: "+00:00".into(),
    })
}

/// v1.1: `YYYY-MM-DD HH:MM:SS`; any offset is ignored and the clock time is read in the store's
/// zone. Absent means now.
pub fn parse_v1(
    field: &str,
    value: Option<&str>,
    tz: Tz,
    now: i64,
) -> Result<BillTime, TransactionError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(BillTime { millis: now, offset: zone_offset(now, tz) });
    };
    let local = match DateTime::parse_from_rfc3339(value)
        .or_else(|_| DateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S%z"))
    {
        Ok(t) => t.naive_local(),
        Err(_) => naive(value).ok_or_else(|| invalid(field, value))?,
    };
    let millis = local_to_millis(local, tz);
    Ok(BillTime { millis, offset: zone_offset(millis, tz) })
}

/// The zone's offset at an instant, as `+05:30`.
pub fn zone_offset(millis: i64, tz: Tz) -> String {
    let t = DateTime::from_timestamp_millis(millis).unwrap_or_default();
    offset_text(tz.offset_from_utc_datetime(&t.naive_utc()).fix())
}

/// ISO-8601 in UTC with `Z`.
pub fn iso_utc(millis: i64) -> String {
    DateTime::from_timestamp_millis(millis)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// ISO-8601 in the zone, with its offset (v2 reads).
pub fn iso_in(millis: i64, tz: Tz) -> String {
    DateTime::from_timestamp_millis(millis)
        .map(|t| t.with_timezone(&tz).format("%Y-%m-%dT%H:%M:%S%:z").to_string())
        .unwrap_or_default()
}

/// `YYYY-MM-DD HH:MM:SS` in the zone, no offset (v1.1 reads).
pub fn v1_time(millis: i64, tz: Tz) -> String {
    DateTime::from_timestamp_millis(millis)
        .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KOLKATA: Tz = chrono_tz::Asia::Kolkata;

    #[test]
    fn v2_keeps_the_instant_and_the_offset() {
        let t =
            parse_v2("billingDate", Some("2026-01-10T10:00:00+07:00"), KOLKATA, false, 0).unwrap();
        assert_eq!(iso_utc(t.millis), "2026-01-10T03:00:00Z");
        assert_eq!(t.offset, "+07:00");
        assert_eq!(iso_in(t.millis, KOLKATA), "2026-01-10T08:30:00+05:30");
    }

    #[test]
    fn v2_without_offset_is_utc() {
        let t = parse_v2("billingDate", Some("2026-01-10T10:00:00"), KOLKATA, false, 0).unwrap();
        assert_eq!(iso_in(t.millis, KOLKATA), "2026-01-10T15:30:00+05:30");
    }

    #[test]
    fn wall_clock_mode_drops_the_offset() {
        let t =
            parse_v2("billingDate", Some("2026-01-10T10:00:00+07:00"), KOLKATA, true, 0).unwrap();
        assert_eq!(iso_in(t.millis, KOLKATA), "2026-01-10T10:00:00+05:30");
    }

    #[test]
    fn v1_ignores_offsets_and_reads_the_store_zone() {
        let with = parse_v1("billing_time", Some("2026-01-10T10:00:00+07:00"), KOLKATA, 0).unwrap();
        let without = parse_v1("billing_time", Some("2026-01-10 10:00:00"), KOLKATA, 0).unwrap();
        assert_eq!(with.millis, without.millis);
        assert_eq!(v1_time(without.millis, KOLKATA), "2026-01-10 10:00:00");
    }

    #[test]
    fn garbage_is_refused() {
        assert!(parse_v2("billingDate", Some("yesterday"), KOLKATA, false, 0).is_err());
        assert!(parse_v1("billing_time", Some("10/01/2026"), KOLKATA, 0).is_err());
    }
}
