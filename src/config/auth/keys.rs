//! JWT verification keys: an HMAC secret, a PEM public key, or a JWKS document, parsed by
//! `jsonwebtoken` into one [`KeySet`] looked up by `kid` and algorithm. The `keys:` file is
//! parsed here at load (so `check` refuses an unreadable one), and `jwks_url` answers are
//! parsed by the same code at run time.

use std::fmt;

use jsonwebtoken::jwk::{JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Largest JWKS document accepted (from a file or a URL).
pub const MAX_JWKS_BYTES: usize = 1 << 20;

/// How a JWKS document starts.
const JSON_OBJECT: char = '{';

/// The keys a token may be verified with.
#[derive(Clone)]
pub struct KeySet {
    keys: Vec<Key>,
}

#[derive(Clone)]
struct Key {
    kid: Option<String>,
    alg: Option<Algorithm>,
    key: DecodingKey,
}

impl fmt::Debug for KeySet {
    /// Names the keys by `kid`, never their material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<&str> = self
            .keys
            .iter()
            .map(|k| k.kid.as_deref().unwrap_or("-"))
            .collect();
        write!(f, "KeySet{kids:?}")
    }
}

impl KeySet {
    /// One HMAC secret.
    pub fn secret(secret: &[u8]) -> Result<KeySet, String> {
        let key = DecodingKey::from_secret(secret).map_err(|_| "the secret is empty")?;
        Ok(KeySet::one(key))
    }

    /// The text of a `keys:` file: a JWKS document (`{"keys": [...]}`) or one PEM public key
    /// (RSA, EC or Ed25519).
    pub fn from_file_text(text: &str) -> Result<KeySet, String> {
        if text.trim_start().starts_with(JSON_OBJECT) {
            return KeySet::from_jwks(text.as_bytes());
        }
        let pem = text.as_bytes();
        DecodingKey::from_rsa_pem(pem)
            .or_else(|_| DecodingKey::from_ec_pem(pem))
            .or_else(|_| DecodingKey::from_ed_pem(pem))
            .map(KeySet::one)
            .map_err(|_| "neither a JWKS document nor a PEM public key (RSA, EC, Ed25519)".into())
    }

    /// A JWKS document. Keys marked for encryption (`"use": "enc"`) and of unknown types are
    /// skipped; a document with no usable key is refused.
    pub fn from_jwks(json: &[u8]) -> Result<KeySet, String> {
        if json.len() > MAX_JWKS_BYTES {
            return Err(format!("a JWKS over {MAX_JWKS_BYTES} bytes"));
        }
        let set: JwkSet =
            serde_json::from_slice(json).map_err(|err| format!("not a JWKS document: {err}"))?;
        let keys: Vec<Key> = set
            .keys
            .iter()
            .filter(|jwk| jwk.common.public_key_use != Some(PublicKeyUse::Encryption))
            .filter_map(|jwk| {
                // A key for an algorithm that signs nothing (e.g. RSA-OAEP) is skipped.
                let alg = match jwk.common.key_algorithm {
                    Some(alg) => Some(Algorithm::try_from(alg).ok()?),
                    None => None,
                };
                Some(Key {
                    kid: jwk.common.key_id.clone(),
                    alg,
                    key: DecodingKey::from_jwk(jwk).ok()?,
                })
            })
            .collect();
        if keys.is_empty() {
            return Err("the JWKS has no usable signing key".into());
        }
        Ok(KeySet { keys })
    }

    fn one(key: DecodingKey) -> KeySet {
        KeySet {
            keys: vec![Key {
                kid: None,
                alg: None,
                key,
            }],
        }
    }

    /// Whether any key can verify `alg`.
    pub fn supports(&self, alg: Algorithm) -> bool {
        self.keys.iter().any(|k| k.fits(alg))
    }

    /// The key for a token's `kid` and `alg`: the key with that `kid`; else, when the set has
    /// keys without a `kid` (a secret, a PEM file), the first of those that fits `alg`.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&DecodingKey> {
        let fitting = || self.keys.iter().filter(move |k| k.fits(alg));
        kid.and_then(|kid| fitting().find(|k| k.kid.as_deref() == Some(kid)))
            .or_else(|| fitting().find(|k| k.kid.is_none()))
            .or_else(|| fitting().next().filter(|_| kid.is_none()))
            .map(|k| &k.key)
    }
}

impl Key {
    fn fits(&self, alg: Algorithm) -> bool {
        self.key.family() == alg.family() && self.alg.is_none_or(|own| own == alg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWKS: &str = r#"{"keys":[
        {"kty":"oct","kid":"h","k":"c2VjcmV0"},
        {"kty":"EC","kid":"e","use":"sig","crv":"P-256",
         "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
        {"kty":"EC","kid":"enc","use":"enc","crv":"P-256",
         "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
    ]}"#;

    #[test]
    fn jwks_keys_are_found_by_kid_and_algorithm() {
        let set = KeySet::from_file_text(JWKS).expect("valid JWKS");
        assert!(set.find(Some("e"), Algorithm::ES256).is_some());
        assert!(
            set.find(Some("e"), Algorithm::RS256).is_none(),
            "wrong family"
        );
        assert!(
            set.find(Some("enc"), Algorithm::ES256).is_none(),
            "encryption key"
        );
        assert!(set.find(Some("h"), Algorithm::HS256).is_some());
        assert!(set.find(Some("other"), Algorithm::ES256).is_none());
        assert!(set.find(None, Algorithm::ES256).is_some());
        assert!(set.supports(Algorithm::ES256) && !set.supports(Algorithm::EdDSA));
    }

    #[test]
    fn a_secret_serves_any_kid_of_its_family() {
        let set = KeySet::secret(b"s3cret").expect("secret");
        assert!(set.find(Some("anything"), Algorithm::HS512).is_some());
        assert!(set.find(None, Algorithm::RS256).is_none());
        assert!(KeySet::secret(b"").is_err());
    }

    #[test]
    fn unusable_files_are_explained() {
        assert!(KeySet::from_file_text("hello").is_err());
        assert!(KeySet::from_file_text(r#"{"keys":[]}"#).is_err());
        assert!(KeySet::from_file_text("{ nope").is_err());
    }
}
