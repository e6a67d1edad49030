//! Normalised token usage of one call, the same for every provider.

use serde::{Deserialize, Serialize};

/// Token counts of one call. `prompt_tokens` includes cached input and
/// `completion_tokens` includes reasoning, as in OpenAI's usage object; the
/// detail buckets say how much of each is which.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
}

impl Usage {
    pub fn total_tokens(&self) -> i64 {
        self.prompt_tokens + self.completion_tokens
    }
}
