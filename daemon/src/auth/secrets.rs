//! Secrets at rest: argon2id hashes for passwords and API-key secrets, and the `hth_<id>_<secret>` key format.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

/// Key id: public, shown in listings and used to find the row. Secret: ~190 bits, never stored in clear.
const ID_LEN: usize = 12;
const SECRET_LEN: usize = 32;
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A random string over [a-z0-9] (rejection sampling: no modulo bias).
pub fn random_token(len: usize) -> Result<String, SecretError> {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::getrandom(&mut buf)
            .map_err(|e| SecretError(format!("random number generator: {e}")))?;
        for &b in &buf {
            // 252 = 7 * 36: values above it would bias the alphabet.
            if b < 252 && out.len() < len {
                out.push(ALPHABET[(b % 36) as usize] as char);
            }
        }
    }
    Ok(out)
}

pub fn new_key() -> Result<(String, String), SecretError> {
    Ok((random_token(ID_LEN)?, random_token(SECRET_LEN)?))
}

pub fn format_key(id: &str, secret: &str) -> String {
    format!("hth_{id}_{secret}")
}

/// Splits `hth_<id>_<secret>`; None when the text cannot be one of our keys.
pub fn parse_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("hth_")?;
    let (id, secret) = rest.split_once('_')?;
    let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| ALPHABET.contains(&b));
    (ok(id, ID_LEN) && ok(secret, SECRET_LEN)).then_some((id, secret))
}

/// Byte-wise equality whose time does not depend on where the first difference is (tokens, CSRF values).
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

#[derive(Debug, thiserror::Error)]
#[error("secret generation or hashing failed: {0}")]
pub struct SecretError(String);

/// argon2id with the crate's defaults (m = 19 MiB, t = 2, p = 1: OWASP's recommendation).
pub fn hash_secret(secret: &str) -> Result<String, SecretError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| SecretError(e.to_string()))
}

/// Constant-time verification against a stored PHC string; a malformed hash never verifies.
pub fn verify_secret(secret: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(secret.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_reject_lookalikes() {
        let (id, secret) = new_key().unwrap();
        let key = format_key(&id, &secret);
        assert_eq!(parse_key(&key), Some((id.as_str(), secret.as_str())));
        assert_eq!(parse_key("sk-abc"), None);
        assert_eq!(parse_key(&key[..key.len() - 1]), None);
        assert_eq!(parse_key(&key.to_uppercase()), None);
        assert_ne!(new_key().unwrap(), new_key().unwrap());
    }

    #[test]
    fn hashes_verify_only_their_secret() {
        let h = hash_secret("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_secret("correct horse", &h));
        assert!(!verify_secret("correct horsf", &h));
        assert!(!verify_secret("correct horse", "not-a-hash"));
    }
}
