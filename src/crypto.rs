//! Secrets at rest: the instance secret key (`GATEHOUSE_SECRET_KEY`, or generated once into the
//! data dir) and authenticated encryption of stored secrets with XChaCha20-Poly1305.

use std::io::Write;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::config::Settings;

const KEY_FILE: &str = "secret.key";
/// Prefix of every encrypted value, so a format change can be recognised later.
const SEALED_PREFIX: &str = "v1:";

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("secret key: {0}")]
    Key(String),
    #[error("cannot decrypt a stored secret: wrong GATEHOUSE_SECRET_KEY or corrupted value")]
    Decrypt,
}

/// The instance key. Cloning is cheap; the key bytes never appear in Debug output.
#[derive(Clone)]
pub struct SecretKey {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(********)")
    }
}

/// Where the key came from, for the start-up note.
pub enum KeySource {
    Configured,
    File,
    Generated(std::path::PathBuf),
}

impl SecretKey {
    pub fn from_base64(text: &str) -> Result<SecretKey, CryptoError> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|_| CryptoError::Key("not valid base64".into()))?;
        if bytes.len() != 32 {
            return Err(CryptoError::Key(format!(
                "must be 32 bytes of base64 (got {} bytes); generate one with `openssl rand -base64 32`",
                bytes.len()
            )));
        }
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes)
            .map_err(|_| CryptoError::Key("invalid key length".into()))?;
        Ok(SecretKey { cipher })
    }

    /// The configured key, else `<data_dir>/secret.key`, else a new one written there (0600).
    pub fn load_or_generate(settings: &Settings) -> Result<(SecretKey, KeySource), CryptoError> {
        if let Some(configured) = &settings.secret_key {
            return Ok((
                SecretKey::from_base64(configured.expose_secret())?,
                KeySource::Configured,
            ));
        }
        let path = settings.data_dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok((SecretKey::from_base64(&text)?, KeySource::File)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut bytes);
                let text = B64.encode(bytes);
                write_private_file(&path, &text).map_err(|e| {
                    CryptoError::Key(format!("cannot write {}: {e}", path.display()))
                })?;
                Ok((SecretKey::from_base64(&text)?, KeySource::Generated(path)))
            }
            Err(e) => Err(CryptoError::Key(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// Encrypts `plaintext`; `context` (e.g. the table and row id) is bound as associated data
    /// so a sealed value copied to another row does not decrypt.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> String {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plaintext,
            aad: context.as_bytes(),
        };
        // Encryption with a valid key and in-memory buffers cannot fail.
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{}", B64.encode(out))
    }

    pub fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>, CryptoError> {
        let body = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or(CryptoError::Decrypt)?;
        let bytes = B64.decode(body).map_err(|_| CryptoError::Decrypt)?;
        if bytes.len() < 24 + 16 {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Decrypt)
    }

    pub fn open_string(&self, sealed: &str, context: &str) -> Result<SecretString, CryptoError> {
        let bytes = self.open(sealed, context)?;
        String::from_utf8(bytes)
            .map(SecretString::from)
            .map_err(|_| CryptoError::Decrypt)
    }
}

fn write_private_file(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// SHA-256 as lower-case hex: how tokens and session ids are stored (they are random, so a
/// fast hash is enough).
pub fn sha256_hex(input: &str) -> String {
    hex::encode(Sha256::digest(input.as_bytes()))
}

/// `n` random bytes as URL-safe base64 without padding.
pub fn random_token(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretKey {
        SecretKey::from_base64(&B64.encode([7u8; 32])).unwrap()
    }

    #[test]
    fn seal_round_trips_and_binds_context() {
        let k = key();
        let sealed = k.seal(b"client-secret", "oidc:1");
        assert!(!sealed.contains("client-secret"));
        assert_eq!(k.open(&sealed, "oidc:1").unwrap(), b"client-secret");
        assert!(k.open(&sealed, "oidc:2").is_err());
        let other = SecretKey::from_base64(&B64.encode([8u8; 32])).unwrap();
        assert!(other.open(&sealed, "oidc:1").is_err());
    }

    #[test]
    fn short_keys_are_refused_with_a_hint() {
        let err = SecretKey::from_base64(&B64.encode([1u8; 16])).unwrap_err();
        assert!(err.to_string().contains("32 bytes"));
    }
}
