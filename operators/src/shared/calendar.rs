//! The one trading calendar: civil dates as days since 1970-01-01 (Arrow's
//! `Date32`) and which of them the exchanges trade, without a date library
//! (the arithmetic is a few lines). Used by the synthetic source, by the
//! exchange sessions that resample and features place bars in, and by date
//! partitions.
//!
//! An exchange trades Monday to Friday except on its holidays, which come
//! from `operators/calendars/` (HOSE and NYSE, 2000–2026; its README says
//! where they come from and `make.py` writes them). After the last year a
//! calendar covers, it knows weekdays only; a pipeline adds holidays of its
//! own with `calendar: {exchange: hose, holidays: [...]}`.

use std::sync::OnceLock;

/// Milliseconds in a day.
pub(crate) const DAY_MS: i64 = 86_400_000;
/// Asia/Ho_Chi_Minh is UTC+7 all year (Vietnam has no daylight saving time).
pub(crate) const UTC_OFFSET_MS: i64 = 7 * 3_600_000;
/// The Arrow time zone of every timestamp the operator produces.
pub(crate) const TIME_ZONE: &str = "+07:00";

/// Days since 1970-01-01 of a proleptic Gregorian date
/// (Howard Hinnant's `days_from_civil`).
pub(crate) fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = (y - era * 400) as u32; // [0, 399]
    let mp = (month + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe as i32 - 719_468
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses exactly `YYYY-MM-DD` into days since 1970-01-01.
pub(crate) fn parse_date(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let year = digits(0..4)? as i32;
    let month = digits(5..7)?;
    let day = digits(8..10)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// Monday = 0 … Sunday = 6.
pub(crate) fn weekday(days: i32) -> i32 {
    // 1970-01-01 was a Thursday.
    (days + 3).rem_euclid(7)
}

/// An exchange's trading days: Monday to Friday, less its holidays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    name: String,
    /// Closed weekdays, as days since 1970-01-01, sorted.
    holidays: Vec<i32>,
    /// The last year whose holidays are all known.
    last_year: i32,
}

impl Calendar {
    /// The Ho Chi Minh City Stock Exchange.
    pub fn hose() -> &'static Calendar {
        static HOSE: OnceLock<Calendar> = OnceLock::new();
        HOSE.get_or_init(|| Calendar::from_csv("HOSE", include_str!("../../calendars/hose.csv")))
    }

    /// The New York Stock Exchange.
    pub fn nyse() -> &'static Calendar {
        static NYSE: OnceLock<Calendar> = OnceLock::new();
        NYSE.get_or_init(|| Calendar::from_csv("NYSE", include_str!("../../calendars/nyse.csv")))
    }

    /// `hose` or `nyse`, in any case.
    pub fn named(name: &str) -> Option<&'static Calendar> {
        match name.to_ascii_lowercase().as_str() {
            "hose" => Some(Self::hose()),
            "nyse" => Some(Self::nyse()),
            _ => None,
        }
    }

    fn from_csv(name: &str, text: &str) -> Calendar {
        let mut holidays: Vec<i32> = text
            .lines()
            .skip(1)
            .filter_map(|line| parse_date(line.split(',').next()?))
            .collect();
        holidays.sort_unstable();
        let last_year = holidays.last().map_or(1970, |&d| civil_from_days(d).0);
        Calendar {
            name: name.to_string(),
            holidays,
            last_year,
        }
    }

    /// This calendar with more closed days (`YYYY-MM-DD`); an error names
    /// one that is not a date.
    pub fn with_holidays(&self, extra: &[String]) -> Result<Calendar, String> {
        let mut out = self.clone();
        for text in extra {
            let day = parse_date(text)
                .ok_or_else(|| format!("holiday '{text}' is not a date like 2027-02-08"))?;
            out.holidays.push(day);
            out.last_year = out.last_year.max(civil_from_days(day).0);
        }
        out.holidays.sort_unstable();
        out.holidays.dedup();
        Ok(out)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The last year whose holidays the calendar knows.
    pub fn last_year(&self) -> i32 {
        self.last_year
    }

    pub(crate) fn is_trading_day(&self, days: i32) -> bool {
        weekday(days) < 5 && self.holidays.binary_search(&days).is_err()
    }

    /// The trading days in `from..=to`.
    pub(crate) fn trading_days(&self, from: i32, to: i32) -> impl Iterator<Item = i32> + '_ {
        (from..=to).filter(move |&d| self.is_trading_day(d))
    }

    /// The trading days from `start` to `end`, both `YYYY-MM-DD` and
    /// inclusive, as `YYYY-MM-DD`; an error names a date that is not one.
    pub fn trading_dates(&self, start: &str, end: &str) -> Result<Vec<String>, String> {
        let parse = |what: &str, text: &str| {
            parse_date(text).ok_or_else(|| format!("{what} '{text}' is not a date like 2026-01-05"))
        };
        let (from, to) = (parse("start", start)?, parse("end", end)?);
        Ok(self.trading_days(from, to).map(format_date).collect())
    }
}

/// Whether HOSE trades on `days`: the synthetic source's calendar.
pub(crate) fn is_trading_day(days: i32) -> bool {
    Calendar::hose().is_trading_day(days)
}

/// The HOSE trading days in `from..=to`.
pub(crate) fn trading_days(from: i32, to: i32) -> impl Iterator<Item = i32> {
    (from..=to).filter(|&d| is_trading_day(d))
}

/// The civil date of days since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
pub(crate) fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = (z - era * 146_097) as u32; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe as i32 + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DD`.
pub(crate) fn format_date(days: i32) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The day after `date` (`YYYY-MM-DD`), for exclusive range ends.
pub fn next_date(date: &str) -> Option<String> {
    parse_date(date).map(|d| format_date(d + 1))
}

/// The UTC epoch milliseconds of `local_ms` after local midnight on `days`.
pub(crate) fn local_to_utc_ms(days: i32, local_ms: i64) -> i64 {
    i64::from(days) * DAY_MS + local_ms - UTC_OFFSET_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_match_known_dates() {
        // Reference values: `date -u -d YYYY-MM-DD +%s` / 86400.
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 1, 3), 10_959);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(days_from_civil(2026, 1, 7), 20_460);
        assert_eq!(parse_date("2026-01-07"), Some(20_460));
    }

    #[test]
    fn parse_rejects_malformed_and_impossible_dates() {
        for bad in [
            "2026-1-07",
            "2026/01/07",
            "2026-13-01",
            "2026-00-10",
            "2026-02-29",
            "2026-04-31",
            "20260107",
            "2026-01-07T00:00",
            "+026-01-07",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
        assert!(parse_date("2024-02-29").is_some());
    }

    #[test]
    fn dates_round_trip() {
        for days in [0, 10_959, 19_782, 20_460, -1, 11_016, 30_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(format_date(20_460), "2026-01-07");
        assert_eq!(next_date("2024-02-28").as_deref(), Some("2024-02-29"));
        let hose = Calendar::hose();
        assert_eq!(
            hose.trading_dates("2026-01-08", "2026-01-13").unwrap(),
            ["2026-01-08", "2026-01-09", "2026-01-12", "2026-01-13"]
        );
        assert!(
            hose.trading_dates("2026-01-08", "soon")
                .unwrap_err()
                .contains("'soon'")
        );
    }

    #[test]
    fn tet_and_the_other_holidays_are_closed() {
        let hose = Calendar::hose();
        // Tết 2024: HOSE announcement 1943/TB-SGDHCM closes Feb 8 to Feb 14.
        assert_eq!(
            hose.trading_dates("2024-02-05", "2024-02-16").unwrap(),
            [
                "2024-02-05",
                "2024-02-06",
                "2024-02-07",
                "2024-02-15",
                "2024-02-16"
            ]
        );
        // 30 April, 1 May and the day swapped for a Saturday, 2025.
        assert_eq!(
            hose.trading_dates("2025-04-29", "2025-05-05").unwrap(),
            ["2025-04-29", "2025-05-05"]
        );
        let nyse = Calendar::nyse();
        // Good Friday 2026, and the four days after 11 September 2001.
        assert_eq!(
            nyse.trading_dates("2026-04-02", "2026-04-06").unwrap(),
            ["2026-04-02", "2026-04-06"]
        );
        assert_eq!(
            nyse.trading_dates("2001-09-10", "2001-09-17").unwrap(),
            ["2001-09-10", "2001-09-17"]
        );
        assert_eq!(hose.last_year(), 2026);
        let extended = hose.with_holidays(&["2027-02-05".into()]).unwrap();
        assert_eq!(
            extended.trading_dates("2027-02-04", "2027-02-08").unwrap(),
            ["2027-02-04", "2027-02-08"]
        );
        assert!(
            hose.with_holidays(&["tet".into()])
                .unwrap_err()
                .contains("'tet'")
        );
    }

    /// Every weekday of 2000-03-01 to 2013-03-01 on which the real daily
    /// prices in shared/ have no AAPL row is an NYSE holiday, and the
    /// other way round.
    #[test]
    fn nyse_holidays_are_the_days_the_real_data_did_not_trade() {
        use std::io::Read;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/data/stocks-daily/stocks.csv.gz"
        );
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        let traded: std::collections::BTreeSet<i32> = text
            .lines()
            .filter(|l| l.starts_with("AAPL,"))
            .filter_map(|l| parse_date(l.split(',').nth(1)?))
            .collect();
        let (from, to) = (*traded.first().unwrap(), *traded.last().unwrap());
        let nyse = Calendar::nyse();
        let expected: std::collections::BTreeSet<i32> = nyse.trading_days(from, to).collect();
        let missing: Vec<String> = expected
            .difference(&traded)
            .map(|&d| format_date(d))
            .collect();
        let extra: Vec<String> = traded
            .difference(&expected)
            .map(|&d| format_date(d))
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "missing {missing:?}, extra {extra:?}"
        );
        assert_eq!(traded.len(), 3270);
    }

    #[test]
    fn weekends_are_not_trading_days() {
        // 2026-01-05 was a Monday; 2026-01-10 and 11 a weekend.
        let monday = days_from_civil(2026, 1, 5);
        let open: Vec<bool> = (0..7).map(|i| is_trading_day(monday + i)).collect();
        assert_eq!(open, [true, true, true, true, true, false, false]);
    }
}
