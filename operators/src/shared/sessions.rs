//! Exchange trading sessions, and how an instant falls into interval bars
//! laid out on them.
//!
//! Everything here works on instants as nanoseconds since the Unix epoch
//! (UTC) and on wall-clock time in the exchange's own zone. Named zones come
//! from arrow's [`Tz`], which wraps `chrono-tz` (the IANA database, DST rules
//! included) in the build DataFusion already makes.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Offset, TimeZone};

use crate::shared::calendar;
use datafusion::arrow::array::timezone::Tz;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub(crate) const NANOS_PER_SECOND: i64 = 1_000_000_000;
const SECONDS_PER_DAY: i64 = 86_400;
const NANOS_PER_DAY: i64 = SECONDS_PER_DAY * NANOS_PER_SECOND;
/// Days from 0001-01-01 (chrono's day 1) to 1970-01-01.
const UNIX_EPOCH_DAY_CE: i64 = 719_163;

/// The exchange whose trading sessions bars are laid out on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Exchange {
    /// Ho Chi Minh City Stock Exchange: 09:15–11:30 and 13:00–14:45
    /// Asia/Ho_Chi_Minh (UTC+7, no DST), Monday to Friday.
    Hose,
    /// New York Stock Exchange: 09:30–16:00 America/New_York (DST
    /// observed), Monday to Friday.
    Nyse,
    /// No sessions: bars tile the whole day, every day, in the data's time zone.
    None,
}

/// A trading session segment, in whole seconds after local midnight.
#[derive(Debug, Clone, Copy)]
struct Segment {
    start: i64,
    end: i64,
}

const fn hm(h: i64, m: i64) -> i64 {
    h * 3600 + m * 60
}

const HOSE_SEGMENTS: &[Segment] = &[
    Segment {
        start: hm(9, 15),
        end: hm(11, 30),
    },
    Segment {
        start: hm(13, 0),
        end: hm(14, 45),
    },
];
const NYSE_SEGMENTS: &[Segment] = &[Segment {
    start: hm(9, 30),
    end: hm(16, 0),
}];

impl Exchange {
    /// The IANA zone the exchange's sessions are defined in.
    pub fn zone_name(self) -> Option<&'static str> {
        match self {
            Exchange::Hose => Some("Asia/Ho_Chi_Minh"),
            Exchange::Nyse => Some("America/New_York"),
            Exchange::None => None,
        }
    }

    fn segments(self) -> &'static [Segment] {
        match self {
            Exchange::Hose => HOSE_SEGMENTS,
            Exchange::Nyse => NYSE_SEGMENTS,
            Exchange::None => &[],
        }
    }

    /// The exchange's short name, for messages.
    pub fn label(self) -> &'static str {
        match self {
            Exchange::Hose => "HOSE",
            Exchange::Nyse => "NYSE",
            Exchange::None => "none",
        }
    }

    /// The sessions in words, for error messages.
    pub fn describe(self) -> String {
        let clock = |s: i64| format!("{:02}:{:02}", s / 3600, s % 3600 / 60);
        let segments: Vec<String> = self
            .segments()
            .iter()
            .map(|s| format!("{}–{}", clock(s.start), clock(s.end)))
            .collect();
        match self.zone_name() {
            Some(zone) => format!("{} {zone}, Monday to Friday", segments.join(" and "),),
            None => "the whole day".into(),
        }
    }
}

/// A bar length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum Interval {
    #[serde(rename = "1m")]
    M1,
    #[serde(rename = "5m")]
    M5,
    #[serde(rename = "15m")]
    M15,
    #[serde(rename = "30m")]
    M30,
    #[serde(rename = "1h")]
    H1,
    #[serde(rename = "1d")]
    D1,
}

impl Interval {
    /// The bar length in seconds; `None` for one bar per day.
    pub(crate) fn seconds(self) -> Option<i64> {
        match self {
            Interval::M1 => Some(60),
            Interval::M5 => Some(300),
            Interval::M15 => Some(900),
            Interval::M30 => Some(1800),
            Interval::H1 => Some(3600),
            Interval::D1 => None,
        }
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Interval::M1 => "1m",
            Interval::M5 => "5m",
            Interval::M15 => "15m",
            Interval::M30 => "30m",
            Interval::H1 => "1h",
            Interval::D1 => "1d",
        })
    }
}

/// Where an instant falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// The start of its bar, in nanoseconds since the epoch (UTC).
    pub start: i64,
    /// The local trading day.
    pub day: NaiveDate,
    /// Whether the instant is inside a session (always, with `Exchange::None`).
    pub in_session: bool,
}

/// Lays bars of one interval out on an exchange's sessions.
///
/// Intraday bars start at each session segment's open and step by the
/// interval; the last bar of a segment is cut short at the segment's close
/// when the interval does not divide the segment (HOSE morning, 1h: 09:15,
/// 10:15, and 11:15–11:30). A segment includes its closing instant, so a
/// closing-auction print stamped exactly 11:30:00 or 16:00:00 joins the
/// segment's last bar rather than falling outside. Daily bars start at the
/// day's first session open (midnight with `Exchange::None`).
///
/// With `include_outside`, the stretches outside the sessions (before the
/// open, the lunch break, after the close, weekends) are laid out the same
/// way: bars start where the stretch starts (midnight, or a segment's
/// close) and are cut short where it ends. A daily bar then holds the whole
/// calendar day.
#[derive(Debug, Clone, Copy)]
pub struct BarClock {
    exchange: Exchange,
    /// The zone of the session times; for `Exchange::None`, the data's zone.
    zone: Tz,
    interval: Interval,
    include_outside: bool,
}

impl BarClock {
    pub fn new(exchange: Exchange, zone: Tz, interval: Interval, include_outside: bool) -> Self {
        Self {
            exchange,
            zone,
            interval,
            include_outside,
        }
    }

    /// The bar `instant` (ns since the epoch, UTC) falls in, or `None` when it
    /// is outside the sessions and outside instants are not included.
    pub fn place(&self, instant: i64) -> Option<Placed> {
        let offset = self.offset_at(instant);
        let local = instant + offset * NANOS_PER_SECOND;
        let day_number = local.div_euclid(NANOS_PER_DAY);
        let time_of_day = local.rem_euclid(NANOS_PER_DAY);
        let day = day_from_number(day_number);

        let (start, end, in_session) = self.stretch(day, time_of_day)?;
        let bar_start_local = match self.interval.seconds() {
            None => self.day_open(),
            Some(step) => {
                let bar = start
                    + (time_of_day - start * NANOS_PER_SECOND) / (step * NANOS_PER_SECOND) * step;
                // Only a session's closing instant lands on `end`: it joins the last bar.
                if bar >= end {
                    start + (end - start - 1) / step * step
                } else {
                    bar
                }
            }
        };
        let start = match self.interval {
            Interval::D1 => self.local_to_utc(day, bar_start_local),
            // The instant's own offset: sessions never span a DST change, and
            // with no sessions this keeps the two copies of a repeated autumn
            // hour in bars of their own.
            _ => (day_number * SECONDS_PER_DAY + bar_start_local - offset) * NANOS_PER_SECOND,
        };
        Some(Placed {
            start,
            day,
            in_session,
        })
    }

    /// Every session bar start on `days` (the trading days), then, with no
    /// sessions, every bar start between the first and last of `days`.
    /// These are the slots `fill: forward` fills.
    pub fn slots(&self, days: &BTreeSet<NaiveDate>) -> Vec<i64> {
        let (Some(&first), Some(&last)) = (days.first(), days.last()) else {
            return Vec::new();
        };
        let mut slots = Vec::new();
        match (self.exchange, self.interval.seconds()) {
            (Exchange::None, None) => {
                for day in first.iter_days().take_while(|d| *d <= last) {
                    slots.push(self.local_to_utc(day, 0));
                }
            }
            (Exchange::None, Some(step)) => {
                // Step through real time and place each instant, so that DST
                // changes neither skip nor double a bar.
                let from = self.local_to_utc(first, 0);
                let to = self.local_to_utc(last.succ_opt().unwrap_or(last), 0);
                let mut t = from;
                while t < to {
                    if let Some(p) = self.place(t)
                        && slots.last() != Some(&p.start)
                    {
                        slots.push(p.start);
                    }
                    t += step * NANOS_PER_SECOND;
                }
            }
            (_, None) => {
                for &day in days.iter().filter(|d| is_trading_day(self.exchange, **d)) {
                    slots.push(self.local_to_utc(day, self.day_open()));
                }
            }
            (_, Some(step)) => {
                for &day in days.iter().filter(|d| is_trading_day(self.exchange, **d)) {
                    for segment in self.exchange.segments() {
                        let mut bar = segment.start;
                        while bar < segment.end {
                            slots.push(self.local_to_utc(day, bar));
                            bar += step;
                        }
                    }
                }
            }
        }
        slots
    }

    /// The stretch of the day holding `time_of_day` (ns after local
    /// midnight), as (start, end) seconds after midnight and whether it is a
    /// session, or `None` when outside instants are not wanted.
    fn stretch(&self, day: NaiveDate, time_of_day: i64) -> Option<(i64, i64, bool)> {
        if self.exchange == Exchange::None {
            return Some((0, SECONDS_PER_DAY, true));
        }
        let segments = self.exchange.segments();
        if is_trading_day(self.exchange, day)
            && let Some(s) = segments.iter().find(|s| {
                s.start * NANOS_PER_SECOND <= time_of_day && time_of_day <= s.end * NANOS_PER_SECOND
            })
        {
            return Some((s.start, s.end, true));
        }
        if !self.include_outside {
            return None;
        }
        if !is_trading_day(self.exchange, day) {
            return Some((0, SECONDS_PER_DAY, false));
        }
        let start = segments
            .iter()
            .map(|s| s.end)
            .filter(|&end| end * NANOS_PER_SECOND < time_of_day)
            .max()
            .unwrap_or(0);
        let end = segments
            .iter()
            .map(|s| s.start)
            .filter(|&start| start * NANOS_PER_SECOND > time_of_day)
            .min()
            .unwrap_or(SECONDS_PER_DAY);
        Some((start, end, false))
    }

    /// When a daily bar starts, in seconds after local midnight.
    fn day_open(&self) -> i64 {
        self.exchange.segments().first().map_or(0, |s| s.start)
    }

    /// The zone's offset from UTC at `instant`, in seconds.
    fn offset_at(&self, instant: i64) -> i64 {
        let utc = DateTime::from_timestamp_nanos(instant).naive_utc();
        i64::from(
            self.zone
                .offset_from_utc_datetime(&utc)
                .fix()
                .local_minus_utc(),
        )
    }

    /// The instant of wall-clock time `seconds` after midnight on `day`. A
    /// repeated wall time is its first occurrence; one skipped by a DST
    /// change is read with the offset of the instant it names as UTC, which
    /// is within hours of the change (only zones that change at session
    /// times or at midnight would notice).
    fn local_to_utc(&self, day: NaiveDate, seconds: i64) -> i64 {
        let wall = day_start(day) + chrono::Duration::seconds(seconds);
        let offset = match self.zone.offset_from_local_datetime(&wall).earliest() {
            Some(offset) => offset.fix().local_minus_utc(),
            None => self
                .zone
                .offset_from_utc_datetime(&wall)
                .fix()
                .local_minus_utc(),
        };
        (wall.and_utc().timestamp() - i64::from(offset)) * NANOS_PER_SECOND
    }
}

/// Reads a wall-clock instant in `zone` as an instant: a repeated wall time
/// is its first occurrence; one skipped by a DST change is `None`.
pub fn wall_to_utc(zone: &Tz, wall_nanos: i64) -> Option<i64> {
    let wall = DateTime::from_timestamp_nanos(wall_nanos).naive_utc();
    let offset = zone.offset_from_local_datetime(&wall).earliest()?;
    Some(wall_nanos - i64::from(offset.fix().local_minus_utc()) * NANOS_PER_SECOND)
}

/// The wall-clock time in `zone` at `instant`, as nanoseconds since the epoch.
pub fn utc_to_wall(zone: &Tz, instant: i64) -> i64 {
    let utc = DateTime::from_timestamp_nanos(instant).naive_utc();
    instant
        + i64::from(zone.offset_from_utc_datetime(&utc).fix().local_minus_utc()) * NANOS_PER_SECOND
}

/// Whether `exchange` trades on `day`: the one trading calendar, shared
/// with the synthetic source and date partitions.
fn is_trading_day(exchange: Exchange, day: NaiveDate) -> bool {
    let days = (day.num_days_from_ce() as i64 - UNIX_EPOCH_DAY_CE) as i32;
    match exchange {
        Exchange::Hose => calendar::Calendar::hose().is_trading_day(days),
        Exchange::Nyse => calendar::Calendar::nyse().is_trading_day(days),
        Exchange::None => true,
    }
}

fn day_from_number(days_since_epoch: i64) -> NaiveDate {
    // Instants are i64 nanoseconds, so the day is within ±300 years of 1970.
    NaiveDate::from_num_days_from_ce_opt((days_since_epoch + UNIX_EPOCH_DAY_CE) as i32)
        .expect("a day within the range of i64 nanoseconds")
}

fn day_start(day: NaiveDate) -> NaiveDateTime {
    day.and_hms_opt(0, 0, 0).expect("midnight exists")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses RFC 3339 with chrono (not our arithmetic) into epoch nanoseconds.
    fn at(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
    }

    fn clock(exchange: Exchange, interval: Interval, include_outside: bool) -> BarClock {
        let zone = exchange.zone_name().unwrap_or("UTC").parse().unwrap();
        BarClock::new(exchange, zone, interval, include_outside)
    }

    fn bar(clock: &BarClock, instant: &str) -> Option<i64> {
        clock.place(at(instant)).map(|p| p.start)
    }

    #[test]
    fn hose_lunch_break_separates_bars() {
        let c = clock(Exchange::Hose, Interval::M5, false);
        // 2024-03-11 is a Monday.
        assert_eq!(
            bar(&c, "2024-03-11T11:29:59+07:00"),
            Some(at("2024-03-11T11:25:00+07:00"))
        );
        // The closing instant belongs to the morning's last bar.
        assert_eq!(
            bar(&c, "2024-03-11T11:30:00+07:00"),
            Some(at("2024-03-11T11:25:00+07:00"))
        );
        assert_eq!(bar(&c, "2024-03-11T11:30:01+07:00"), None);
        assert_eq!(bar(&c, "2024-03-11T12:00:00+07:00"), None);
        assert_eq!(bar(&c, "2024-03-11T12:59:59+07:00"), None);
        assert_eq!(
            bar(&c, "2024-03-11T13:00:00+07:00"),
            Some(at("2024-03-11T13:00:00+07:00"))
        );
        // Before the open and after the close.
        assert_eq!(bar(&c, "2024-03-11T09:14:59+07:00"), None);
        assert_eq!(bar(&c, "2024-03-11T14:45:00.001+07:00"), None);
        // The same instant written in UTC.
        assert_eq!(
            bar(&c, "2024-03-11T02:15:00Z"),
            Some(at("2024-03-11T09:15:00+07:00"))
        );
    }

    #[test]
    fn hose_hourly_bars_start_at_each_segment_and_truncate() {
        let c = clock(Exchange::Hose, Interval::H1, false);
        for (trade, start) in [
            ("09:15:00", "09:15:00"),
            ("10:14:59", "09:15:00"),
            ("10:15:00", "10:15:00"),
            ("11:15:00", "11:15:00"),
            ("11:30:00", "11:15:00"),
            ("13:00:00", "13:00:00"),
            ("14:00:00", "14:00:00"),
            ("14:45:00", "14:00:00"),
        ] {
            assert_eq!(
                bar(&c, &format!("2024-03-11T{trade}+07:00")),
                Some(at(&format!("2024-03-11T{start}+07:00"))),
                "{trade}"
            );
        }
        let days = BTreeSet::from([NaiveDate::from_ymd_opt(2024, 3, 11).unwrap()]);
        let slots: Vec<i64> = c.slots(&days);
        let expected: Vec<i64> = ["09:15", "10:15", "11:15", "13:00", "14:00"]
            .iter()
            .map(|t| at(&format!("2024-03-11T{t}:00+07:00")))
            .collect();
        assert_eq!(slots, expected);
    }

    #[test]
    fn nyse_open_follows_daylight_saving_time() {
        let c = clock(Exchange::Nyse, Interval::M30, false);
        // Friday 2024-03-08, EST (UTC−5): the open is 14:30 UTC.
        assert_eq!(bar(&c, "2024-03-08T14:29:59Z"), None);
        assert_eq!(
            bar(&c, "2024-03-08T14:30:00Z"),
            Some(at("2024-03-08T14:30:00Z"))
        );
        // Monday 2024-03-11, after the switch on Sunday 03-10, EDT (UTC−4):
        // the open is 13:30 UTC, and 14:30 UTC is already the third bar.
        assert_eq!(bar(&c, "2024-03-11T13:29:59Z"), None);
        assert_eq!(
            bar(&c, "2024-03-11T13:30:00Z"),
            Some(at("2024-03-11T13:30:00Z"))
        );
        assert_eq!(
            bar(&c, "2024-03-11T14:30:00Z"),
            Some(at("2024-03-11T14:30:00Z"))
        );
        // The close, 16:00 EDT = 20:00 UTC, joins the last bar (15:30).
        assert_eq!(
            bar(&c, "2024-03-11T20:00:00Z"),
            Some(at("2024-03-11T19:30:00Z"))
        );
        assert_eq!(bar(&c, "2024-03-11T20:00:01Z"), None);
    }

    #[test]
    fn weekends_are_outside_the_sessions() {
        let c = clock(Exchange::Nyse, Interval::M5, false);
        // Saturday 2024-03-09 10:00 New York.
        assert_eq!(bar(&c, "2024-03-09T10:00:00-05:00"), None);
        let c = clock(Exchange::Nyse, Interval::M5, true);
        let p = c.place(at("2024-03-09T10:02:00-05:00")).unwrap();
        assert_eq!(p.start, at("2024-03-09T10:00:00-05:00"));
        assert!(!p.in_session);
    }

    #[test]
    fn outside_stretches_have_bars_of_their_own() {
        let c = clock(Exchange::Hose, Interval::H1, true);
        // The lunch break 11:30–13:00: bars at 11:30 and 12:30 (cut at 13:00).
        for (trade, start, in_session) in [
            ("08:59:00", "08:00:00", false),
            ("09:14:59", "09:00:00", false),
            ("11:30:00", "11:15:00", true),
            ("11:30:01", "11:30:00", false),
            ("12:45:00", "12:30:00", false),
            ("14:50:00", "14:45:00", false),
        ] {
            let p = c.place(at(&format!("2024-03-11T{trade}+07:00"))).unwrap();
            assert_eq!(p.start, at(&format!("2024-03-11T{start}+07:00")), "{trade}");
            assert_eq!(p.in_session, in_session, "{trade}");
        }
    }

    #[test]
    fn daily_bars_start_at_the_session_open() {
        let c = clock(Exchange::Nyse, Interval::D1, false);
        assert_eq!(
            bar(&c, "2024-03-11T15:59:00-04:00"),
            Some(at("2024-03-11T09:30:00-04:00"))
        );
        assert_eq!(
            bar(&c, "2024-01-02T10:00:00-05:00"),
            Some(at("2024-01-02T09:30:00-05:00"))
        );
        let c = clock(Exchange::Hose, Interval::D1, false);
        assert_eq!(
            bar(&c, "2024-03-11T14:00:00+07:00"),
            Some(at("2024-03-11T09:15:00+07:00"))
        );
    }

    #[test]
    fn without_sessions_the_repeated_autumn_hour_keeps_two_bars() {
        let zone: Tz = "America/New_York".parse().unwrap();
        let c = BarClock::new(Exchange::None, zone, Interval::H1, false);
        // 2024-11-03 01:30 happens twice: EDT (05:30Z) and EST (06:30Z).
        assert_eq!(
            bar(&c, "2024-11-03T05:30:00Z"),
            Some(at("2024-11-03T05:00:00Z"))
        );
        assert_eq!(
            bar(&c, "2024-11-03T06:30:00Z"),
            Some(at("2024-11-03T06:00:00Z"))
        );
        // The day has 25 hourly slots.
        let days = BTreeSet::from([NaiveDate::from_ymd_opt(2024, 11, 3).unwrap()]);
        assert_eq!(c.slots(&days).len(), 25);
    }

    #[test]
    fn wall_clock_conversions() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let wall = at("2024-03-11T09:30:00Z"); // 09:30 as a wall time
        assert_eq!(wall_to_utc(&ny, wall), Some(at("2024-03-11T13:30:00Z")));
        assert_eq!(utc_to_wall(&ny, at("2024-03-11T13:30:00Z")), wall);
        // 02:30 on 2024-03-10 does not exist in New York.
        assert_eq!(wall_to_utc(&ny, at("2024-03-10T02:30:00Z")), None);
    }
}
