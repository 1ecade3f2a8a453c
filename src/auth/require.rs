//! A route's `require:` rules over the credential's claims: each claim must equal its value
//! (path captures substituted), or contain it when the claim is an array or a
//! space-separated `scope`. A missing claim fails like a wrong one: `403`.

use serde_json::{Map, Value};

use super::AuthError;
use crate::routes::{Captures, Template};

/// Checks every rule; the first that fails names its claim (never the claim's value).
pub fn check(
    require: &[(String, Template)],
    claims: &Map<String, Value>,
    captures: &Captures,
) -> Result<(), AuthError> {
    for (claim, wanted) in require {
        let wanted = wanted.fill(captures);
        let holds = claims
            .get(claim)
            .is_some_and(|value| satisfies(claim, value, &wanted));
        if !holds {
            return Err(AuthError::Forbidden(format!("require.{claim} not met")));
        }
    }
    Ok(())
}

fn satisfies(claim: &str, value: &Value, wanted: &str) -> bool {
    match value {
        Value::String(text) if claim == "scope" => text.split(' ').any(|s| s == wanted),
        Value::String(text) => text == wanted,
        Value::Array(items) => items.iter().any(|item| satisfies(claim, item, wanted)),
        Value::Number(number) => number.to_string() == wanted,
        Value::Bool(flag) => flag.to_string() == wanted,
        Value::Null | Value::Object(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(pairs: &[(&str, &str)]) -> Vec<(String, Template)> {
        pairs
            .iter()
            .map(|(claim, value)| (claim.to_string(), Template::new(*value)))
            .collect()
    }

    #[test]
    fn claims_equal_contain_or_fail_with_403() {
        let claims = serde_json::json!({
            "sub": "ada", "scope": "read notifications", "roles": ["admin", "ops"], "level": 3,
        });
        let claims = claims.as_object().expect("object");
        let captures = Captures::from([("user".to_string(), "ada".to_string())]);
        let ok = rules(&[
            ("sub", "{user}"),
            ("scope", "notifications"),
            ("roles", "ops"),
            ("level", "3"),
        ]);
        assert_eq!(check(&ok, claims, &captures), Ok(()));
        let other_user = Captures::from([("user".to_string(), "bob".to_string())]);
        let refused = check(&rules(&[("sub", "{user}")]), claims, &other_user);
        assert_eq!(refused.map_err(|e| e.status()), Err(403));
        for failing in [("scope", "notif"), ("roles", "root"), ("missing", "x")] {
            assert!(
                check(&rules(&[failing]), claims, &captures).is_err(),
                "{failing:?}"
            );
        }
    }
}
