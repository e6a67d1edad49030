//! Cache stage: between parse & validate and the upstream call. Looks the
//! request up under the effective policy, answers a hit without contacting
//! any upstream (replayed as a stream when the caller streams), and on a
//! miss arranges for the clean final answer to be stored.

use std::sync::Arc;

use bytes::Bytes;
use pingora_proxy::Session;
use serde_json::{Map, Value};
use tollgate_core::usage::Usage;

use super::failover::Answer;
use super::{CallContext, Failure, Gateway};
use crate::cache::assemble::{
    AnthropicAssembler, CacheFill, FillingStream, OpenAiAssembler, StreamAssembler,
};
use crate::cache::control::directive;
use crate::cache::{
    cache_key, replay, CacheDirective, CacheEndpoint, CacheKey, CachePolicy, CacheStatus,
    CachedAnswer,
};
use crate::config::Route;
use crate::http::response;
use crate::providers::{ByteStream, UpstreamResponse};

/// Where a miss's answer will be stored.
pub(super) struct CachePlan {
    key: CacheKey,
    policy: CachePolicy,
    endpoint: CacheEndpoint,
}

/// Outcome of the lookup.
pub(super) enum Lookup {
    /// Not cached (no policy, policy off, not admitted, caller's no-store).
    Bypass,
    /// A fresh entry.
    Hit(Arc<CachedAnswer>, CachePolicy),
    /// Go upstream, then store the answer if it is clean.
    Miss(CachePlan),
}

/// What identifies the request besides its body.
pub(super) struct CacheRequest<'a> {
    pub endpoint: CacheEndpoint,
    /// Model id of the resolved route (policy lookup).
    pub model_id: &'a str,
    /// Resolved public model (route name; aliases share it).
    pub model: &'a str,
    /// Anything else that changes the answer (wildcard suffix,
    /// `anthropic-beta`).
    pub extra: &'a str,
    pub body: &'a Map<String, Value>,
}

impl Gateway {
    pub(super) fn cache_lookup(
        &self,
        session: &Session,
        ctx: &mut CallContext,
        req: CacheRequest<'_>,
    ) -> Lookup {
        let Some(cache) = &self.cache else {
            return Lookup::Bypass;
        };
        let (Some(config), Some(key)) = (&ctx.config, &ctx.key) else {
            return Lookup::Bypass;
        };
        let policy = config
            .cache
            .effective(&key.tenant_id, req.model_id, &key.id)
            // Embeddings have no sampling: always deterministic.
            .filter(|p| {
                p.enabled && (req.endpoint == CacheEndpoint::Embeddings || p.admits(req.body))
            });
        let directive = directive(&session.req_header().headers);
        let (Some(policy), false) = (policy, directive == CacheDirective::NoStore) else {
            ctx.cache = Some(CacheStatus::Bypass);
            cache.record(CacheStatus::Bypass);
            return Lookup::Bypass;
        };
        let cache_key = cache_key(&key.tenant_id, req.endpoint, req.model, req.extra, req.body);
        if directive != CacheDirective::Refresh {
            if let Some(hit) = cache.get(&cache_key) {
                return Lookup::Hit(hit, policy);
            }
        }
        ctx.cache = Some(CacheStatus::Miss);
        cache.record(CacheStatus::Miss);
        Lookup::Miss(CachePlan {
            key: cache_key,
            policy,
            endpoint: req.endpoint,
        })
    }

    /// The cache stage of a routed endpoint: a hit is answered here
    /// (`None`: the call is done); otherwise the plan for storing the answer
    /// (`Some(None)` when it will not be stored).
    pub(super) async fn cache_stage(
        &self,
        session: &mut Session,
        ctx: &mut CallContext,
        route: &crate::routing::ModelRoute,
        req: CacheRequest<'_>,
    ) -> Result<Option<Option<CachePlan>>, Failure> {
        let endpoint = req.endpoint;
        match self.cache_lookup(session, ctx, req) {
            Lookup::Hit(hit, policy) => {
                if let Some(primary) = route.primary() {
                    if self
                        .serve_hit(session, ctx, &hit, &policy, endpoint, primary)
                        .await?
                    {
                        return Ok(None);
                    }
                }
                Ok(Some(None))
            }
            Lookup::Miss(plan) => Ok(Some(Some(plan))),
            Lookup::Bypass => Ok(Some(None)),
        }
    }

    /// Answers from a cached entry: the stored body, or for a streaming
    /// caller the replayed stream. False (nothing written) when the entry
    /// cannot be replayed in the form asked for; the call then goes
    /// upstream.
    pub(super) async fn serve_hit(
        &self,
        session: &mut Session,
        ctx: &mut CallContext,
        hit: &CachedAnswer,
        policy: &CachePolicy,
        endpoint: CacheEndpoint,
        route: &Arc<Route>,
    ) -> Result<bool, Failure> {
        let replayed = if ctx.stream {
            let stream = match endpoint {
                CacheEndpoint::ChatCompletions => {
                    replay::openai_chat_stream(&hit.body, ctx.include_usage)
                }
                CacheEndpoint::Messages => replay::anthropic_message_stream(&hit.body),
                CacheEndpoint::Embeddings => None,
            };
            match stream {
                Some(s) => Some(s),
                None => return Ok(false),
            }
        } else {
            None
        };
        ctx.cache = Some(CacheStatus::Hit);
        ctx.usage = hit.usage;
        ctx.cache_hit_cost_bps = Some(policy.hit_cost_bps);
        if let Some(cache) = &self.cache {
            cache.record(CacheStatus::Hit);
            cache.record_saved_tokens(hit.usage.map_or(0, |u| u.total_tokens()));
        }
        match replayed {
            None => response::write_json(session, ctx, 200, hit.body.clone()).await?,
            Some(stream) => {
                let head = response::head(200, ctx, response::CONTENT_TYPE_SSE, None)?;
                ctx.status = 200;
                session.write_response_header(head, false).await?;
                session.write_response_body(Some(stream), true).await?;
            }
        }
        // Metered against the route (after the headers: no provider was
        // contacted, so none is named).
        ctx.route = Some(route.clone());
        Ok(true)
    }

    /// Stores a complete answer if it is clean.
    pub(super) fn cache_complete(
        &self,
        plan: Option<CachePlan>,
        body: &Bytes,
        usage: Option<Usage>,
    ) {
        let (Some(cache), Some(plan)) = (&self.cache, plan) else {
            return;
        };
        // Size first: an answer too large to store is not parsed at all.
        if body.len() as u64 > plan.policy.max_entry_bytes {
            cache.record_too_large();
            return;
        }
        if is_clean_answer(plan.endpoint, body) {
            cache.insert(plan.key, body.clone(), usage, &plan.policy);
        }
    }

    /// Stores a routed call's answer on a miss: a complete body at once, a
    /// stream once it ends cleanly.
    pub(super) fn fill_cache(&self, plan: Option<CachePlan>, answer: Answer) -> Answer {
        let Some(plan) = plan else {
            return answer;
        };
        match answer.upstream {
            UpstreamResponse::Complete { body, usage } => {
                self.cache_complete(Some(plan), &body, usage);
                Answer {
                    upstream: UpstreamResponse::Complete { body, usage },
                    ..answer
                }
            }
            UpstreamResponse::Stream(s) => {
                let s = self.cache_stream(Some(plan), s, answer.first_chunk.as_ref());
                Answer {
                    upstream: UpstreamResponse::Stream(s),
                    ..answer
                }
            }
        }
    }

    /// Wraps a stream so its answer is stored once it ends cleanly.
    pub(super) fn cache_stream(
        &self,
        plan: Option<CachePlan>,
        stream: ByteStream,
        first_chunk: Option<&Bytes>,
    ) -> ByteStream {
        let (Some(cache), Some(plan)) = (&self.cache, plan) else {
            return stream;
        };
        let assembler: Box<dyn StreamAssembler> = match plan.endpoint {
            CacheEndpoint::ChatCompletions => Box::<OpenAiAssembler>::default(),
            CacheEndpoint::Messages => Box::<AnthropicAssembler>::default(),
            CacheEndpoint::Embeddings => return stream,
        };
        FillingStream::wrap(
            stream,
            first_chunk,
            assembler,
            CacheFill {
                cache: cache.clone(),
                key: plan.key,
                policy: plan.policy,
            },
        )
    }
}

/// The fields of an answer that decide whether it may be stored; the rest
/// is skipped without being built (this runs on every cacheable miss).
#[derive(serde::Deserialize)]
struct AnswerProbe {
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    choices: Option<Vec<ChoiceProbe>>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    data: Option<Vec<serde::de::IgnoredAny>>,
}

#[derive(serde::Deserialize)]
struct ChoiceProbe {
    #[serde(default)]
    finish_reason: Option<String>,
}

/// A complete answer worth serving again: every chat choice finished (not
/// by a content filter), an Anthropic message with a stop reason other than
/// a refusal, an embeddings list.
pub(crate) fn is_clean_answer(endpoint: CacheEndpoint, body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<AnswerProbe>(body) else {
        return false;
    };
    if v.error.is_some() {
        return false;
    }
    match endpoint {
        CacheEndpoint::ChatCompletions => v.choices.is_some_and(|choices| {
            !choices.is_empty()
                && choices
                    .iter()
                    .all(|c| matches!(c.finish_reason.as_deref(), Some(f) if f != "content_filter"))
        }),
        CacheEndpoint::Messages => {
            matches!(v.stop_reason.as_deref(), Some(r) if r != "refusal")
        }
        CacheEndpoint::Embeddings => v.data.is_some(),
    }
}

/// True when the call was answered by the route's fallback model rather
/// than by `route` itself.
pub(super) fn answered_by_fallback(
    ctx: &super::CallContext,
    route: &crate::routing::ModelRoute,
) -> bool {
    ctx.route
        .as_ref()
        .is_some_and(|r| r.model_id != route.model_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_complete_answers_are_cacheable() {
        let chat = |finish: &str| {
            format!(
                r#"{{"choices":[{{"index":0,"message":{{"content":"x"}},"finish_reason":{finish}}}]}}"#
            )
        };
        let ep = CacheEndpoint::ChatCompletions;
        assert!(is_clean_answer(ep, chat("\"stop\"").as_bytes()));
        assert!(is_clean_answer(ep, chat("\"length\"").as_bytes()));
        assert!(!is_clean_answer(ep, chat("\"content_filter\"").as_bytes()));
        assert!(!is_clean_answer(ep, chat("null").as_bytes()));
        assert!(!is_clean_answer(ep, br#"{"choices":[]}"#));
        assert!(!is_clean_answer(ep, br#"{"error":{"message":"x"}}"#));
        assert!(!is_clean_answer(ep, b"not json"));
        let ep = CacheEndpoint::Messages;
        assert!(is_clean_answer(
            ep,
            br#"{"stop_reason":"end_turn","content":[]}"#
        ));
        assert!(!is_clean_answer(
            ep,
            br#"{"stop_reason":"refusal","content":[]}"#
        ));
        assert!(!is_clean_answer(
            ep,
            br#"{"type":"error","error":{"type":"x"}}"#
        ));
        assert!(is_clean_answer(
            CacheEndpoint::Embeddings,
            br#"{"data":[]}"#
        ));
    }
}
