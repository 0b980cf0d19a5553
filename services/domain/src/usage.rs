//! Usage counters: their names, the ledger's hour buckets and the
//! periods a report covers. Counting and flushing live in the service
//! (`analyzer::usage`), the ledger's rows in the store.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::tenants::TenantId;

/// Counter names.
pub mod metrics {
    /// Authenticated tenant API calls.
    pub const API_CALLS: &str = "api_calls";
    /// Searches served.
    pub const SEARCHES: &str = "searches";
    /// Analyses served.
    pub const ANALYSES: &str = "analyses";
    /// Tokens billed by the embedding provider.
    pub const EMBEDDING_TOKENS: &str = "embedding_tokens";
    /// Prompt tokens billed by the LLM.
    pub const LLM_PROMPT_TOKENS: &str = "llm_prompt_tokens";
    /// Completion tokens billed by the LLM.
    pub const LLM_COMPLETION_TOKENS: &str = "llm_completion_tokens";
    /// Estimated provider cost, in millionths of a US dollar.
    pub const COST_MICRO_USD: &str = "estimated_cost_micro_usd";
    /// Documents ingested (counted in the ingest's own transaction).
    pub const DOCUMENTS_INGESTED: &str = "documents_ingested";
    /// Chunks ingested (counted in the ingest's own transaction).
    pub const CHUNKS_INGESTED: &str = "chunks_ingested";
    /// Time spent serving the tenant's requests, from admission to the
    /// last byte of the answer, in microseconds.
    pub const COMPUTE_MICROS: &str = "compute_us";

    /// Every counter, in report order.
    pub const ALL: [&str; 10] = [
        API_CALLS,
        SEARCHES,
        ANALYSES,
        DOCUMENTS_INGESTED,
        CHUNKS_INGESTED,
        EMBEDDING_TOKENS,
        LLM_PROMPT_TOKENS,
        LLM_COMPLETION_TOKENS,
        COST_MICRO_USD,
        COMPUTE_MICROS,
    ];
}

/// The ledger's bucket: hours since the Unix epoch, UTC.
pub fn hour_of(t: SystemTime) -> i64 {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    i64::try_from(secs / 3600).unwrap_or(i64::MAX)
}

/// The current hour bucket.
pub fn current_hour() -> i64 {
    hour_of(SystemTime::now())
}

/// Counts waiting for the next flush, by tenant, counter and hour.
pub type Pending = HashMap<(TenantId, &'static str, i64), i64>;

/// The last hour an RFC 3339 time can name: 9999-12-31T23:00:00Z.
const LATEST_HOUR: i64 = 253_402_300_800 / 3600 - 1;

/// A period of whole hours, `[from, to)`, as the ledger buckets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// First hour in the period.
    pub from: i64,
    /// First hour after it.
    pub to: i64,
}

impl Period {
    /// `from` and `to` as dates (`2026-11-01`: `to`'s whole day is in the
    /// period) or RFC 3339 times (`2026-11-01T08:00:00Z`, truncated to the
    /// hour; `to` is the end, not included).
    pub fn parse(from: &str, to: &str) -> Result<Self, String> {
        Self::new(
            parse_bound("from", from, false)?,
            parse_bound("to", to, true)?,
        )
    }

    /// `[from, to)` in hours, checked as [`Period::parse`] checks it.
    pub fn new(from: i64, to: i64) -> Result<Self, String> {
        let period = Self { from, to };
        // RFC 3339 has four-digit years: a bound past the last hour of
        // 9999 could be parsed but not written back into the report.
        if period.to > LATEST_HOUR {
            return Err("to: the period must end by 9999-12-31T23:00:00Z".to_owned());
        }
        if period.to <= period.from {
            return Err("to: the period ends before it starts".to_owned());
        }
        Ok(period)
    }

    /// The period's bounds as RFC 3339 times.
    pub fn bounds(&self) -> (String, String) {
        (hour_rfc3339(self.from), hour_rfc3339(self.to))
    }

    /// Hours in the period.
    pub fn hours(&self) -> i64 {
        self.to - self.from
    }
}

/// One bound of a period, `name` as the error names it: a date
/// (`2026-11-01`; as an `end`, its whole day included) or an RFC 3339
/// time, truncated to its hour.
pub fn parse_bound(name: &str, value: &str, end: bool) -> Result<i64, String> {
    let value = value.trim();
    let (time, day) = if value.len() == 10 {
        (format!("{value}T00:00:00Z"), true)
    } else {
        (value.to_owned(), false)
    };
    let t = humantime::parse_rfc3339_weak(&time).map_err(|_| {
        format!("{name}: expected a date (2026-11-01) or an RFC 3339 time, got {value:?}")
    })?;
    Ok(hour_of(t) + if day && end { 24 } else { 0 })
}

/// The start of an hour of the ledger as an RFC 3339 time.
pub fn hour_rfc3339(hour: i64) -> String {
    let secs = u64::try_from(hour).unwrap_or(0) * 3600;
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_take_dates_whole_and_times_by_the_hour() {
        let p = Period::parse("2026-11-01", "2026-11-01").expect("one day");
        assert_eq!(p.to - p.from, 24);
        assert_eq!(p.bounds().0, "2026-11-01T00:00:00Z");
        assert_eq!(p.bounds().1, "2026-11-02T00:00:00Z");
        let p = Period::parse("2026-11-01T08:30:00Z", "2026-11-01T10:00:00Z").expect("hours");
        assert_eq!(p.to - p.from, 2);
        assert!(Period::parse("2026-11-02", "2026-11-01").is_err());
        let err = Period::parse("yesterday", "2026-11-01").expect_err("bad");
        assert!(err.starts_with("from:"), "{err}");
    }

    #[test]
    fn periods_past_the_year_9999_are_refused_not_a_panic() {
        let err = Period::parse("2026-01-01", "9999-12-31").expect_err("ends in year 10000");
        assert!(err.contains("9999-12-31T23:00:00Z"), "{err}");
        let last = Period::parse("9999-12-30", "9999-12-31T23:00:00Z").expect("the last hour");
        assert_eq!(last.bounds().1, "9999-12-31T23:00:00Z");
        for (from, to) in [("0000-01-01", "2026-01-01"), ("2026-01-01", "99999-01-01")] {
            assert!(Period::parse(from, to).is_err(), "{from}..{to}");
        }
    }
}
