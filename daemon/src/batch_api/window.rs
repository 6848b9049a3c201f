//! The batch window: batch lines start only between two local times (e.g. `01:00-06:00`, when power is cheap;
//! `22:00-06:00` spans midnight). Stored as the `batch_window` setting; no setting = always open. Lines already
//! running when the window closes finish.

use jiff::tz::TimeZone;
use jiff::Timestamp;

pub const SETTING: &str = "batch_window";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Minutes after local midnight.
    start: u32,
    end: u32,
}

fn minutes(hhmm: &str) -> Option<u32> {
    let (h, m) = hhmm.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && hhmm.trim().len() == 5).then_some(h * 60 + m)
}

impl std::str::FromStr for Window {
    type Err = String;

    fn from_str(s: &str) -> Result<Window, String> {
        let bad =
            || format!("batch window '{s}' must be HH:MM-HH:MM in local time, e.g. 01:00-06:00");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let (start, end) = (minutes(a).ok_or_else(bad)?, minutes(b).ok_or_else(bad)?);
        if start == end {
            return Err(format!("batch window '{s}' is empty (start equals end)"));
        }
        Ok(Window { start, end })
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

impl Window {
    /// Whether batch lines may start at `now` in `tz`.
    pub fn is_open(&self, tz: &TimeZone, now: Timestamp) -> bool {
        let t = now.to_zoned(tz.clone());
        let m = t.hour() as u32 * 60 + t.minute() as u32;
        if self.start < self.end {
            (self.start..self.end).contains(&m)
        } else {
            m >= self.start || m < self.end
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_wrap_around_midnight() {
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        let night: Window = "01:00-06:00".parse().unwrap();
        // 00:30 UTC is 01:30 in Berlin (UTC+1 in December).
        assert!(night.is_open(&tz, at("2026-12-01T00:30:00Z")));
        assert!(!night.is_open(&tz, at("2026-12-01T05:00:00Z")));
        let late: Window = "22:00-06:00".parse().unwrap();
        assert!(late.is_open(&tz, at("2026-12-01T22:30:00Z")));
        assert!(late.is_open(&tz, at("2026-12-01T03:00:00Z")));
        assert!(!late.is_open(&tz, at("2026-12-01T12:00:00Z")));
        assert_eq!(late.to_string(), "22:00-06:00");
        for bad in [
            "1:00-6:00",
            "25:00-06:00",
            "01:00",
            "01:00-01:00",
            "aa:bb-cc:dd",
        ] {
            assert!(bad.parse::<Window>().is_err(), "{bad}");
        }
    }
}
