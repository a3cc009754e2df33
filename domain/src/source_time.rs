//! Source times (an integration's `timestampProperty`) and the stamps that order writes by
//! them. Rules: docs/DECISIONS.md, "Source-time ordering".
//!
//! A stamp is text that sorts as the write it records should win: 15 digits of epoch
//! milliseconds, `|`, then a tiebreak. Stored beside each attribute, it lets one DynamoDB
//! condition (`NOT stored > sent`) decide every attribute of a write without a read.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::user_data::AttrValue;

/// Below this a number is epoch seconds, from it on epoch milliseconds: 10^11 s is the year
/// 5138, 10^11 ms is 1973-03-03 (no source of today's webhooks sends times before it).
pub const SECONDS_BELOW: i64 = 100_000_000_000;
/// 9999-12-31T23:59:59.999Z: the latest time that fits the stamp's 15 digits as RFC 3339.
pub const MAX_MS: i64 = 253_402_300_799_999;

/// Why a source time is refused; the text is what the caller reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceTimeError {
    #[error("the source time is missing")]
    Missing,
    #[error("a source time must be an RFC 3339 date-time or epoch seconds or milliseconds")]
    Format,
    #[error("a source time must lie between 1970-01-01 and 9999-12-31")]
    Range,
}

/// A source time as epoch milliseconds: an RFC 3339 string, or a non-negative number (or a
/// string of digits) of epoch seconds (below [`SECONDS_BELOW`], with at most 3 decimals) or
/// milliseconds. Read from the text, never through a float.
pub fn parse(v: &Value) -> Result<i64, SourceTimeError> {
    let text = match v {
        Value::String(s) => s.clone(),
        v => crate::exact::number_text(v).ok_or(SourceTimeError::Format)?.into_owned(),
    };
    let ms = if text.bytes().next().is_some_and(|b| b.is_ascii_digit()) && !text.contains(['-', ':']) {
        epoch_ms(&text)?
    } else if v.is_string() {
        let t = OffsetDateTime::parse(&text, &Rfc3339).map_err(|_| SourceTimeError::Format)?;
        i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| SourceTimeError::Range)?
    } else {
        return Err(SourceTimeError::Format);
    };
    if (0..=MAX_MS).contains(&ms) { Ok(ms) } else { Err(SourceTimeError::Range) }
}

fn epoch_ms(text: &str) -> Result<i64, SourceTimeError> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(SourceTimeError::Format);
    }
    if int.len() > 18 {
        return Err(SourceTimeError::Range);
    }
    let n: i64 = int.parse().map_err(|_| SourceTimeError::Format)?;
    if n < SECONDS_BELOW {
        if frac.len() > 3 {
            return Err(SourceTimeError::Format);
        }
        let millis: i64 = format!("{frac:0<3}").parse().map_err(|_| SourceTimeError::Format)?;
        Ok(n * 1000 + millis)
    } else if frac.is_empty() {
        Ok(n)
    } else {
        Err(SourceTimeError::Format)
    }
}

/// The stamp of a value written at `ms`. On equal times the greater tiebreak wins: a hash of
/// the value's type and text, so that two writes of one time end the same in either arrival
/// order. Pinned by a test: stored stamps must keep comparing with new ones.
pub fn value_stamp(ms: i64, value: &AttrValue) -> String {
    let (tag, text) = match value {
        AttrValue::String(s) => ('S', s.as_str()),
        AttrValue::Date(s) => ('D', s.as_str()),
        AttrValue::Number(s) => ('N', s.as_str()),
        AttrValue::Boolean(true) => ('B', "true"),
        AttrValue::Boolean(false) => ('B', "false"),
    };
    format!("{ms:015}|{:016x}", fnv1a(tag, text))
}

/// The stamp of a removal (`$unset`, or a `replace` leaving the attribute out) at `ms`: on
/// equal times any value wins over it (an empty tiebreak sorts first).
pub fn removal_stamp(ms: i64) -> String {
    format!("{ms:015}|")
}

/// The greatest stamp of `ms`: an `$increment` at `ms` applies unless the attribute's value is
/// from a later time (an increment changes a value, it does not date it).
pub fn increment_bound(ms: i64) -> String {
    format!("{ms:015}|~")
}

/// FNV-1a (64 bits): fixed for ever, unlike the standard library's hasher.
fn fnv1a(tag: char, text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in [tag as u8, 0].iter().chain(text.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seconds_and_milliseconds_are_told_apart_by_magnitude() {
        assert_eq!(parse(&json!(1_733_480_000)), Ok(1_733_480_000_000));
        assert_eq!(parse(&json!("1733480000.5")), Ok(1_733_480_000_500));
        assert_eq!(parse(&json!(1_733_480_000_123_i64)), Ok(1_733_480_000_123));
        assert_eq!(parse(&json!(99_999_999_999_i64)), Ok(99_999_999_999_000));
        assert_eq!(parse(&json!(100_000_000_000_i64)), Ok(100_000_000_000));
        assert_eq!(parse(&json!("2024-12-06T10:00:00.250+01:00")), Ok(1_733_475_600_250));
        assert_eq!(parse(&json!("2024-12-06T09:00:00Z")), Ok(1_733_475_600_000));
        for bad in [json!(-1), json!("yesterday"), json!(true), json!(null), json!("1.2345"), json!("12e3")] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
        assert_eq!(parse(&json!(MAX_MS + 1)), Err(SourceTimeError::Range));
        assert_eq!(parse(&json!("1969-12-31T23:59:59Z")), Err(SourceTimeError::Range));
    }

    #[test]
    fn stamps_sort_by_time_then_tiebreak_and_are_pinned() {
        let v = AttrValue::String("New".into());
        assert_eq!(value_stamp(1_733_480_000_000, &v), "001733480000000|cdd10d499a15fe90");
        assert!(value_stamp(999, &v) < value_stamp(1000, &AttrValue::Boolean(false)));
        assert!(removal_stamp(1000) < value_stamp(1000, &v));
        assert!(value_stamp(1000, &v) < increment_bound(1000));
        assert!(increment_bound(1000) < removal_stamp(1001));
        assert_ne!(
            value_stamp(5, &AttrValue::Number("1".into())),
            value_stamp(5, &AttrValue::String("1".into()))
        );
    }
}
