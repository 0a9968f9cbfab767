//! Report periods and their bounds (UTC calendar days, ISO weeks, calendar months).

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, NaiveTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// Report period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// UTC calendar day.
    Daily,
    /// ISO week, Monday 00:00 UTC.
    Weekly,
    /// Calendar month, UTC.
    Monthly,
}

impl Period {
    /// Every period, shortest first.
    pub const ALL: [Period; 3] = [Period::Daily, Period::Weekly, Period::Monthly];

    /// Name, as stored and as the job suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
        }
    }

    /// Parses a name (`daily`, `weekly`, `monthly`).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The period that follows the one starting at `start`.
    pub fn next_start(self, start: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Period::Daily => start + Duration::days(1),
            Period::Weekly => start + Duration::weeks(1),
            Period::Monthly => start.checked_add_months(Months::new(1)).unwrap_or(start + Duration::days(31)),
        }
    }

    /// The bounds of the period that contains the UTC day `date` (what `mcbot report --date D` names).
    pub fn containing(self, date: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
        let next_day = date.and_time(NaiveTime::MIN).and_utc() + Duration::days(1);
        // The period just ended at the first instant after `date`'s period is the one containing `date`.
        match self {
            Period::Daily => period_bounds(self, next_day),
            Period::Weekly => {
                let monday = date - Duration::days(i64::from(date.weekday().num_days_from_monday()));
                period_bounds(self, monday.and_time(NaiveTime::MIN).and_utc() + Duration::weeks(1))
            }
            Period::Monthly => {
                let first = date.with_day(1).unwrap_or(date).and_time(NaiveTime::MIN).and_utc();
                period_bounds(self, self.next_start(first))
            }
        }
    }
}

/// The complete period before the one containing `t`: a report fired just after midnight covers yesterday.
pub fn period_bounds(period: Period, t: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let day = t.date_naive().and_time(NaiveTime::MIN).and_utc();
    match period {
        Period::Daily => (day - Duration::days(1), day),
        Period::Weekly => {
            let end = day - Duration::days(i64::from(t.weekday().num_days_from_monday()));
            (end - Duration::weeks(1), end)
        }
        Period::Monthly => {
            let end = Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0).single().unwrap_or(day);
            (end.checked_sub_months(Months::new(1)).unwrap_or(end), end)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn periods_end_where_the_fire_falls() {
        assert_eq!(
            period_bounds(Period::Daily, t("2024-03-01T00:05:00Z")),
            (t("2024-02-29T00:00:00Z"), t("2024-03-01T00:00:00Z"))
        );
        assert_eq!(
            period_bounds(Period::Weekly, t("2024-03-04T00:10:00Z")),
            (t("2024-02-26T00:00:00Z"), t("2024-03-04T00:00:00Z"))
        );
        assert_eq!(
            period_bounds(Period::Monthly, t("2024-03-01T00:15:00Z")),
            (t("2024-02-01T00:00:00Z"), t("2024-03-01T00:00:00Z"))
        );
    }

    #[test]
    fn a_date_names_the_period_it_falls_in() {
        let d = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
        assert_eq!(Period::Daily.containing(d), (t("2024-02-29T00:00:00Z"), t("2024-03-01T00:00:00Z")));
        assert_eq!(Period::Weekly.containing(d), (t("2024-02-26T00:00:00Z"), t("2024-03-04T00:00:00Z")));
        assert_eq!(Period::Monthly.containing(d), (t("2024-02-01T00:00:00Z"), t("2024-03-01T00:00:00Z")));
        let s = t("2024-01-29T00:00:00Z");
        assert_eq!(Period::Monthly.next_start(t("2024-01-01T00:00:00Z")), t("2024-02-01T00:00:00Z"));
        assert_eq!(Period::Weekly.next_start(s), t("2024-02-05T00:00:00Z"));
    }
}
