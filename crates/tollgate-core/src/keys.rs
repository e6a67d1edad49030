//! Caller API keys: generated from the OS CSPRNG, shown once, stored and
//! looked up only by their SHA-256.

use rand::{rngs::OsRng, RngCore};
use sha2::{Digest, Sha256};

/// Every caller key starts with this, so leaked keys are recognisable by
/// secret scanners.
pub const CALLER_KEY_PREFIX: &str = "tg-";

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// 43 base62 characters carry ~256 bits of entropy.
const RANDOM_CHARS: usize = 43;

/// A new caller key: `tg-` followed by 43 random base62 characters.
pub fn generate_caller_key() -> String {
    let mut out = String::with_capacity(CALLER_KEY_PREFIX.len() + RANDOM_CHARS);
    out.push_str(CALLER_KEY_PREFIX);
    let mut buf = [0u8; 1];
    while out.len() < CALLER_KEY_PREFIX.len() + RANDOM_CHARS {
        OsRng.fill_bytes(&mut buf);
        // Rejection sampling keeps the distribution uniform (248 = 4 * 62).
        if buf[0] < 248 {
            out.push(ALPHABET[(buf[0] % 62) as usize] as char);
        }
    }
    out
}

/// Lowercase hex SHA-256 of a caller key: the only form that is stored.
pub fn hash_caller_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The recognisable start of a key, safe to display ("tg-AbCd").
pub fn display_prefix(key: &str) -> String {
    key.chars().take(CALLER_KEY_PREFIX.len() + 4).collect()
}

/// Fingerprint of a secret for display: first 12 hex chars of its SHA-256.
pub fn secret_fingerprint(secret: &str) -> String {
    let mut h = hex::encode(Sha256::digest(secret.as_bytes()));
    h.truncate(12);
    h
}

/// Last 4 characters of a secret for display (empty for short secrets, so a
/// short secret is never shown whole).
pub fn secret_last4(secret: &str) -> String {
    let n = secret.chars().count();
    if n < 12 {
        return String::new();
    }
    secret.chars().skip(n - 4).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_format_and_entropy() {
        let a = generate_caller_key();
        let b = generate_caller_key();
        assert!(a.starts_with("tg-"));
        assert_eq!(a.len(), 46);
        assert!(a[3..].bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            hash_caller_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn display_helpers_never_reveal_short_secrets() {
        assert_eq!(display_prefix("tg-AbCdEfGh"), "tg-AbCd");
        assert_eq!(secret_last4("sk-0123456789abcd"), "abcd");
        assert_eq!(secret_last4("short"), "");
        assert_eq!(secret_fingerprint("abc"), "ba7816bf8f01");
    }
}
