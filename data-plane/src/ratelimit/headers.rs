//! The `x-ratelimit-*` response headers, in OpenAI's names and formats:
//! `x-ratelimit-limit-requests`, `x-ratelimit-remaining-requests`,
//! `x-ratelimit-reset-requests` (a duration such as `1s`, `6m0s`, `20ms`)
//! and the same three for tokens. Each family reports the limit closest to
//! running out among those that apply to the call; a family without any
//! limit is left out.

use super::{Limiter, WINDOWED};

/// One family of headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    pub limit: i64,
    pub remaining: i64,
    pub reset_ms: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub requests: Option<Family>,
    pub tokens: Option<Family>,
}

fn tighter(a: Option<Family>, b: Family) -> Option<Family> {
    match a {
        Some(a) if a.remaining < b.remaining => Some(a),
        Some(a) if a.remaining == b.remaining && a.reset_ms >= b.reset_ms => Some(a),
        _ => Some(b),
    }
}

impl RateHeaders {
    /// The headers of a call subject to `limiters`, as of `now_ms`.
    pub fn of<'a>(limiters: impl Iterator<Item = &'a Limiter>, now_ms: i64) -> RateHeaders {
        let mut h = RateHeaders::default();
        for l in limiters {
            for (i, dim) in WINDOWED.iter().enumerate() {
                let limit = l.limits[i];
                if limit <= 0 {
                    continue;
                }
                let c = &l.state.windows[i];
                let current = c.start() == super::window::window_start(now_ms, c.window_ms);
                let f = Family {
                    limit,
                    remaining: if current { c.remaining(limit) } else { limit },
                    reset_ms: c.reset_ms(now_ms),
                };
                if dim.is_tokens() {
                    h.tokens = tighter(h.tokens, f);
                } else {
                    h.requests = tighter(h.requests, f);
                }
            }
        }
        h
    }

    /// `(name, value)` pairs to add to a response.
    pub fn pairs(&self) -> impl Iterator<Item = (&'static str, String)> {
        self.values()
            .map(|(name, v)| (name, v.as_str().to_string()))
    }

    /// The header values, formatted into stack buffers: this runs on every
    /// limited call, so no `String`/`format!` (docs/rate-limits.md, Cost).
    pub fn values(&self) -> impl Iterator<Item = (&'static str, Value)> {
        let families = [(self.requests, REQUEST_NAMES), (self.tokens, TOKEN_NAMES)];
        families.into_iter().flat_map(|(f, names)| {
            f.into_iter().flat_map(move |f| {
                [
                    (names[0], Value::int(f.limit)),
                    (names[1], Value::int(f.remaining)),
                    (names[2], Value::duration(f.reset_ms)),
                ]
            })
        })
    }

    /// Adds the headers to a response head's map: `const` names, so none
    /// is parsed; the values are written into one buffer and each header
    /// holds a slice of it (one allocation for all six, not one each).
    pub fn write_to(&self, h: &mut http::HeaderMap) {
        let families = [
            (self.requests, &REQUEST_HEADERS),
            (self.tokens, &TOKEN_HEADERS),
        ];
        let mut buf = bytes::BytesMut::with_capacity(6 * 24);
        let mut ends = [0_usize; 6];
        for (i, (f, _)) in families.iter().enumerate() {
            if let Some(f) = f {
                let values = [
                    Value::int(f.limit),
                    Value::int(f.remaining),
                    Value::duration(f.reset_ms),
                ];
                for (j, v) in values.iter().enumerate() {
                    buf.extend_from_slice(v.as_bytes());
                    ends[i * 3 + j] = buf.len();
                }
            }
        }
        let buf = buf.freeze();
        let mut start = 0;
        for (i, (f, names)) in families.iter().enumerate() {
            if f.is_none() {
                continue;
            }
            for (j, name) in names.iter().enumerate() {
                let end = ends[i * 3 + j];
                // Only ASCII digits and unit letters: always a valid value.
                if let Ok(v) = http::HeaderValue::from_maybe_shared(buf.slice(start..end)) {
                    h.insert(name.clone(), v);
                }
                start = end;
            }
        }
    }
}

const REQUEST_HEADERS: [http::HeaderName; 3] = [
    http::HeaderName::from_static(REQUEST_NAMES[0]),
    http::HeaderName::from_static(REQUEST_NAMES[1]),
    http::HeaderName::from_static(REQUEST_NAMES[2]),
];
const TOKEN_HEADERS: [http::HeaderName; 3] = [
    http::HeaderName::from_static(TOKEN_NAMES[0]),
    http::HeaderName::from_static(TOKEN_NAMES[1]),
    http::HeaderName::from_static(TOKEN_NAMES[2]),
];

const REQUEST_NAMES: [&str; 3] = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
];
const TOKEN_NAMES: [&str; 3] = [
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
];

/// A short header value in a stack buffer (an `i64` or a duration: at most
/// 20 + 25 bytes).
#[derive(Clone, Copy)]
pub struct Value {
    buf: [u8; 48],
    len: usize,
}

impl Value {
    fn empty() -> Value {
        Value {
            buf: [0; 48],
            len: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let end = (self.len + bytes.len()).min(self.buf.len());
        let n = end - self.len;
        self.buf[self.len..end].copy_from_slice(&bytes[..n]);
        self.len = end;
    }

    fn push_int(&mut self, n: i64) {
        let mut b = itoa::Buffer::new();
        self.push(b.format(n).as_bytes());
    }

    fn int(n: i64) -> Value {
        let mut v = Value::empty();
        v.push_int(n);
        v
    }

    /// A duration the way OpenAI (Go's `time.Duration`) writes it: `20ms`,
    /// `1s`, `1.5s`, `6m0s`, `1h2m3s`.
    fn duration(ms: i64) -> Value {
        let ms = ms.max(0);
        let mut v = Value::empty();
        if ms < 1_000 {
            v.push_int(ms);
            v.push(b"ms");
            return v;
        }
        let h = ms / 3_600_000;
        let m = (ms / 60_000) % 60;
        let s_ms = ms % 60_000;
        if h > 0 {
            v.push_int(h);
            v.push(b"h");
        }
        if h > 0 || m > 0 {
            v.push_int(m);
            v.push(b"m");
        }
        v.push_int(s_ms / 1_000);
        let frac = s_ms % 1_000;
        if frac != 0 {
            // Milliseconds as a decimal fraction without trailing zeros.
            let digits = [
                b'0' + (frac / 100) as u8,
                b'0' + (frac / 10 % 10) as u8,
                b'0' + (frac % 10) as u8,
            ];
            let keep = if frac % 100 == 0 {
                1
            } else if frac % 10 == 0 {
                2
            } else {
                3
            };
            v.push(b".");
            v.push(&digits[..keep]);
        }
        v.push(b"s");
        v
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits and unit letters are ever pushed.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

/// A duration the way OpenAI (Go's `time.Duration`) writes it: `20ms`,
/// `1s`, `1.5s`, `6m0s`, `1h2m3s`.
pub fn duration(ms: i64) -> String {
    Value::duration(ms).as_str().to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_openai_headers() {
        assert_eq!(duration(20), "20ms");
        assert_eq!(duration(0), "0ms");
        assert_eq!(duration(1_000), "1s");
        assert_eq!(duration(1_500), "1.5s");
        assert_eq!(duration(59_999), "59.999s");
        assert_eq!(duration(360_000), "6m0s");
        assert_eq!(duration(61_250), "1m1.25s");
        assert_eq!(duration(3_723_000), "1h2m3s");
        assert_eq!(duration(-5), "0ms");
        assert_eq!(duration(999), "999ms");
        assert_eq!(duration(60_000), "1m0s");
        assert_eq!(duration(3_600_000), "1h0m0s");
        assert_eq!(duration(3_600_010), "1h0m0.01s");
        assert_eq!(duration(1_100), "1.1s");
        assert_eq!(duration(1_010), "1.01s");
        assert_eq!(duration(1_001), "1.001s");
        assert_eq!(duration(i64::MAX), "2562047788015h12m55.807s");
    }

    #[test]
    fn the_tightest_limit_of_a_family_is_reported() {
        let a = Family {
            limit: 100,
            remaining: 40,
            reset_ms: 1_000,
        };
        let b = Family {
            limit: 60,
            remaining: 10,
            reset_ms: 30_000,
        };
        assert_eq!(tighter(Some(a), b), Some(b));
        assert_eq!(tighter(Some(b), a), Some(b));
        let h = RateHeaders {
            requests: Some(b),
            tokens: None,
        };
        let pairs: Vec<_> = h.pairs().collect();
        assert_eq!(
            pairs,
            [
                ("x-ratelimit-limit-requests", "60".to_string()),
                ("x-ratelimit-remaining-requests", "10".to_string()),
                ("x-ratelimit-reset-requests", "30s".to_string()),
            ]
        );
    }

    /// The head gets exactly what `pairs` lists, for either family alone
    /// and for both (the values share one buffer; each header its slice).
    #[test]
    fn the_head_gets_each_family_value_for_value() {
        let f = |limit, remaining, reset_ms| Family {
            limit,
            remaining,
            reset_ms,
        };
        for h in [
            RateHeaders {
                requests: Some(f(60, 10, 30_000)),
                tokens: None,
            },
            RateHeaders {
                requests: None,
                tokens: Some(f(90_000, 0, 1_500)),
            },
            RateHeaders {
                requests: Some(f(7, 6, 20)),
                tokens: Some(f(1_000_000, 999_123, 3_723_004)),
            },
        ] {
            let mut map = http::HeaderMap::new();
            h.write_to(&mut map);
            let got: Vec<(String, String)> = map
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                .collect();
            let want: Vec<(String, String)> = h.pairs().map(|(k, v)| (k.to_string(), v)).collect();
            assert_eq!(got.len(), want.len());
            for w in &want {
                assert!(got.contains(w), "{w:?} missing from {got:?}");
            }
        }
    }
}
