//! Personal data and secret detectors: a regex finds candidates, a check
//! (Luhn for cards, mod-97 for IBANs, area rules for SSNs, octet ranges for
//! IPs, digit counts for phones) keeps false positives low.

use regex::{Regex, RegexSet};
use tollgate_core::guardrail::PiiType;

/// One compiled detector.
#[derive(Debug)]
struct Detector {
    kind: PiiType,
    re: Regex,
}

/// The detectors of one `pii` guardrail, in precedence order (a span found
/// by an earlier detector is not reported again by a later one).
#[derive(Debug)]
pub struct PiiMatcher {
    detectors: Vec<Detector>,
    /// The detectors' patterns in the same order: one pass tells which
    /// detectors can match at all, so clean text costs one scan instead of
    /// one `find_iter` per PII type.
    set: RegexSet,
}

/// Precedence: the most specific shapes first, phone numbers last (a card
/// or an IP address also looks like a run of digits).
const ORDER: [PiiType; 7] = [
    PiiType::Secret,
    PiiType::Email,
    PiiType::Iban,
    PiiType::CreditCard,
    PiiType::Ssn,
    PiiType::IpAddress,
    PiiType::Phone,
];

fn pattern(kind: PiiType) -> &'static str {
    match kind {
        PiiType::Email => r"(?i)\b[a-z0-9][a-z0-9._%+-]*@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b",
        PiiType::Phone => r"(?:\+\d{1,3}[ -]?)?(?:\(\d{2,4}\)[ -]?)?\d{2,4}(?:[ -]\d{2,4}){1,4}\b",
        PiiType::CreditCard => r"\b\d(?:[ -]?\d){12,18}\b",
        PiiType::Iban => r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b",
        PiiType::Ssn => r"\b\d{3}-\d{2}-\d{4}\b",
        PiiType::IpAddress => {
            r"\b(?:\d{1,3}\.){3}\d{1,3}\b|(?i:\b[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}\b)"
        }
        PiiType::Secret => concat!(
            r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}",
            r"|\bAKIA[0-9A-Z]{16}\b",
            r"|\bgh[pousr]_[A-Za-z0-9]{36}\b",
            r"|\bgithub_pat_[A-Za-z0-9_]{22,}",
            r"|\bxox[abprs]-[A-Za-z0-9-]{10,}",
            r"|\bAIza[0-9A-Za-z_-]{35}",
            r"|\btg-[A-Za-z0-9]{43}\b",
            r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
        ),
    }
}

fn digits(s: &str) -> impl Iterator<Item = u32> + '_ {
    s.chars().filter_map(|c| c.to_digit(10))
}

/// Luhn checksum over the digits of `s`.
pub fn luhn(s: &str) -> bool {
    let ds: Vec<u32> = digits(s).collect();
    if ds.len() < 2 {
        return false;
    }
    let sum: u32 = ds
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// ISO 13616 check: move the first four characters to the end, letters to
/// numbers (A=10…), the whole number mod 97 must be 1.
pub fn iban_valid(s: &str) -> bool {
    let compact: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let mut rem: u32 = 0;
    for c in compact[4..].iter().chain(&compact[..4]) {
        let v = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// US SSN rules: area not 000, 666 or 900–999; group not 00; serial not 0000.
pub fn ssn_valid(s: &str) -> bool {
    let mut parts = s.split('-');
    let (Some(a), Some(g), Some(n)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(area), Ok(group), Ok(serial)) = (a.parse::<u32>(), g.parse::<u32>(), n.parse::<u32>())
    else {
        return false;
    };
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

fn ip_valid(s: &str) -> bool {
    if s.contains(':') {
        s.chars().any(|c| c.is_ascii_hexdigit()) && s.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        s.parse::<std::net::Ipv4Addr>().is_ok()
    }
}

fn phone_valid(s: &str) -> bool {
    let n = digits(s).count();
    (10..=15).contains(&n)
}

fn valid(kind: PiiType, s: &str) -> bool {
    match kind {
        PiiType::CreditCard => {
            let n = digits(s).count();
            (13..=19).contains(&n) && luhn(s)
        }
        PiiType::Iban => iban_valid(s),
        PiiType::Ssn => ssn_valid(s),
        PiiType::IpAddress => ip_valid(s),
        PiiType::Phone => phone_valid(s),
        PiiType::Email | PiiType::Secret => true,
    }
}

impl PiiMatcher {
    pub fn new(types: &[PiiType]) -> Result<PiiMatcher, regex::Error> {
        let mut detectors = Vec::new();
        for kind in ORDER {
            if types.contains(&kind) {
                detectors.push(Detector {
                    kind,
                    re: Regex::new(pattern(kind))?,
                });
            }
        }
        let set = RegexSet::new(detectors.iter().map(|d| pattern(d.kind)))?;
        Ok(PiiMatcher { detectors, set })
    }

    /// The detectors whose pattern matches somewhere in `text` (one pass).
    fn candidates<'a>(&'a self, text: &str) -> impl Iterator<Item = &'a Detector> + 'a {
        let hits = self.set.matches(text);
        self.detectors
            .iter()
            .enumerate()
            .filter(move |(i, _)| hits.matched(*i))
            .map(|(_, d)| d)
    }

    /// The first kind of personal data found, if any.
    pub fn find(&self, text: &str) -> Option<PiiType> {
        for d in self.candidates(text) {
            if d.re.find_iter(text).any(|m| valid(d.kind, m.as_str())) {
                return Some(d.kind);
            }
        }
        None
    }

    /// Every validated span, non-overlapping, sorted by start.
    pub fn spans(&self, text: &str) -> Vec<(usize, usize, PiiType)> {
        let mut spans: Vec<(usize, usize, PiiType)> = Vec::new();
        for d in self.candidates(text) {
            for m in d.re.find_iter(text) {
                if !valid(d.kind, m.as_str()) {
                    continue;
                }
                let (s, e) = (m.start(), m.end());
                if spans.iter().any(|&(a, b, _)| s < b && a < e) {
                    continue;
                }
                spans.push((s, e, d.kind));
            }
        }
        spans.sort_by_key(|s| s.0);
        spans
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn only(kind: PiiType) -> PiiMatcher {
        PiiMatcher::new(&[kind]).unwrap()
    }

    #[test]
    fn checksums() {
        assert!(luhn("4111 1111 1111 1111"));
        assert!(!luhn("4111 1111 1111 1112"));
        assert!(iban_valid("DE89 3704 0044 0532 0130 00"));
        assert!(iban_valid("GB82WEST12345698765432"));
        assert!(!iban_valid("GB82WEST12345698765433"));
        assert!(ssn_valid("123-45-6789"));
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "912-12-3456",
            "123-00-4567",
            "123-45-0000",
        ] {
            assert!(!ssn_valid(bad), "{bad}");
        }
    }

    #[test]
    fn true_positives() {
        let cases = [
            (PiiType::Email, "write to jane.doe+x@example.co.uk today"),
            (PiiType::Phone, "call +1 415-555-0132 now"),
            (PiiType::Phone, "call (415) 555-0132"),
            (PiiType::CreditCard, "card 4111-1111-1111-1111 exp"),
            (PiiType::CreditCard, "amex 378282246310005."),
            (PiiType::Iban, "pay DE89 3704 0044 0532 0130 00 please"),
            (PiiType::Ssn, "ssn 123-45-6789"),
            (PiiType::IpAddress, "host 10.0.12.255 is down"),
            (PiiType::IpAddress, "v6 2001:db8::8a2e:370:7334 here"),
            (PiiType::Secret, "key sk-proj-abcdefghijklmnopqrstuvwx1234"),
            (PiiType::Secret, "aws AKIAIOSFODNN7EXAMPLE"),
            (PiiType::Secret, "-----BEGIN RSA PRIVATE KEY-----"),
        ];
        for (kind, text) in cases {
            assert_eq!(only(kind).find(text), Some(kind), "{text}");
        }
    }

    #[test]
    fn near_misses() {
        let cases = [
            (PiiType::Email, "user at example dot com, or @handle"),
            (PiiType::Phone, "order 12345 of 2024-01-15"),
            (PiiType::CreditCard, "4111 1111 1111 1112"),
            (PiiType::CreditCard, "id 1234567890"),
            (PiiType::Iban, "DE89 3704 0044 0532 0130 01"),
            (PiiType::Ssn, "000-12-3456 and 666-12-3456"),
            (PiiType::IpAddress, "version 1.2.3.400 at 12:30:45"),
            (PiiType::Secret, "sk-short and the word task-list"),
        ];
        for (kind, text) in cases {
            assert_eq!(only(kind).find(text), None, "{text}");
        }
    }

    #[test]
    fn spans_do_not_overlap_and_cards_beat_phones() {
        let all = PiiMatcher::new(&PiiType::ALL).unwrap();
        let text = "card 4111 1111 1111 1111 mail a@b.io ip 192.168.1.20";
        let spans = all.spans(text);
        let kinds: Vec<PiiType> = spans.iter().map(|s| s.2).collect();
        assert_eq!(
            kinds,
            vec![PiiType::CreditCard, PiiType::Email, PiiType::IpAddress]
        );
        assert_eq!(&text[spans[0].0..spans[0].1], "4111 1111 1111 1111");
    }
}
