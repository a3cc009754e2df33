//! The one clock every rule and record uses, with its units in its method names.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A point in time (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    pub fn now() -> Self {
        Self(OffsetDateTime::now_utc())
    }

    /// An RFC 3339 time as [`Timestamp::rfc3339`] writes it (any offset), or `None`.
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        OffsetDateTime::parse(s, &Rfc3339).ok().map(|t| Self(t.to_offset(time::UtcOffset::UTC)))
    }

    /// `None` past the calendar `time` can represent.
    pub fn from_epoch_secs(secs: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp(secs).ok().map(Self)
    }

    pub fn from_epoch_ms(ms: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok().map(Self)
    }

    pub fn epoch_secs(self) -> i64 {
        self.0.unix_timestamp()
    }

    pub fn epoch_ms(self) -> i64 {
        (self.0.unix_timestamp_nanos() / 1_000_000) as i64
    }

    /// RFC 3339 at the clock's full precision (`2026-11-29T09:00:00.123456789Z`).
    pub fn rfc3339(self) -> String {
        self.0.format(&Rfc3339).expect("a UTC time within year 9999 formats")
    }

    /// RFC 3339 with exactly three fractional digits (`2026-11-29T09:00:00.120Z`).
    pub fn rfc3339_millis(self) -> String {
        self.0
            .format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .expect("formats")
    }
}

/// A stored time in epoch seconds as RFC 3339, as every response shows one (`""` past the
/// calendar `time` can represent, which no record holds).
pub fn rfc3339_of_epoch_secs(secs: i64) -> String {
    Timestamp::from_epoch_secs(secs).map(Timestamp::rfc3339).unwrap_or_default()
}

/// A stored time in epoch milliseconds as RFC 3339 with three fractional digits.
pub fn rfc3339_millis_of_epoch_ms(ms: i64) -> String {
    Timestamp::from_epoch_ms(ms).map(Timestamp::rfc3339_millis).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_formats_agree() {
        let t = Timestamp::from_epoch_ms(1_795_424_400_120).unwrap();
        assert_eq!(t.epoch_secs(), 1_795_424_400);
        assert_eq!(t.epoch_ms(), 1_795_424_400_120);
        assert_eq!(t.rfc3339_millis(), "2026-11-23T09:00:00.120Z");
        assert_eq!(t.rfc3339(), "2026-11-23T09:00:00.12Z");
        assert_eq!(Timestamp::from_epoch_secs(1_795_424_400).unwrap().rfc3339(), "2026-11-23T09:00:00Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.rfc3339()), Some(t));
    }
}
