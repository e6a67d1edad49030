//! Guardrails: input and output policies of a tenant, compiled once per
//! snapshot version (Aho-Corasick automata for keyword lists, a `RegexSet`
//! plus individual regexes for patterns, PII detectors with checksums) and
//! evaluated per call without parsing or merging configuration.
//!
//! A guardrail applies to a call when it is attached to the tenant as a
//! whole, to the caller key, or to the model (route) called. Verdicts record
//! the guardrail's name, the action and a category — never the matched text.
//! See docs/guardrails.md.

pub mod pii;
pub mod text;
pub mod webhook;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use bytes::Bytes;
use regex::{Regex, RegexSet};
use serde_json::{Map, Value};
use tollgate_core::guardrail::{
    build_regex, Action, Direction, FailMode, GuardrailSpec, Settings, REGEX_SIZE_LIMIT,
};
use tollgate_proto::sync::v1 as pb;

use crate::http::errors::{ApiFormat, GatewayError};
pub use text::RequestShape;
use webhook::{WebhookSpec, WebhookVerdict};

/// One guardrail's decision on one call, as recorded in the usage record and
/// the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub name: Arc<str>,
    /// `block`, `redact`, `log`, or `allow` (a webhook failing open).
    pub action: &'static str,
    /// What matched: `keyword`, `regex`, a PII type (`email`…), a limit
    /// (`max_bytes`…), `model_denied`, `webhook`, `webhook_timeout`…
    pub category: &'static str,
    pub direction: &'static str,
}

impl Verdict {
    pub fn to_proto(&self) -> pb::GuardrailVerdict {
        pb::GuardrailVerdict {
            name: self.name.to_string(),
            action: self.action.to_string(),
            category: self.category.to_string(),
            direction: self.direction.to_string(),
        }
    }
}

/// Process-wide counters of verdicts (exported with the metrics later).
#[derive(Debug, Default)]
pub struct Counters {
    pub blocked: AtomicU64,
    pub redacted: AtomicU64,
    pub logged: AtomicU64,
    pub webhook_failures: AtomicU64,
}

pub static COUNTERS: Counters = Counters {
    blocked: AtomicU64::new(0),
    redacted: AtomicU64::new(0),
    logged: AtomicU64::new(0),
    webhook_failures: AtomicU64::new(0),
};

fn count(v: &Verdict) {
    let c = match v.action {
        "block" => &COUNTERS.blocked,
        "redact" => &COUNTERS.redacted,
        _ => &COUNTERS.logged,
    };
    c.fetch_add(1, Ordering::Relaxed);
    if v.category.starts_with("webhook_") {
        COUNTERS.webhook_failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// Keyword deny list.
#[derive(Debug)]
struct KeywordMatcher {
    ac: AhoCorasick,
    whole_word: bool,
    /// No keyword contains `"` or `\\`, so no match in a raw JSON body can
    /// straddle a string's edge (see [`Detector::raw_scan_safe`]).
    raw_safe: bool,
}

impl KeywordMatcher {
    fn is_word_char(c: Option<char>) -> bool {
        c.is_some_and(|c| c.is_alphanumeric() || c == '_')
    }

    /// Byte ranges of matches (whole words only when configured).
    fn matches<'a>(&'a self, text: &'a str) -> impl Iterator<Item = (usize, usize)> + 'a {
        self.ac.find_iter(text).filter_map(move |m| {
            let (s, e) = (m.start(), m.end());
            if self.whole_word {
                let before = text[..s].chars().next_back();
                let after = text[e..].chars().next();
                if Self::is_word_char(before) || Self::is_word_char(after) {
                    return None;
                }
            }
            Some((s, e))
        })
    }
}

/// Regex deny list: the set answers "any match?" in one pass; the
/// individual regexes give positions for redaction.
#[derive(Debug)]
struct RegexMatcher {
    set: RegexSet,
    each: Vec<Regex>,
}

#[derive(Debug)]
enum Detector {
    Keyword(KeywordMatcher),
    Regex(RegexMatcher),
    Pii(pii::PiiMatcher),
    Size {
        max_bytes: u64,
        max_tokens: u64,
        max_messages: u64,
    },
    Model {
        allow: HashSet<String>,
        deny: HashSet<String>,
    },
    Webhook(WebhookSpec),
}

impl Detector {
    /// Category of the first match in `text`.
    fn find(&self, text: &str) -> Option<&'static str> {
        match self {
            Detector::Keyword(k) => k.matches(text).next().map(|_| "keyword"),
            Detector::Regex(r) => r.set.is_match(text).then_some("regex"),
            Detector::Pii(p) => p.find(text).map(|t| t.as_str()),
            _ => None,
        }
    }

    /// Replaces every match with its placeholder; the category of the
    /// first one replaced.
    fn redact(&self, text: &mut String) -> Option<&'static str> {
        let mut spans: Vec<(usize, usize, &'static str, &'static str)> = match self {
            Detector::Keyword(k) => k
                .matches(text)
                .map(|(s, e)| (s, e, "[REDACTED:KEYWORD]", "keyword"))
                .collect(),
            Detector::Regex(r) => {
                if !r.set.is_match(text) {
                    return None;
                }
                let mut spans: Vec<(usize, usize, &str, &str)> = Vec::new();
                for i in r.set.matches(text).iter() {
                    for m in r.each[i].find_iter(text) {
                        let (s, e) = (m.start(), m.end());
                        if s < e && !spans.iter().any(|&(a, b, _, _)| s < b && a < e) {
                            spans.push((s, e, "[REDACTED:REGEX]", "regex"));
                        }
                    }
                }
                spans.sort_by_key(|s| s.0);
                spans
            }
            Detector::Pii(p) => p
                .spans(text)
                .into_iter()
                .map(|(s, e, t)| (s, e, t.placeholder(), t.as_str()))
                .collect(),
            _ => return None,
        };
        if spans.is_empty() {
            return None;
        }
        spans.sort_by_key(|s| s.0);
        let category = spans[0].3;
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (s, e, placeholder, _) in spans {
            if s < at {
                continue;
            }
            out.push_str(&text[at..s]);
            out.push_str(placeholder);
            at = e;
        }
        out.push_str(&text[at..]);
        *text = out;
        Some(category)
    }

    /// Whether scanning a raw JSON answer that contains no backslash finds
    /// every match this detector finds in the decoded answer texts. Such a
    /// body holds each text verbatim between two `"`; no PII pattern and no
    /// raw-safe keyword can match a `"`, and `"` is a non-word character like
    /// a text's edge, so matches inside a string are the same in both.
    /// Arbitrary regexes (`^`, `[^…]`) don't have that property.
    fn raw_scan_safe(&self) -> bool {
        match self {
            Detector::Pii(_) => true,
            Detector::Keyword(k) => k.raw_safe,
            _ => false,
        }
    }

    fn scans_text(&self) -> bool {
        matches!(
            self,
            Detector::Keyword(_) | Detector::Regex(_) | Detector::Pii(_)
        )
    }
}

/// One compiled guardrail with the calls it applies to.
#[derive(Debug)]
pub struct Guardrail {
    pub name: Arc<str>,
    action: Action,
    direction: Direction,
    tenant_wide: bool,
    key_ids: IdSet,
    model_ids: IdSet,
    detector: Detector,
}

/// Key or model ids a guardrail is attached to, looked up on every call of
/// the tenant: foldhash, not SipHash — the ids come from our configuration.
type IdSet = HashSet<String, foldhash::fast::RandomState>;

impl Guardrail {
    fn applies(&self, key_id: &str, model_id: &str) -> bool {
        self.tenant_wide || self.key_ids.contains(key_id) || self.model_ids.contains(model_id)
    }

    fn verdict(&self, action: &'static str, category: &'static str, output: bool) -> Verdict {
        Verdict {
            name: self.name.clone(),
            action,
            category,
            direction: if output { "output" } else { "input" },
        }
    }
}

/// The guardrails of one tenant, compiled for one snapshot version.
#[derive(Debug, Default)]
pub struct TenantGuardrails {
    rules: Vec<Guardrail>,
    /// Whether any rule is tenant-wide, and the union of the rules' keys
    /// and models: a call none of them names skips the guardrail stages
    /// with one or two lookups instead of walking every rule.
    any_tenant_wide: bool,
    key_ids: IdSet,
    model_ids: IdSet,
}

/// Compiles one guardrail definition; the error is the snapshot's reject
/// reason (it names the guardrail, never request text).
fn compile_one(c: &pb::GuardrailConfig) -> Result<Guardrail, String> {
    let spec = GuardrailSpec::parse(&c.kind, &c.action, &c.direction, &c.settings)
        .map_err(|e| format!("guardrail {:?}: {e}", c.name))?;
    let bad = |e: String| format!("guardrail {:?}: {e}", c.name);
    let detector = match spec.settings {
        Settings::Keyword {
            words,
            case_sensitive,
            whole_word,
        } => Detector::Keyword(KeywordMatcher {
            raw_safe: words.iter().all(|w| !w.contains(['"', '\\'])),
            ac: AhoCorasickBuilder::new()
                .ascii_case_insensitive(!case_sensitive)
                .match_kind(MatchKind::LeftmostLongest)
                .build(&words)
                .map_err(|e| bad(e.to_string()))?,
            whole_word,
        }),
        Settings::Regex { patterns } => {
            let set = regex::RegexSetBuilder::new(&patterns)
                .size_limit(REGEX_SIZE_LIMIT * patterns.len().max(1))
                .build()
                .map_err(|e| bad(e.to_string()))?;
            let each = patterns
                .iter()
                .map(|p| build_regex(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(e.to_string()))?;
            Detector::Regex(RegexMatcher { set, each })
        }
        Settings::Pii { types } => {
            Detector::Pii(pii::PiiMatcher::new(&types).map_err(|e| bad(e.to_string()))?)
        }
        Settings::Size {
            max_bytes,
            max_tokens,
            max_messages,
        } => Detector::Size {
            max_bytes,
            max_tokens,
            max_messages,
        },
        Settings::Model { allow, deny } => Detector::Model {
            allow: allow.into_iter().collect(),
            deny: deny.into_iter().collect(),
        },
        Settings::Webhook {
            url,
            timeout_ms,
            fail,
        } => Detector::Webhook(WebhookSpec {
            url,
            timeout: Duration::from_millis(timeout_ms),
            fail,
        }),
    };
    Ok(Guardrail {
        name: Arc::from(c.name.as_str()),
        action: spec.action,
        direction: spec.direction,
        tenant_wide: c.tenant_wide,
        key_ids: c.key_ids.iter().cloned().collect(),
        model_ids: c.model_ids.iter().cloned().collect(),
        detector,
    })
}

impl TenantGuardrails {
    /// Compiles a tenant's guardrails. Unattached ones are left out.
    pub fn compile(configs: &[pb::GuardrailConfig]) -> Result<TenantGuardrails, String> {
        let mut rules = Vec::with_capacity(configs.len());
        for c in configs {
            if !c.tenant_wide && c.key_ids.is_empty() && c.model_ids.is_empty() {
                continue;
            }
            rules.push(compile_one(c)?);
        }
        let mut set = TenantGuardrails {
            any_tenant_wide: rules.iter().any(|g| g.tenant_wide),
            key_ids: rules
                .iter()
                .flat_map(|g| g.key_ids.iter().cloned())
                .collect(),
            model_ids: rules
                .iter()
                .flat_map(|g| g.model_ids.iter().cloned())
                .collect(),
            rules: Vec::new(),
        };
        set.rules = rules;
        Ok(set)
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any rule (input or output) may apply to a call of `key_id`
    /// to `model_id`; `false` means none does.
    pub fn may_apply(&self, key_id: &str, model_id: &str) -> bool {
        !self.rules.is_empty()
            && (self.any_tenant_wide
                || self.model_ids.contains(model_id)
                || self.key_ids.contains(key_id))
    }
}

/// The refusal a caller gets (400 `content_policy_violation`).
fn blocked(name: &str) -> GatewayError {
    GatewayError::ContentPolicy {
        guardrail: name.to_string(),
    }
}

/// What an input check needs to know about the call.
#[derive(Debug, Clone, Copy)]
pub struct InputCall<'a> {
    pub key_id: &'a str,
    pub model_id: &'a str,
    /// The public model name asked for.
    pub model: &'a str,
    pub body_len: usize,
    pub shape: RequestShape,
}

/// Runs the input guardrails that apply to a call, in definition order.
/// Redactions rewrite `body` (what goes upstream); a block returns the
/// error for the caller. Verdicts are appended to `verdicts`.
pub async fn check_input(
    set: &TenantGuardrails,
    call: InputCall<'_>,
    body: &mut Map<String, Value>,
    http: &reqwest::Client,
    verdicts: &mut Vec<Verdict>,
) -> Result<(), GatewayError> {
    for g in &set.rules {
        if !g.direction.input() || !g.applies(call.key_id, call.model_id) {
            continue;
        }
        let hit: Option<&'static str> = match &g.detector {
            Detector::Size {
                max_bytes,
                max_tokens,
                max_messages,
            } => {
                let mut text_bytes = 0usize;
                text::request_texts(body, call.shape, &mut |s| text_bytes += s.len());
                let tokens = text_bytes.div_ceil(4) as u64;
                if *max_bytes > 0 && call.body_len as u64 > *max_bytes {
                    Some("max_bytes")
                } else if *max_tokens > 0 && tokens > *max_tokens {
                    Some("max_tokens")
                } else if *max_messages > 0 && text::message_count(body, call.shape) > *max_messages
                {
                    Some("max_messages")
                } else {
                    None
                }
            }
            Detector::Model { allow, deny } => {
                if deny.contains(call.model) {
                    Some("model_denied")
                } else if !allow.is_empty() && !allow.contains(call.model) {
                    Some("model_not_allowed")
                } else {
                    None
                }
            }
            Detector::Webhook(spec) => {
                match input_webhook(g, spec, body, call.shape, http, verdicts).await {
                    Ok(()) => None,
                    Err(e) => return Err(e),
                }
            }
            d if g.action == Action::Redact => {
                let mut first = None;
                text::request_texts(body, call.shape, &mut |s| {
                    if let Some(c) = d.redact(s) {
                        first.get_or_insert(c);
                    }
                });
                if let Some(c) = first {
                    let v = g.verdict("redact", c, false);
                    count(&v);
                    verdicts.push(v);
                }
                None
            }
            d => {
                let mut first = None;
                text::request_texts(body, call.shape, &mut |s| {
                    if first.is_none() {
                        first = d.find(s);
                    }
                });
                first
            }
        };
        if let Some(category) = hit {
            let block = g.action == Action::Block;
            let v = g.verdict(if block { "block" } else { "log" }, category, false);
            count(&v);
            verdicts.push(v);
            if block {
                return Err(blocked(&g.name));
            }
        }
    }
    Ok(())
}

async fn input_webhook(
    g: &Guardrail,
    spec: &WebhookSpec,
    body: &mut Map<String, Value>,
    shape: RequestShape,
    http: &reqwest::Client,
    verdicts: &mut Vec<Verdict>,
) -> Result<(), GatewayError> {
    let mut texts: Vec<String> = Vec::new();
    text::request_texts(body, shape, &mut |s| texts.push(s.clone()));
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let answer = webhook::ask(http, spec, &g.name, "input", &refs).await;
    drop(refs);
    webhook_outcome(g, spec, answer, false, verdicts, |new| {
        let mut it = new.into_iter();
        text::request_texts(body, shape, &mut |s| {
            if let Some(n) = it.next() {
                *s = n;
            }
        });
    })
}

/// Applies a webhook's answer: records the verdict, rewrites through
/// `rewrite`, or returns the refusal.
fn webhook_outcome(
    g: &Guardrail,
    spec: &WebhookSpec,
    answer: WebhookVerdict,
    output: bool,
    verdicts: &mut Vec<Verdict>,
    rewrite: impl FnOnce(Vec<String>),
) -> Result<(), GatewayError> {
    let (v, result) = match answer {
        WebhookVerdict::Allow => return Ok(()),
        WebhookVerdict::Block if g.action == Action::Block => {
            (g.verdict("block", "webhook", output), Err(blocked(&g.name)))
        }
        WebhookVerdict::Block => (g.verdict("log", "webhook", output), Ok(())),
        WebhookVerdict::Rewrite(texts) => {
            if g.action == Action::Log {
                (g.verdict("log", "webhook", output), Ok(()))
            } else {
                rewrite(texts);
                (g.verdict("redact", "webhook", output), Ok(()))
            }
        }
        WebhookVerdict::Failed(why) => match spec.fail {
            FailMode::Closed => (g.verdict("block", why, output), Err(blocked(&g.name))),
            FailMode::Open => (g.verdict("allow", why, output), Ok(())),
        },
    };
    count(&v);
    verdicts.push(v);
    result
}

/// Bytes of answer text kept between stream events, so a match that spans
/// two events is still found.
pub const STREAM_WINDOW: usize = 512;

/// The output guardrails of one call, resolved once when the call is
/// admitted.
#[derive(Debug)]
pub struct OutputGuard {
    set: Arc<TenantGuardrails>,
    /// Indices into `set.rules`.
    rules: Vec<usize>,
    http: reqwest::Client,
    /// Tail of the streamed answer text (at most [`STREAM_WINDOW`] bytes
    /// before the newest event's text).
    window: String,
    /// Rules already recorded on this stream (log verdicts once).
    noted: Vec<usize>,
    /// Every rule can pre-scan the raw answer ([`Detector::raw_scan_safe`]).
    raw_scan: bool,
}

impl OutputGuard {
    /// `None` when no output guardrail applies to the call.
    pub fn for_call(
        set: &Arc<TenantGuardrails>,
        key_id: &str,
        model_id: &str,
        http: &reqwest::Client,
    ) -> Option<OutputGuard> {
        let rules: Vec<usize> = set
            .rules
            .iter()
            .enumerate()
            .filter(|(_, g)| g.direction.output() && g.applies(key_id, model_id))
            .filter(|(_, g)| g.detector.scans_text() || matches!(g.detector, Detector::Webhook(_)))
            .map(|(i, _)| i)
            .collect();
        let raw_scan = rules.iter().all(|&i| set.rules[i].detector.raw_scan_safe());
        (!rules.is_empty()).then(|| OutputGuard {
            set: set.clone(),
            raw_scan,
            rules,
            http: http.clone(),
            window: String::new(),
            noted: Vec::new(),
        })
    }

    /// Checks a complete answer (JSON in any protocol). Returns the bytes
    /// to send (rewritten when redacted) or the refusal.
    pub async fn check_answer(
        &self,
        body: Bytes,
        verdicts: &mut Vec<Verdict>,
    ) -> Result<Bytes, GatewayError> {
        // Fast path: a clean answer (the common case) passes untouched
        // without building a JSON tree (the parse and its drop cost more
        // than all the detectors together).
        if self.raw_clean(&body) {
            return Ok(body);
        }
        let Ok(mut answer) = serde_json::from_slice::<Value>(&body) else {
            return Ok(body);
        };
        let mut changed = false;
        for &i in &self.rules {
            let g = &self.set.rules[i];
            if let Detector::Webhook(spec) = &g.detector {
                let mut texts: Vec<String> = Vec::new();
                text::answer_texts(&mut answer, &mut |s| texts.push(s.clone()));
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                let reply = webhook::ask(&self.http, spec, &g.name, "output", &refs).await;
                webhook_outcome(g, spec, reply, true, verdicts, |new| {
                    let mut it = new.into_iter();
                    text::answer_texts(&mut answer, &mut |s| {
                        if let Some(n) = it.next() {
                            *s = n;
                            changed = true;
                        }
                    });
                })?;
                continue;
            }
            if g.action == Action::Redact {
                let mut first = None;
                text::answer_texts(&mut answer, &mut |s| {
                    if let Some(c) = g.detector.redact(s) {
                        first.get_or_insert(c);
                    }
                });
                if let Some(c) = first {
                    changed = true;
                    let v = g.verdict("redact", c, true);
                    count(&v);
                    verdicts.push(v);
                }
                continue;
            }
            let mut first = None;
            text::answer_texts(&mut answer, &mut |s| {
                if first.is_none() {
                    first = g.detector.find(s);
                }
            });
            if let Some(c) = first {
                let block = g.action == Action::Block;
                let v = g.verdict(if block { "block" } else { "log" }, c, true);
                count(&v);
                verdicts.push(v);
                if block {
                    return Err(blocked(&g.name));
                }
            }
        }
        Ok(if changed {
            Bytes::from(answer.to_string())
        } else {
            body
        })
    }

    /// True when no rule can match any answer text, judged on the raw bytes:
    /// only when every rule is raw-scan safe and the body has no backslash
    /// (an escape such as `\u0040` or `\n` could hide a match or move a word
    /// boundary). Any match, even in a field that isn't answer text, means
    /// "not known clean": the exact path decides.
    fn raw_clean(&self, body: &[u8]) -> bool {
        if !self.raw_scan || body.contains(&b'\\') {
            return false;
        }
        let Ok(raw) = std::str::from_utf8(body) else {
            return false;
        };
        self.rules
            .iter()
            .all(|&i| self.set.rules[i].detector.find(raw).is_none())
    }

    /// Checks one relayed stream event. On a violation of a blocking
    /// guardrail returns the refusal: the caller stops relaying. Redaction
    /// cannot take back text already sent, so on streams a redacting
    /// guardrail only records its verdict; webhooks are not called per
    /// event.
    pub fn on_stream_event(
        &mut self,
        event: &[u8],
        verdicts: &mut Vec<Verdict>,
    ) -> Result<(), GatewayError> {
        let Some(data) = crate::stream::event_data(event) else {
            return Ok(());
        };
        let before = self.window.len();
        text::event_text(&data, &mut self.window);
        if self.window.len() == before {
            return Ok(());
        }
        for &i in &self.rules {
            let g = &self.set.rules[i];
            if !g.detector.scans_text() {
                continue;
            }
            let block = g.action == Action::Block;
            if !block && self.noted.contains(&i) {
                continue;
            }
            if let Some(c) = g.detector.find(&self.window) {
                let v = g.verdict(if block { "block" } else { "log" }, c, true);
                count(&v);
                verdicts.push(v);
                if block {
                    return Err(blocked(&g.name));
                }
                self.noted.push(i);
            }
        }
        if self.window.len() > STREAM_WINDOW {
            let mut cut = self.window.len() - STREAM_WINDOW;
            while !self.window.is_char_boundary(cut) {
                cut += 1;
            }
            self.window.drain(..cut);
        }
        Ok(())
    }
}

/// The event that ends a stream stopped by an output guardrail, in the
/// caller's protocol: an OpenAI `data: {"error":…}` event, an Anthropic
/// `event: error`.
pub fn stream_error_event(e: &GatewayError, api: ApiFormat) -> Bytes {
    let (_, body) = e.render(api);
    let mut out = Vec::with_capacity(body.len() + 24);
    if api == ApiFormat::Anthropic {
        out.extend_from_slice(b"event: error\n");
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&body);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// Guardrail state of one call (in the pipeline's `CallContext`).
#[derive(Debug, Default)]
pub struct CallGuard {
    pub verdicts: Vec<Verdict>,
    pub output: Option<OutputGuard>,
}

impl CallGuard {
    /// The verdicts as the access log shows them: `name:action:category`.
    pub fn log_field(&self) -> String {
        self.verdicts
            .iter()
            .map(|v| format!("{}:{}:{}", v.name, v.action, v.category))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests;
