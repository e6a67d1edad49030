//! Envelope encryption of provider API keys.
//!
//! Each secret gets its own random 256-bit data key. The secret is sealed with
//! AES-256-GCM under the data key, and the data key is wrapped by a
//! [`KeyEncryptionKey`] (the local master key today, a KMS later). The stored
//! form is one text blob:
//!
//! ```text
//! tgenc1:<kek id>:<base64( u16 BE len(wrapped) || wrapped data key || nonce(12) || ciphertext+tag )>
//! ```
//!
//! The object id is bound as associated data, so a blob copied onto another
//! row does not decrypt. The KEK id lets a wrong master key be reported as
//! such instead of as corruption.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::secret::SecretString;

const BLOB_VERSION: &str = "tgenc1";
const NONCE_LEN: usize = 12;
const KEY_LEN: usize = 32;
const WRAP_AAD: &[u8] = b"tollgate/kek-wrap/v1";

/// Errors never carry key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("invalid master key: {0}")]
    InvalidKey(&'static str),
    #[error("malformed ciphertext: {0}")]
    Malformed(&'static str),
    #[error("secret was encrypted under key {sealed_with}, but the configured key is {configured}; start with the master key used when it was stored")]
    WrongKey {
        sealed_with: String,
        configured: String,
    },
    #[error("decryption failed: ciphertext tampered with or wrong key")]
    Authentication,
    #[error("encryption failed")]
    Encrypt,
}

/// Wraps and unwraps data keys. Shaped like a KMS (async, opaque wrapped
/// bytes, a key id) so a cloud KMS can replace the local master key.
#[async_trait]
pub trait KeyEncryptionKey: Send + Sync {
    /// Stable identifier stored next to every wrapped key (no ':' inside).
    fn key_id(&self) -> &str;
    async fn wrap(&self, data_key: &[u8]) -> Result<Vec<u8>, CryptoError>;
    async fn unwrap(&self, wrapped: &[u8]) -> Result<Vec<u8>, CryptoError>;
}

/// The 32-byte local master key.
#[derive(Clone)]
pub struct MasterKey([u8; KEY_LEN]);

impl MasterKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|_| CryptoError::InvalidKey("not base64"))?;
        let arr: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::InvalidKey("not 32 bytes"))?;
        Ok(Self(arr))
    }

    pub fn to_base64(&self) -> SecretString {
        SecretString::new(B64.encode(self.0))
    }

    /// First 8 hex chars of SHA-256 of the key: identifies it without
    /// revealing it.
    pub fn fingerprint(&self) -> String {
        let mut h = hex::encode(Sha256::digest(self.0));
        h.truncate(8);
        h
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey(fingerprint={})", self.fingerprint())
    }
}

/// [`KeyEncryptionKey`] backed by the local master key.
pub struct LocalKek {
    cipher: Aes256Gcm,
    id: String,
}

impl LocalKek {
    pub fn new(master: &MasterKey) -> Result<Self, CryptoError> {
        let cipher =
            Aes256Gcm::new_from_slice(&master.0).map_err(|_| CryptoError::InvalidKey("length"))?;
        Ok(Self {
            cipher,
            id: format!("local-{}", master.fingerprint()),
        })
    }
}

impl fmt::Debug for LocalKek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKek").field("id", &self.id).finish()
    }
}

#[async_trait]
impl KeyEncryptionKey for LocalKek {
    fn key_id(&self) -> &str {
        &self.id
    }

    async fn wrap(&self, data_key: &[u8]) -> Result<Vec<u8>, CryptoError> {
        seal_raw(&self.cipher, data_key, WRAP_AAD)
    }

    async fn unwrap(&self, wrapped: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open_raw(&self.cipher, wrapped, WRAP_AAD)
    }
}

/// `nonce || ciphertext+tag` under a random nonce.
fn seal_raw(cipher: &Aes256Gcm, msg: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let ct = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg, aad })
        .map_err(|_| CryptoError::Encrypt)?;
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

fn open_raw(cipher: &Aes256Gcm, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < NONCE_LEN + 16 {
        return Err(CryptoError::Malformed("too short"));
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .map_err(|_| CryptoError::Authentication)
}

/// Encrypts `plaintext` for the object `context` (its id).
pub async fn seal(
    kek: &dyn KeyEncryptionKey,
    plaintext: &str,
    context: &str,
) -> Result<String, CryptoError> {
    let mut data_key = [0u8; KEY_LEN];
    OsRng.fill_bytes(&mut data_key);
    let cipher =
        Aes256Gcm::new_from_slice(&data_key).map_err(|_| CryptoError::InvalidKey("length"))?;
    let body = seal_raw(&cipher, plaintext.as_bytes(), context.as_bytes())?;
    let wrapped = kek.wrap(&data_key).await?;
    data_key.fill(0);
    let wrapped_len =
        u16::try_from(wrapped.len()).map_err(|_| CryptoError::Malformed("wrapped key too long"))?;
    let mut raw = Vec::with_capacity(2 + wrapped.len() + body.len());
    raw.extend_from_slice(&wrapped_len.to_be_bytes());
    raw.extend_from_slice(&wrapped);
    raw.extend_from_slice(&body);
    Ok(format!(
        "{BLOB_VERSION}:{}:{}",
        kek.key_id(),
        B64.encode(raw)
    ))
}

/// Decrypts a blob made by [`seal`] for the same `context`.
pub async fn open(
    kek: &dyn KeyEncryptionKey,
    blob: &str,
    context: &str,
) -> Result<SecretString, CryptoError> {
    let mut parts = blob.splitn(3, ':');
    let (Some(version), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(CryptoError::Malformed("not a tgenc blob"));
    };
    if version != BLOB_VERSION {
        return Err(CryptoError::Malformed("unknown version"));
    }
    if key_id != kek.key_id() {
        return Err(CryptoError::WrongKey {
            sealed_with: key_id.to_owned(),
            configured: kek.key_id().to_owned(),
        });
    }
    let raw = B64
        .decode(body)
        .map_err(|_| CryptoError::Malformed("not base64"))?;
    let (len, rest) = raw
        .split_first_chunk::<2>()
        .ok_or(CryptoError::Malformed("too short"))?;
    let len = usize::from(u16::from_be_bytes(*len));
    if rest.len() < len {
        return Err(CryptoError::Malformed("too short"));
    }
    let (wrapped, sealed) = rest.split_at(len);
    let mut data_key = kek.unwrap(wrapped).await?;
    let cipher = Aes256Gcm::new_from_slice(&data_key);
    data_key.fill(0);
    let cipher = cipher.map_err(|_| CryptoError::Malformed("data key length"))?;
    let plain = open_raw(&cipher, sealed, context.as_bytes())?;
    String::from_utf8(plain)
        .map(SecretString::new)
        .map_err(|_| CryptoError::Malformed("plaintext not UTF-8"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const KEY: &str = "sk-live-0123456789abcdefTOPSECRET";

    fn kek() -> LocalKek {
        LocalKek::new(&MasterKey::from_bytes([7u8; 32])).unwrap()
    }

    #[tokio::test]
    async fn round_trip() {
        let k = kek();
        let blob = seal(&k, KEY, "pv_1").await.unwrap();
        assert!(blob.starts_with(&format!("tgenc1:{}:", k.key_id())));
        assert_eq!(open(&k, &blob, "pv_1").await.unwrap().expose(), KEY);
        // Fresh data key and nonces each time.
        assert_ne!(blob, seal(&k, KEY, "pv_1").await.unwrap());
    }

    #[tokio::test]
    async fn ciphertext_never_contains_plaintext() {
        let k = kek();
        let blob = seal(&k, KEY, "pv_1").await.unwrap();
        assert!(!blob.contains(KEY));
        assert!(!blob.contains("TOPSECRET"));
        let raw = B64.decode(blob.rsplit(':').next().unwrap()).unwrap();
        assert!(!raw.windows(9).any(|w| w == b"TOPSECRET"));
    }

    #[tokio::test]
    async fn tampering_is_detected() {
        let k = kek();
        let blob = seal(&k, KEY, "pv_1").await.unwrap();
        let (head, body) = blob.rsplit_once(':').unwrap();
        let mut raw = B64.decode(body).unwrap();
        for idx in [5, raw.len() - 1, raw.len() / 2] {
            let mut t = raw.clone();
            t[idx] ^= 0x01;
            let tampered = format!("{head}:{}", B64.encode(&t));
            assert!(matches!(
                open(&k, &tampered, "pv_1").await,
                Err(CryptoError::Authentication)
            ));
        }
        raw.truncate(10);
        let short = format!("{head}:{}", B64.encode(&raw));
        assert!(open(&k, &short, "pv_1").await.is_err());
        // Moved to another object: associated data does not match.
        assert!(matches!(
            open(&k, &blob, "pv_2").await,
            Err(CryptoError::Authentication)
        ));
    }

    #[tokio::test]
    async fn wrong_master_key_fails() {
        let blob = seal(&kek(), KEY, "pv_1").await.unwrap();
        let other = LocalKek::new(&MasterKey::from_bytes([8u8; 32])).unwrap();
        let err = open(&other, &blob, "pv_1").await.unwrap_err();
        assert!(matches!(err, CryptoError::WrongKey { .. }));
        // Even with a forged key id, authentication fails.
        let forged = blob.replacen(kek().key_id(), other.key_id(), 1);
        assert!(matches!(
            open(&other, &forged, "pv_1").await,
            Err(CryptoError::Authentication)
        ));
    }

    #[test]
    fn debug_redacts_master_key() {
        let m = MasterKey::from_bytes([9u8; 32]);
        let b64 = m.to_base64();
        let s = format!("{m:?} {:?} {b64:?}", LocalKek::new(&m).unwrap());
        assert!(!s.contains(b64.expose()));
        assert!(s.contains(&m.fingerprint()));
        assert_eq!(
            MasterKey::from_base64(b64.expose()).unwrap().fingerprint(),
            m.fingerprint()
        );
        assert!(MasterKey::from_base64("AAAA").is_err());
    }
}
