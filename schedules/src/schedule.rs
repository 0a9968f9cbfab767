//! Cron schedules in UTC, parsed exactly as tokio-cron-scheduler parses them (croner, seconds required,
//! day-of-month AND day-of-week), so the fire times computed here for virtual time and for `mcbot jobs` are the
//! ones the production scheduler uses.

use chrono::{DateTime, SubsecRound, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// A cron expression that failed to parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid cron expression {expr:?}: {reason}")]
pub struct ScheduleError {
    /// The expression.
    pub expr: String,
    /// The parser's complaint.
    pub reason: String,
}

/// A parsed six-field cron schedule (sec min hour dom mon dow), UTC.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    cron: Cron,
}

impl Schedule {
    /// Parses `expr`.
    pub fn parse(expr: &str) -> Result<Self, ScheduleError> {
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(expr)
            .map_err(|e| ScheduleError { expr: expr.to_owned(), reason: e.to_string() })?;
        Ok(Self { expr: expr.to_owned(), cron })
    }

    /// The expression as written.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The first fire strictly after `t`, on a whole second.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&t.trunc_subsecs(0), false).ok()
    }

    /// The last fire at or before `t`, on a whole second. Sub-second parts of `t` are dropped first: croner keeps
    /// them, and a fire time that depends on when a trigger happened to run would break exactly-once keys.
    pub fn last_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_previous_occurrence(&t.trunc_subsecs(0), true).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn next_and_previous_fires() {
        let s = Schedule::parse("5 0 */1 * * *").unwrap();
        assert_eq!(s.next_after(t("2024-01-01T10:00:05Z")), Some(t("2024-01-01T11:00:05Z")));
        assert_eq!(s.last_at_or_before(t("2024-01-01T10:00:05Z")), Some(t("2024-01-01T10:00:05Z")));
        assert_eq!(s.last_at_or_before(t("2024-01-01T10:59:00Z")), Some(t("2024-01-01T10:00:05Z")));
        let late = t("2024-01-01T10:00:05Z") + chrono::Duration::milliseconds(437);
        assert_eq!(s.last_at_or_before(late), Some(t("2024-01-01T10:00:05Z")), "fire times are whole seconds");
        assert_eq!(s.next_after(late), Some(t("2024-01-01T11:00:05Z")));
        assert!(Schedule::parse("every day").is_err());
        assert!(Schedule::parse("0 0 * * *").is_err(), "seconds are required, as in tokio-cron-scheduler");
    }
}
