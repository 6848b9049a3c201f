//! Quota windows in the household's time zone: the keys of the current day and month, and when they reset.

use jiff::tz::TimeZone;
use jiff::{civil, Timestamp, ToSpan};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Windows {
    /// `d:YYYY-MM-DD`
    pub day_key: String,
    /// `m:YYYY-MM`
    pub month_key: String,
    /// Unix seconds of the next local midnight and of the first of next month, 00:00 local.
    pub day_reset: i64,
    pub month_reset: i64,
}

/// Local midnight of a civil date (the first instant of that day, also on DST-change days).
fn start_of(tz: &TimeZone, d: civil::Date) -> i64 {
    d.to_zoned(tz.clone())
        .map(|z| z.timestamp().as_second())
        .unwrap_or(i64::MAX)
}

pub fn windows_at(tz: &TimeZone, now: Timestamp) -> Windows {
    let date = now.to_zoned(tz.clone()).date();
    let next_day = date.tomorrow().unwrap_or(date);
    let first = date.first_of_month();
    let next_month = first.checked_add(1.month()).unwrap_or(first);
    Windows {
        day_key: format!("d:{date}"),
        month_key: format!("m:{:04}-{:02}", date.year(), date.month()),
        day_reset: start_of(tz, next_day),
        month_reset: start_of(tz, next_month),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn local_midnight_and_dst() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        // 23:30 UTC on 28 Nov is 00:30 on 29 Nov in Berlin (UTC+1).
        let w = windows_at(&berlin, at("2026-11-28T23:30:00Z"));
        assert_eq!(w.day_key, "d:2026-11-29");
        assert_eq!(w.month_key, "m:2026-11");
        assert_eq!(w.day_reset, at("2026-11-29T23:00:00Z").as_second());
        assert_eq!(w.month_reset, at("2026-11-30T23:00:00Z").as_second());
        // DST starts 29 Mar 2026 in Berlin: that day is 23 hours long.
        let w = windows_at(&berlin, at("2026-03-29T12:00:00Z"));
        assert_eq!(w.day_key, "d:2026-03-29");
        assert_eq!(
            w.day_reset - at("2026-03-28T23:00:00Z").as_second(),
            23 * 3600
        );
        // DST ends 25 Oct 2026: 25 hours.
        let w = windows_at(&berlin, at("2026-10-25T12:00:00Z"));
        assert_eq!(
            w.day_reset - at("2026-10-24T22:00:00Z").as_second(),
            25 * 3600
        );
        // The last day of a year rolls the month into the next year.
        let w = windows_at(&TimeZone::UTC, at("2026-12-31T10:00:00Z"));
        assert_eq!(w.month_reset, at("2027-01-01T00:00:00Z").as_second());
    }
}
