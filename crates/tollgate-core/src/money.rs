//! Money is integer micro-dollars (1 USD = 1,000,000) everywhere; never floats.

/// An amount in micro-dollars.
pub type Micros = i64;

/// Micro-dollars in one US dollar.
pub const MICROS_PER_USD: Micros = 1_000_000;

/// Formats micro-dollars as dollars for people, e.g. `$1.234567`.
pub fn format_usd(micros: Micros) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    format!("{sign}${}.{:06}", abs / 1_000_000, abs % 1_000_000)
}

/// Parses dollars written by people (`12`, `2.50`, `$0.000001`, `-1.5`)
/// into micro-dollars, exactly: no floating point, at most 6 decimals.
pub fn parse_usd(text: &str) -> Option<Micros> {
    let t = text.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let t = t.strip_prefix('$').unwrap_or(t).replace('_', "");
    let (whole, frac) = t.split_once('.').unwrap_or((&t, ""));
    if whole.is_empty() && frac.is_empty()
        || frac.len() > 6
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac: i64 = format!("{frac:0<6}").parse().ok()?;
    let micros = whole.checked_mul(MICROS_PER_USD)?.checked_add(frac)?;
    Some(if neg { -micros } else { micros })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dollars_exactly() {
        assert_eq!(parse_usd("12"), Some(12_000_000));
        assert_eq!(parse_usd("2.50"), Some(2_500_000));
        assert_eq!(parse_usd("$0.000001"), Some(1));
        assert_eq!(parse_usd("-1.5"), Some(-1_500_000));
        assert_eq!(parse_usd(".25"), Some(250_000));
        assert_eq!(parse_usd("0.1234567"), None);
        assert_eq!(parse_usd("1e3"), None);
        assert_eq!(parse_usd(""), None);
        assert_eq!(parse_usd("99999999999999999999"), None);
        for m in [0, 1, 999_999, 1_000_000, 123_456_789] {
            assert_eq!(parse_usd(&format_usd(m)), Some(m));
        }
    }

    #[test]
    fn formats_dollars() {
        assert_eq!(format_usd(1_234_567), "$1.234567");
        assert_eq!(format_usd(-5), "-$0.000005");
        assert_eq!(format_usd(0), "$0.000000");
    }
}
