//! The file schema of authentication: the named authenticators under `auth:` and the
//! `auth:` choice of `defaults` and of each route (SPEC §8). Like the rest of the model it
//! never leaves `config/`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// One named authenticator under `auth:`: exactly one of `jwt`, `forward`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthenticatorFile {
    /// Check a JSON Web Token at the edge.
    pub jwt: Option<JwtBlock>,
    /// Ask the legacy API's auth endpoint, like nginx `auth_request`.
    pub forward: Option<ForwardBlock>,
}

/// `jwt:` — where the keys come from, what is accepted, where the token is read.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtBlock {
    /// HMAC secret (HS256/384/512): `env:NAME` or `file:PATH`; never the secret itself.
    pub secret: Option<String>,
    /// A JWKS or PEM file of public keys (RS*, PS*, ES*, EdDSA).
    pub keys: Option<String>,
    /// A JWKS URL, fetched at first use and every `jwks_refresh`; the last good set is kept.
    pub jwks_url: Option<String>,
    /// How often `jwks_url` is fetched again. Default `5m`.
    #[serde(default, with = "humantime_serde")]
    pub jwks_refresh: Option<Duration>,
    /// The accepted `alg` values. Required; `none` never is.
    pub algorithms: Option<Vec<String>>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud` (or member of an array `aud`), when set.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`. Default `30s`.
    #[serde(default, with = "humantime_serde")]
    pub leeway: Option<Duration>,
    /// Where the token is read, tried in order: `header:NAME` (a `Bearer ` prefix is
    /// stripped), `cookie:NAME`, `query:NAME`. Default
    /// `[header:Authorization, cookie:access_token, query:access_token]`.
    pub from: Option<Vec<String>>,
}

/// `forward:` — a GET to the legacy API's auth endpoint decides.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardBlock {
    /// The auth endpoint (`http://` or `https://`).
    pub url: String,
    /// Client request headers sent to it as they came (the credential).
    #[serde(default)]
    pub forward_headers: Vec<String>,
    /// The header of a `2xx` answer that names the client (its identity for `client_id: auth`).
    pub identity_header: Option<String>,
    /// How long an answer (allow or deny) is kept per credential and path; `0s` asks every
    /// time. Default `0s`.
    #[serde(default, with = "humantime_serde")]
    pub cache: Option<Duration>,
    /// An endpoint slower than this counts as down (`503`). Default `2s`.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

/// A route's (or `defaults`') `auth:`: an authenticator's name, `none`, or
/// `{ use: NAME, require: { CLAIM: VALUE } }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthChoiceFile {
    /// The authenticator's name, or `none`.
    pub name: String,
    /// Claims the credential must carry; values may use the path's `{name}` captures.
    pub require: BTreeMap<String, String>,
}

/// The `{ use, require }` form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UseFile {
    #[serde(rename = "use")]
    name: String,
    #[serde(default)]
    require: BTreeMap<String, String>,
}

impl<'de> Deserialize<'de> for AuthChoiceFile {
    /// Written by hand, not `untagged`, so a wrong value names the forms that are accepted.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ChoiceVisitor)
    }
}

struct ChoiceVisitor;

impl<'de> Visitor<'de> for ChoiceVisitor {
    type Value = AuthChoiceFile;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an authenticator name, none, or { use: NAME, require: { CLAIM: VALUE } }")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<AuthChoiceFile, E> {
        Ok(AuthChoiceFile {
            name: name.to_string(),
            require: BTreeMap::new(),
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<AuthChoiceFile, A::Error> {
        let file = UseFile::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(AuthChoiceFile {
            name: file.name,
            require: file.require,
        })
    }
}
