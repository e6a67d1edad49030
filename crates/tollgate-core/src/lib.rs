//! Domain types and rules shared by both planes: identifiers, caller-key
//! format and hashing, normalised usage, money and time.

pub mod budget;
pub mod guardrail;
pub mod ids;
pub mod keys;
pub mod money;
pub mod pricing;
pub mod time;
pub mod usage;
