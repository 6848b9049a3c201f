//! Usage reports for admins: local-date ranges and CSV export (shared by `/admin/usage` and `hearth usage`).

use crate::store::UsageRow;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A report's range: local dates (inclusive) and the Unix seconds they span (`[start, end)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayRange {
    pub from_day: String,
    pub to_day: String,
    pub start: i64,
    pub end: i64,
}

/// `[from, to]` as local calendar dates (`YYYY-MM-DD`, both inclusive). Defaults: the current month up to today.
pub fn range(
    tz: &TimeZone,
    now: Timestamp,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<DayRange, String> {
    let today = now.to_zoned(tz.clone()).date();
    let parse = |name: &str, s: &str| {
        s.parse::<Date>()
            .map_err(|_| format!("{name} must be a date like 2026-11-01, got '{s}'"))
    };
    let from = match from {
        Some(s) => parse("from", s)?,
        None => today.first_of_month(),
    };
    let to = match to {
        Some(s) => parse("to", s)?,
        None => today,
    };
    if to < from {
        return Err(format!("to ({to}) is before from ({from})"));
    }
    let start = |d: Date| {
        d.to_zoned(tz.clone())
            .map(|z| z.timestamp().as_second())
            .map_err(|e| e.to_string())
    };
    let end = to.checked_add(1.day()).map_err(|e| e.to_string())?;
    Ok(DayRange {
        from_day: from.to_string(),
        to_day: to.to_string(),
        start: start(from)?,
        end: start(end)?,
    })
}

fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// One line per request; times in RFC 3339 UTC.
pub fn csv(rows: &[UsageRow]) -> String {
    let mut out = String::from(
        "id,user,key_id,model,endpoint,status,finish_reason,prompt_tokens,completion_tokens,charged_tokens,started_at,duration_ms,device,queue_ms,energy_joules,energy_source,client_user\n",
    );
    for r in rows {
        let started = Timestamp::from_second(r.started_at)
            .map(|t| t.to_string())
            .unwrap_or_default();
        let cols = [
            field(&r.id),
            field(&r.user),
            field(r.key_id.as_deref().unwrap_or("")),
            field(&r.model),
            field(&r.endpoint),
            field(&r.status),
            field(&r.finish_reason),
            r.prompt_tokens.to_string(),
            r.completion_tokens.to_string(),
            r.charged_tokens.to_string(),
            started,
            r.duration_ms.to_string(),
            field(r.device.as_deref().unwrap_or("")),
            r.queue_ms.map(|q| q.to_string()).unwrap_or_default(),
            r.energy_joules.map(|j| j.to_string()).unwrap_or_default(),
            field(r.energy_source.as_deref().unwrap_or("")),
            field(r.client_user.as_deref().unwrap_or("")),
        ];
        out.push_str(&cols.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_date_ranges() {
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        let now: Timestamp = "2026-11-28T12:00:00Z".parse().unwrap();
        let r = range(&tz, now, Some("2026-11-01"), Some("2026-11-30")).unwrap();
        assert_eq!(
            (r.from_day.as_str(), r.to_day.as_str()),
            ("2026-11-01", "2026-11-30")
        );
        let (a, b) = (r.start, r.end);
        assert_eq!(
            a,
            "2026-10-31T23:00:00Z"
                .parse::<Timestamp>()
                .unwrap()
                .as_second()
        );
        assert_eq!(
            b,
            "2026-11-30T23:00:00Z"
                .parse::<Timestamp>()
                .unwrap()
                .as_second()
        );
        let r = range(&tz, now, None, None).unwrap();
        let (a, b) = (r.start, r.end);
        assert_eq!(
            a,
            "2026-10-31T23:00:00Z"
                .parse::<Timestamp>()
                .unwrap()
                .as_second()
        );
        assert_eq!(
            b,
            "2026-11-28T23:00:00Z"
                .parse::<Timestamp>()
                .unwrap()
                .as_second()
        );
        assert!(range(&tz, now, Some("yesterday"), None)
            .unwrap_err()
            .contains("from"));
        assert!(range(&tz, now, Some("2026-11-02"), Some("2026-11-01")).is_err());
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let row = UsageRow {
            id: "r1".into(),
            user: "a,b".into(),
            key_id: None,
            model: "m\"x".into(),
            endpoint: "chat".into(),
            status: "ok".into(),
            finish_reason: "stop".into(),
            prompt_tokens: 1,
            completion_tokens: 2,
            charged_tokens: 3,
            started_at: 0,
            duration_ms: 4,
            device: Some("cpu".into()),
            queue_ms: Some(7),
            energy_joules: Some(0.5),
            energy_source: Some("rapl".into()),
            client_user: Some("u-17".into()),
        };
        let c = csv(&[row]);
        assert_eq!(
            c.lines().nth(1).unwrap(),
            "r1,\"a,b\",,\"m\"\"x\",chat,ok,stop,1,2,3,1970-01-01T00:00:00Z,4,cpu,7,0.5,rapl,u-17"
        );
    }
}
