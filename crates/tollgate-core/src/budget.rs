//! Budget periods: where the day, week (Monday) or month containing an
//! instant starts, in UTC or a fixed offset (the tenant's time zone).

/// Length of a budget period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
    Month,
}

impl Period {
    pub fn parse(s: &str) -> Option<Period> {
        match s {
            "day" => Some(Period::Day),
            "week" => Some(Period::Week),
            "month" => Some(Period::Month),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }
}

const DAY_MS: i64 = 86_400_000;

/// Epoch ms at which the period containing `now_ms` starts, for a clock
/// `offset_minutes` ahead of UTC.
pub fn period_start_ms(period: Period, now_ms: i64, offset_minutes: i32) -> i64 {
    let offset = i64::from(offset_minutes) * 60_000;
    let local = now_ms + offset;
    let day = local.div_euclid(DAY_MS);
    let start_day = match period {
        Period::Day => day,
        // 1970-01-01 was a Thursday: Monday is 3 days before.
        Period::Week => day - (day + 3).rem_euclid(7),
        Period::Month => {
            let (y, m, _) = civil_from_days(day);
            days_from_civil(y, m, 1)
        }
    };
    start_day * DAY_MS - offset
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01
/// (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-23 (a Monday) 12:34:56 UTC.
    const NOW: i64 = 1_795_437_296_000;

    #[test]
    fn day_week_month_in_utc() {
        assert_eq!(days_from_civil(2026, 11, 23) * DAY_MS, 1_795_392_000_000);
        assert_eq!(period_start_ms(Period::Day, NOW, 0), 1_795_392_000_000);
        assert_eq!(period_start_ms(Period::Week, NOW, 0), 1_795_392_000_000);
        assert_eq!(
            period_start_ms(Period::Month, NOW, 0),
            days_from_civil(2026, 11, 1) * DAY_MS
        );
        // Sunday belongs to the week that started 6 days earlier.
        assert_eq!(
            period_start_ms(Period::Week, NOW - DAY_MS, 0),
            1_795_392_000_000 - 7 * DAY_MS
        );
    }

    #[test]
    fn offsets_move_the_boundary() {
        // 12:34 UTC is already the 24th at UTC+12, so the day starts at
        // 2026-11-24 00:00 +12 = 2026-11-23 12:00 UTC.
        assert_eq!(
            period_start_ms(Period::Day, NOW, 12 * 60),
            1_795_392_000_000 + 12 * 3_600_000
        );
        // At UTC-5 it is 07:34 on the 23rd: starts 2026-11-23 05:00 UTC.
        assert_eq!(
            period_start_ms(Period::Day, NOW, -300),
            1_795_392_000_000 + 5 * 3_600_000
        );
    }

    #[test]
    fn civil_round_trip() {
        for d in (-800_000..800_000).step_by(997) {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }
}
