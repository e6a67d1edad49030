//! Mock model providers that speak the real wire formats: OpenAI chat,
//! embeddings and Responses ([`openai`], [`responses`]; Azure's deployment
//! routes too), Anthropic Messages ([`anthropic`]) and Gemini
//! ([`gemini`]), all on one [`MockServer`].
//!
//! - [`openai`]: deterministic chat completions and their SSE stream, shared by
//!   the data plane's built-in `mock` provider kind (no network) and by
//!   [`MockServer`];
//! - [`MockServer`]: a real OpenAI-compatible HTTP server on a local port for
//!   end-to-end tests, the quickstart and benchmarks. It records what it was
//!   sent, and model names select failure behaviours (see [`server`]).

pub mod anthropic;
mod anthropic_routes;
pub mod fault;
pub mod gemini;
mod gemini_routes;
pub mod openai;
pub mod responses;
pub mod server;

pub use fault::Fault;
pub use server::{MockOptions, MockServer, RecordedRequest};
