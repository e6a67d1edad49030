//! Guardrail definitions as both planes understand them: the kinds, actions
//! and directions, and the typed settings of each kind parsed from the JSON
//! the admin API stores. The control plane validates with [`GuardrailSpec::parse`]
//! (so a bad regex never reaches a data plane); the data plane parses the
//! same way again and compiles the result once per snapshot version.

use serde::Deserialize;

/// What a guardrail looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Deny list of words or phrases (Aho-Corasick).
    Keyword,
    /// Deny list of regular expressions.
    Regex,
    /// Personal data and secrets: email, phone, card, IBAN, SSN, IP, keys.
    Pii,
    /// Request size in bytes, estimated tokens and message count.
    Size,
    /// Allow/deny list of public model names.
    Model,
    /// External HTTP check at a tenant-configured URL.
    Webhook,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "keyword" => Kind::Keyword,
            "regex" => Kind::Regex,
            "pii" => Kind::Pii,
            "size" => Kind::Size,
            "model" => Kind::Model,
            "webhook" => Kind::Webhook,
            _ => return None,
        })
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Keyword => "keyword",
            Kind::Regex => "regex",
            Kind::Pii => "pii",
            Kind::Size => "size",
            Kind::Model => "model",
            Kind::Webhook => "webhook",
        }
    }
}

/// What happens on a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The call is refused (400 `content_policy_violation`).
    Block,
    /// The matched text is replaced by a typed placeholder
    /// (`[REDACTED:EMAIL]`) and the call goes on.
    Redact,
    /// Only the verdict is recorded.
    Log,
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "block" => Action::Block,
            "redact" => Action::Redact,
            "log" => Action::Log,
            _ => return None,
        })
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::Redact => "redact",
            Action::Log => "log",
        }
    }
}

/// Which side of a call a guardrail checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Input,
    Output,
    Both,
}

impl Direction {
    pub fn parse(s: &str) -> Option<Direction> {
        Some(match s {
            "input" => Direction::Input,
            "output" => Direction::Output,
            "both" => Direction::Both,
            _ => return None,
        })
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            Direction::Input => "input",
            Direction::Output => "output",
            Direction::Both => "both",
        }
    }
    pub fn input(&self) -> bool {
        matches!(self, Direction::Input | Direction::Both)
    }
    pub fn output(&self) -> bool {
        matches!(self, Direction::Output | Direction::Both)
    }
}

/// The personal-data detectors of a `pii` guardrail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PiiType {
    Email,
    Phone,
    CreditCard,
    Iban,
    Ssn,
    IpAddress,
    Secret,
}

impl PiiType {
    pub const ALL: [PiiType; 7] = [
        PiiType::Email,
        PiiType::Phone,
        PiiType::CreditCard,
        PiiType::Iban,
        PiiType::Ssn,
        PiiType::IpAddress,
        PiiType::Secret,
    ];
    pub fn parse(s: &str) -> Option<PiiType> {
        Some(match s {
            "email" => PiiType::Email,
            "phone" => PiiType::Phone,
            "credit_card" => PiiType::CreditCard,
            "iban" => PiiType::Iban,
            "ssn" => PiiType::Ssn,
            "ip_address" => PiiType::IpAddress,
            "secret" => PiiType::Secret,
            _ => return None,
        })
    }
    /// The category recorded in verdicts (lowercase).
    pub fn as_str(&self) -> &'static str {
        match self {
            PiiType::Email => "email",
            PiiType::Phone => "phone",
            PiiType::CreditCard => "credit_card",
            PiiType::Iban => "iban",
            PiiType::Ssn => "ssn",
            PiiType::IpAddress => "ip_address",
            PiiType::Secret => "secret",
        }
    }
    /// The redaction placeholder.
    pub fn placeholder(&self) -> &'static str {
        match self {
            PiiType::Email => "[REDACTED:EMAIL]",
            PiiType::Phone => "[REDACTED:PHONE]",
            PiiType::CreditCard => "[REDACTED:CREDIT_CARD]",
            PiiType::Iban => "[REDACTED:IBAN]",
            PiiType::Ssn => "[REDACTED:SSN]",
            PiiType::IpAddress => "[REDACTED:IP_ADDRESS]",
            PiiType::Secret => "[REDACTED:SECRET]",
        }
    }
}

/// When an external check cannot answer (timeout, connection error, bad
/// verdict): let the call through, or refuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    Open,
    Closed,
}

/// Typed settings of one guardrail.
#[derive(Debug, Clone, PartialEq)]
pub enum Settings {
    Keyword {
        words: Vec<String>,
        case_sensitive: bool,
        whole_word: bool,
    },
    Regex {
        patterns: Vec<String>,
    },
    Pii {
        types: Vec<PiiType>,
    },
    Size {
        /// 0: no limit (each).
        max_bytes: u64,
        max_tokens: u64,
        max_messages: u64,
    },
    Model {
        allow: Vec<String>,
        deny: Vec<String>,
    },
    Webhook {
        url: String,
        timeout_ms: u64,
        fail: FailMode,
    },
}

/// A validated guardrail definition.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardrailSpec {
    pub kind: Kind,
    pub action: Action,
    pub direction: Direction,
    pub settings: Settings,
}

/// Most keywords or patterns one guardrail may hold.
pub const MAX_ENTRIES: usize = 100_000;
/// Longest webhook timeout.
pub const MAX_WEBHOOK_TIMEOUT_MS: u64 = 30_000;
/// Webhook timeout when none is configured.
pub const DEFAULT_WEBHOOK_TIMEOUT_MS: u64 = 1_000;
/// Compiled size limit of one regex (bytes of the automaton).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeywordJson {
    words: Vec<String>,
    #[serde(default)]
    case_sensitive: bool,
    #[serde(default)]
    whole_word: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegexJson {
    patterns: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PiiJson {
    #[serde(default)]
    types: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SizeJson {
    #[serde(default)]
    max_bytes: u64,
    #[serde(default)]
    max_tokens: u64,
    #[serde(default)]
    max_messages: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelJson {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookJson {
    url: String,
    #[serde(default)]
    timeout_ms: u64,
    /// "open" or "closed"; required so the choice is always explicit.
    fail: String,
}

fn json<T: serde::de::DeserializeOwned>(kind: Kind, settings: &str) -> Result<T, String> {
    let settings = if settings.trim().is_empty() {
        "{}"
    } else {
        settings
    };
    serde_json::from_str(settings)
        .map_err(|e| format!("settings of a {} guardrail: {e}", kind.as_str()))
}

/// Compiles one regex pattern the way the data plane does.
pub fn build_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

impl GuardrailSpec {
    /// Validates a stored definition. The error names the field, and for a
    /// bad regex its index and the parser's message (with the position).
    pub fn parse(
        kind: &str,
        action: &str,
        direction: &str,
        settings: &str,
    ) -> Result<GuardrailSpec, String> {
        let kind = Kind::parse(kind).ok_or_else(|| {
            format!("unknown guardrail kind {kind:?} (expected keyword, regex, pii, size, model or webhook)")
        })?;
        let action = Action::parse(action)
            .ok_or_else(|| format!("unknown action {action:?} (expected block, redact or log)"))?;
        let direction = Direction::parse(direction).ok_or_else(|| {
            format!("unknown direction {direction:?} (expected input, output or both)")
        })?;
        let settings = match kind {
            Kind::Keyword => {
                let j: KeywordJson = json(kind, settings)?;
                if j.words.is_empty() {
                    return Err("a keyword guardrail needs at least one word in 'words'".into());
                }
                if j.words.len() > MAX_ENTRIES {
                    return Err(format!("'words' holds more than {MAX_ENTRIES} entries"));
                }
                if let Some(i) = j.words.iter().position(|w| w.trim().is_empty()) {
                    return Err(format!("words[{i}] is empty"));
                }
                Settings::Keyword {
                    words: j.words,
                    case_sensitive: j.case_sensitive,
                    whole_word: j.whole_word,
                }
            }
            Kind::Regex => {
                let j: RegexJson = json(kind, settings)?;
                if j.patterns.is_empty() {
                    return Err("a regex guardrail needs at least one pattern in 'patterns'".into());
                }
                if j.patterns.len() > MAX_ENTRIES {
                    return Err(format!("'patterns' holds more than {MAX_ENTRIES} entries"));
                }
                for (i, p) in j.patterns.iter().enumerate() {
                    if p.is_empty() {
                        return Err(format!("patterns[{i}] is empty"));
                    }
                    build_regex(p)
                        .map_err(|e| format!("patterns[{i}] is not a valid regex: {e}"))?;
                }
                Settings::Regex {
                    patterns: j.patterns,
                }
            }
            Kind::Pii => {
                let j: PiiJson = json(kind, settings)?;
                let mut types = Vec::new();
                for t in &j.types {
                    let t = PiiType::parse(t).ok_or_else(|| {
                        format!("unknown PII type {t:?} (expected email, phone, credit_card, iban, ssn, ip_address or secret)")
                    })?;
                    if !types.contains(&t) {
                        types.push(t);
                    }
                }
                if types.is_empty() {
                    types = PiiType::ALL.to_vec();
                }
                Settings::Pii { types }
            }
            Kind::Size => {
                let j: SizeJson = json(kind, settings)?;
                if j.max_bytes == 0 && j.max_tokens == 0 && j.max_messages == 0 {
                    return Err(
                        "a size guardrail needs max_bytes, max_tokens or max_messages".into(),
                    );
                }
                if action == Action::Redact {
                    return Err("a size guardrail cannot redact (use block or log)".into());
                }
                Settings::Size {
                    max_bytes: j.max_bytes,
                    max_tokens: j.max_tokens,
                    max_messages: j.max_messages,
                }
            }
            Kind::Model => {
                let j: ModelJson = json(kind, settings)?;
                if j.allow.is_empty() && j.deny.is_empty() {
                    return Err("a model guardrail needs an 'allow' or a 'deny' list".into());
                }
                if action == Action::Redact {
                    return Err("a model guardrail cannot redact (use block or log)".into());
                }
                if direction != Direction::Input {
                    return Err("a model guardrail checks input only (direction input)".into());
                }
                Settings::Model {
                    allow: j.allow,
                    deny: j.deny,
                }
            }
            Kind::Webhook => {
                let j: WebhookJson = json(kind, settings)?;
                if !(j.url.starts_with("http://") || j.url.starts_with("https://")) {
                    return Err("webhook url must start with http:// or https://".into());
                }
                let fail = match j.fail.as_str() {
                    "open" => FailMode::Open,
                    "closed" => FailMode::Closed,
                    other => {
                        return Err(format!(
                            "webhook 'fail' must be \"open\" or \"closed\", not {other:?}"
                        ))
                    }
                };
                let timeout_ms = if j.timeout_ms == 0 {
                    DEFAULT_WEBHOOK_TIMEOUT_MS
                } else {
                    j.timeout_ms
                };
                if timeout_ms > MAX_WEBHOOK_TIMEOUT_MS {
                    return Err(format!(
                        "webhook timeout_ms must be at most {MAX_WEBHOOK_TIMEOUT_MS}"
                    ));
                }
                Settings::Webhook {
                    url: j.url,
                    timeout_ms,
                    fail,
                }
            }
        };
        Ok(GuardrailSpec {
            kind,
            action,
            direction,
            settings,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind() {
        let s = GuardrailSpec::parse("keyword", "block", "input", r#"{"words":["a b"]}"#).unwrap();
        assert_eq!(s.kind, Kind::Keyword);
        let s = GuardrailSpec::parse("pii", "redact", "both", "").unwrap();
        assert_eq!(
            s.settings,
            Settings::Pii {
                types: PiiType::ALL.to_vec()
            }
        );
        let s = GuardrailSpec::parse(
            "webhook",
            "block",
            "input",
            r#"{"url":"http://x/check","fail":"closed"}"#,
        )
        .unwrap();
        assert_eq!(
            s.settings,
            Settings::Webhook {
                url: "http://x/check".into(),
                timeout_ms: DEFAULT_WEBHOOK_TIMEOUT_MS,
                fail: FailMode::Closed
            }
        );
    }

    #[test]
    fn bad_regex_names_the_pattern_and_position() {
        let e = GuardrailSpec::parse("regex", "block", "input", r#"{"patterns":["ok","a(b"]}"#)
            .unwrap_err();
        assert!(e.contains("patterns[1]"), "{e}");
        assert!(e.contains("unclosed group"), "{e}");
        assert!(e.contains('^'), "{e}");
    }

    #[test]
    fn rejects_what_cannot_work() {
        for (kind, action, dir, settings) in [
            ("nope", "block", "input", "{}"),
            ("keyword", "stop", "input", r#"{"words":["x"]}"#),
            ("keyword", "block", "sideways", r#"{"words":["x"]}"#),
            ("keyword", "block", "input", r#"{"words":[]}"#),
            ("keyword", "block", "input", r#"{"words":["x"],"extra":1}"#),
            ("pii", "block", "input", r#"{"types":["dna"]}"#),
            ("size", "redact", "input", r#"{"max_bytes":10}"#),
            ("size", "block", "input", r#"{}"#),
            ("model", "block", "output", r#"{"deny":["m"]}"#),
            ("webhook", "block", "input", r#"{"url":"http://x"}"#),
            (
                "webhook",
                "block",
                "input",
                r#"{"url":"ftp://x","fail":"open"}"#,
            ),
            (
                "webhook",
                "block",
                "input",
                r#"{"url":"http://x","fail":"open","timeout_ms":999999}"#,
            ),
        ] {
            assert!(
                GuardrailSpec::parse(kind, action, dir, settings).is_err(),
                "{kind} {action} {dir} {settings}"
            );
        }
    }
}
