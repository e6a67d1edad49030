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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dollars() {
        assert_eq!(format_usd(1_234_567), "$1.234567");
        assert_eq!(format_usd(-5), "-$0.000005");
        assert_eq!(format_usd(0), "$0.000000");
    }
}
