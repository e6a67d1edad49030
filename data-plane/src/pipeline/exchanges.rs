//! How each routed endpoint builds and sends one upstream attempt: the
//! [`Exchange`]s the failover loop drives. Every exchange answers in the
//! caller's protocol — a target of another protocol is translated here
//! (request, complete answer and stream) — so the relay after it is the
//! same for every target of a route.

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::{Map, Value};

use super::failover::Exchange;
use super::Gateway;
use crate::config::{ProviderKind, Route};
use crate::http::errors::GatewayError;
use crate::providers::anthropic::inbound_stream::OpenAiToAnthropic;
use crate::providers::anthropic::{inbound, usage_from_message, CallerHeaders};
use crate::providers::embeddings::text_inputs;
use crate::providers::event_stream::translate;
use crate::providers::upstream::RawAnswer;
use crate::providers::{CallOptions, UpstreamResponse};
use crate::responses::{request, stream::ChatToResponses, to_response, usage_from};

/// The caller's body for one target: its own copy, or the body itself
/// when no other target can follow.
fn body_for(body: &mut Map<String, Value>, last: bool) -> Map<String, Value> {
    if last {
        std::mem::take(body)
    } else {
        body.clone()
    }
}

fn not_json() -> GatewayError {
    GatewayError::Upstream("the provider's answer is not JSON".into())
}

fn passed_through(
    answer: RawAnswer,
    usage_of: fn(&Bytes) -> Option<tollgate_core::usage::Usage>,
) -> UpstreamResponse {
    match answer {
        RawAnswer::Complete(body) => UpstreamResponse::Complete {
            usage: usage_of(&body),
            body,
        },
        RawAnswer::Stream(s) => UpstreamResponse::Stream(s),
    }
}

/// `POST /v1/chat/completions`: the provider's adapter shapes the body.
pub(super) struct ChatExchange {
    pub body: Map<String, Value>,
    pub stream: bool,
}

impl Exchange for ChatExchange {
    type Prepared = Map<String, Value>;

    fn prepare(
        &mut self,
        gateway: &Gateway,
        route: &Route,
        last: bool,
    ) -> Result<Self::Prepared, GatewayError> {
        let mut body = body_for(&mut self.body, last);
        gateway
            .providers
            .adapter(route.provider.kind)
            .prepare_body(route, &mut body, self.stream);
        Ok(body)
    }

    fn send<'a>(
        &'a self,
        gateway: &'a Gateway,
        route: &'a Route,
        prepared: &'a Self::Prepared,
        options: CallOptions,
    ) -> BoxFuture<'a, Result<UpstreamResponse, GatewayError>> {
        gateway
            .providers
            .adapter(route.provider.kind)
            .send(&route.provider, prepared, options)
    }
}

/// A request sent as is in the caller's protocol, or translated to chat.
pub(super) enum Prepared {
    Native(Map<String, Value>),
    Chat(Map<String, Value>),
}

/// `POST /v1/messages`: passed through to Anthropic, translated to and
/// from chat for every other provider.
pub(super) struct MessagesExchange {
    pub body: Map<String, Value>,
    /// The public model name (the translated answer names it).
    pub model: String,
    pub stream: bool,
    pub caller: CallerHeaders,
    /// The body translated to chat, once, when a target needs it.
    pub chat: Option<Map<String, Value>>,
}

impl MessagesExchange {
    pub fn new(
        body: Map<String, Value>,
        model: String,
        stream: bool,
        caller: CallerHeaders,
    ) -> Self {
        MessagesExchange {
            body,
            model,
            stream,
            caller,
            chat: None,
        }
    }
}

type Body = Map<String, Value>;

/// The chat translation of a body, computed on first use.
fn chat_of(
    cache: &mut Option<Body>,
    body: &Body,
    to_chat: fn(&Body) -> Result<Body, GatewayError>,
) -> Result<Body, GatewayError> {
    if let Some(chat) = cache {
        return Ok(chat.clone());
    }
    let chat = to_chat(body)?;
    *cache = Some(chat.clone());
    Ok(chat)
}

impl Exchange for MessagesExchange {
    type Prepared = Prepared;

    fn prepare(
        &mut self,
        gateway: &Gateway,
        route: &Route,
        _last: bool,
    ) -> Result<Prepared, GatewayError> {
        if route.provider.kind == ProviderKind::Anthropic {
            let mut body = self.body.clone();
            body.insert("model".into(), Value::String(route.upstream_model.clone()));
            return Ok(Prepared::Native(body));
        }
        let mut chat = chat_of(&mut self.chat, &self.body, inbound::to_chat)?;
        gateway
            .providers
            .adapter(route.provider.kind)
            .prepare_body(route, &mut chat, self.stream);
        Ok(Prepared::Chat(chat))
    }

    fn send<'a>(
        &'a self,
        gateway: &'a Gateway,
        route: &'a Route,
        prepared: &'a Prepared,
        options: CallOptions,
    ) -> BoxFuture<'a, Result<UpstreamResponse, GatewayError>> {
        async move {
            match prepared {
                Prepared::Native(body) => {
                    let answer = gateway
                        .providers
                        .anthropic
                        .send_native(&route.provider, body, options, &self.caller)
                        .await?;
                    Ok(passed_through(answer, |b| usage_from_message(b)))
                }
                Prepared::Chat(chat) => {
                    let adapter = gateway.providers.adapter(route.provider.kind);
                    match adapter.send(&route.provider, chat, options).await? {
                        UpstreamResponse::Complete { body, usage } => {
                            let completion: Value =
                                serde_json::from_slice(&body).map_err(|_| not_json())?;
                            let message = inbound::to_message(
                                &completion,
                                &usage.unwrap_or_default(),
                                &self.model,
                            );
                            Ok(UpstreamResponse::Complete {
                                body: Bytes::from(message.to_string()),
                                usage,
                            })
                        }
                        UpstreamResponse::Stream(s) => Ok(UpstreamResponse::Stream(translate(
                            s,
                            Box::new(OpenAiToAnthropic::new(&self.model)),
                        ))),
                    }
                }
            }
        }
        .boxed()
    }
}

/// `POST /v1/responses`: passed through to OpenAI and Azure, translated
/// through chat for every other provider.
pub(super) struct ResponsesExchange {
    pub body: Map<String, Value>,
    pub model: String,
    pub stream: bool,
    /// `created_at` of a translated answer (seconds).
    pub created: i64,
    /// The body translated to chat, once, when a target needs it.
    pub chat: Option<Map<String, Value>>,
}

impl ResponsesExchange {
    pub fn new(body: Map<String, Value>, model: String, stream: bool) -> Self {
        ResponsesExchange {
            body,
            model,
            stream,
            created: tollgate_core::time::now_ms() / 1000,
            chat: None,
        }
    }
}

fn speaks_responses(kind: ProviderKind) -> bool {
    matches!(kind, ProviderKind::OpenAi | ProviderKind::Azure)
}

fn responses_usage(body: &Bytes) -> Option<tollgate_core::usage::Usage> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| usage_from(&v))
}

impl Exchange for ResponsesExchange {
    type Prepared = Prepared;

    fn prepare(
        &mut self,
        gateway: &Gateway,
        route: &Route,
        _last: bool,
    ) -> Result<Prepared, GatewayError> {
        if speaks_responses(route.provider.kind) {
            let mut body = self.body.clone();
            body.insert("model".into(), Value::String(route.upstream_model.clone()));
            return Ok(Prepared::Native(body));
        }
        let mut chat = chat_of(&mut self.chat, &self.body, request::to_chat)?;
        gateway
            .providers
            .adapter(route.provider.kind)
            .prepare_body(route, &mut chat, self.stream);
        Ok(Prepared::Chat(chat))
    }

    fn send<'a>(
        &'a self,
        gateway: &'a Gateway,
        route: &'a Route,
        prepared: &'a Prepared,
        options: CallOptions,
    ) -> BoxFuture<'a, Result<UpstreamResponse, GatewayError>> {
        async move {
            match prepared {
                Prepared::Native(body) => {
                    let answer = gateway
                        .providers
                        .responses_passthrough(&route.provider, body, options)
                        .await
                        .ok_or(GatewayError::Internal)??;
                    Ok(passed_through(answer, responses_usage))
                }
                Prepared::Chat(chat) => {
                    let adapter = gateway.providers.adapter(route.provider.kind);
                    match adapter.send(&route.provider, chat, options).await? {
                        UpstreamResponse::Complete { body, usage } => {
                            let completion: Value =
                                serde_json::from_slice(&body).map_err(|_| not_json())?;
                            let r = to_response(
                                &completion,
                                &usage.unwrap_or_default(),
                                &self.body,
                                &self.model,
                                self.created,
                            );
                            Ok(UpstreamResponse::Complete {
                                body: Bytes::from(r.to_string()),
                                usage,
                            })
                        }
                        UpstreamResponse::Stream(s) => Ok(UpstreamResponse::Stream(translate(
                            s,
                            Box::new(ChatToResponses::new(&self.body, &self.model, self.created)),
                        ))),
                    }
                }
            }
        }
        .boxed()
    }
}

/// `POST /v1/embeddings`: OpenAI and Azure pass through, Gemini is
/// translated, the built-in mock answers in-process.
pub(super) struct EmbeddingsExchange {
    pub body: Map<String, Value>,
}

impl Exchange for EmbeddingsExchange {
    type Prepared = Map<String, Value>;

    fn prepare(
        &mut self,
        _gateway: &Gateway,
        route: &Route,
        last: bool,
    ) -> Result<Self::Prepared, GatewayError> {
        if !matches!(
            route.provider.kind,
            ProviderKind::OpenAi | ProviderKind::Azure
        ) {
            // Token-array inputs can only pass through.
            text_inputs(&self.body)?;
        }
        let mut body = body_for(&mut self.body, last);
        body.insert("model".into(), Value::String(route.upstream_model.clone()));
        Ok(body)
    }

    fn send<'a>(
        &'a self,
        gateway: &'a Gateway,
        route: &'a Route,
        prepared: &'a Self::Prepared,
        options: CallOptions,
    ) -> BoxFuture<'a, Result<UpstreamResponse, GatewayError>> {
        async move {
            let (body, usage) = gateway
                .providers
                .adapter(route.provider.kind)
                .embed(&route.provider, prepared, options.timeout)
                .await?;
            Ok(UpstreamResponse::Complete { body, usage })
        }
        .boxed()
    }
}
