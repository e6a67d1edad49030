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
        let families = [
            (
                self.requests,
                [
                    "x-ratelimit-limit-requests",
                    "x-ratelimit-remaining-requests",
                    "x-ratelimit-reset-requests",
                ],
            ),
            (
                self.tokens,
                [
                    "x-ratelimit-limit-tokens",
                    "x-ratelimit-remaining-tokens",
                    "x-ratelimit-reset-tokens",
                ],
            ),
        ];
        families.into_iter().flat_map(|(f, names)| {
            f.into_iter().flat_map(move |f| {
                [
                    (names[0], f.limit.to_string()),
                    (names[1], f.remaining.to_string()),
                    (names[2], duration(f.reset_ms)),
                ]
            })
        })
    }
}

/// A duration the way OpenAI (Go's `time.Duration`) writes it: `20ms`,
/// `1s`, `1.5s`, `6m0s`, `1h2m3s`.
pub fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let h = ms / 3_600_000;
    let m = (ms / 60_000) % 60;
    let s_ms = ms % 60_000;
    let secs = if s_ms % 1_000 == 0 {
        format!("{}s", s_ms / 1_000)
    } else {
        let frac = format!("{:03}", s_ms % 1_000);
        format!("{}.{}s", s_ms / 1_000, frac.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

#[cfg(test)]
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
}
