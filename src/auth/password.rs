//! Argon2 hashing of till passwords and OAuth secrets, and the random secrets Perks issues.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use md5::{Digest, Md5};
use rand::Rng;
use rand::distributions::Alphanumeric;

/// The lower-case hex MD5 of a till password: what Basic auth carries on the wire.
pub fn md5_hex(password: &str) -> String {
    hex::encode(Md5::digest(password.as_bytes()))
}

/// Hashes a secret with Argon2id and a random salt (PHC string).
pub fn hash_secret(secret: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Ok(Argon2::default().hash_password(secret.as_bytes(), &salt)?.to_string())
}

/// A till's stored hash: Argon2 over the MD5 hex, since that is all a Basic request reveals.
pub fn hash_till_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    hash_secret(&md5_hex(password))
}

/// Checks `secret` against a PHC hash; a malformed hash never verifies.
pub fn verify_secret(secret: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|parsed| Argon2::default().verify_password(secret.as_bytes(), &parsed).is_ok())
        .unwrap_or(false)
}

/// A random alphanumeric string of `len` characters from the OS generator.
pub fn random_token(len: usize) -> String {
    rand::rngs::OsRng.sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn till_hash_verifies_the_md5_of_the_password_only() {
        let hash = hash_till_password("s3cret").unwrap();
        assert!(verify_secret(&md5_hex("s3cret"), &hash));
        assert!(!verify_secret("s3cret", &hash));
        assert!(!verify_secret(&md5_hex("other"), &hash));
        assert!(!verify_secret("x", "not-a-hash"));
    }

    #[test]
    fn md5_is_lower_case_hex() {
        assert_eq!(md5_hex("password"), "5f4dcc3b5aa765d61d8327deb882cf99");
    }
}
