//! What a polled document's change looks like on the wire: a full snapshot, an RFC 6902
//! JSON Patch or an RFC 7396 merge patch — plus the cheap nesting check run before parsing.

use serde_json::{Map, Value};

use crate::config::Emit;

/// How one new document is sent to subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The whole document (first document, `snapshot` mode, or a merge patch that could not
    /// express the change exactly).
    Snapshot(String),
    /// A patch (RFC 6902 operations or an RFC 7396 merge patch) from the previous document.
    Patch(String),
}

/// The change that turns `old` into `new` under `emit`; `old` is `None` for the first document.
pub fn change(emit: Emit, old: Option<&Value>, new: &Value) -> Change {
    let snapshot = || Change::Snapshot(new.to_string());
    let Some(old) = old else {
        return snapshot();
    };
    match emit {
        Emit::Snapshot => snapshot(),
        Emit::JsonPatch => match serde_json::to_string(&json_patch::diff(old, new)) {
            Ok(patch) => Change::Patch(patch),
            Err(_) => snapshot(),
        },
        Emit::MergePatch => {
            let patch = merge_patch(old, new);
            // RFC 7396 reads `null` as "remove", so a document holding nulls may not survive
            // the round trip; the applied result is checked, and a snapshot sent if it differs.
            let mut applied = old.clone();
            json_patch::merge(&mut applied, &patch);
            if applied == *new {
                Change::Patch(patch.to_string())
            } else {
                snapshot()
            }
        }
    }
}

/// An RFC 7396 merge patch from `old` to `new`: for two objects, removed keys become `null`
/// and changed values recurse; anything else is replaced whole. The patch may misrepresent a
/// `null` in `new` (see [`change`], which checks).
pub fn merge_patch(old: &Value, new: &Value) -> Value {
    let (Value::Object(old), Value::Object(new)) = (old, new) else {
        return new.clone();
    };
    let mut patch = Map::new();
    for key in old.keys().filter(|key| !new.contains_key(*key)) {
        patch.insert(key.clone(), Value::Null);
    }
    for (key, value) in new {
        match old.get(key) {
            Some(previous) if previous == value => {}
            Some(previous) => {
                patch.insert(key.clone(), merge_patch(previous, value));
            }
            None => {
                patch.insert(key.clone(), value.clone());
            }
        }
    }
    Value::Object(patch)
}

/// Whether the arrays and objects in `json` nest at most `max` deep, by a byte scan that
/// skips string contents (so `"[[["` does not count). Cheap enough to run before parsing, and
/// it keeps a hostile document from reaching the parser's recursion.
pub fn within_depth(json: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(old: Value, new: Value) -> Value {
        let patch = merge_patch(&old, &new);
        let mut applied = old;
        json_patch::merge(&mut applied, &patch);
        assert_eq!(applied, new, "patch {patch}");
        patch
    }

    #[test]
    fn merge_patch_removes_changes_and_adds_keys() {
        let patch = round_trip(
            json!({"a": 1, "b": {"c": 2, "d": 3}, "gone": true, "same": "x"}),
            json!({"a": 2, "b": {"c": 2, "e": 4}, "new": [1, 2], "same": "x"}),
        );
        assert_eq!(
            patch,
            json!({"a": 2, "b": {"d": null, "e": 4}, "gone": null, "new": [1, 2]})
        );
    }

    #[test]
    fn merge_patch_replaces_arrays_and_scalars_whole() {
        let patch = round_trip(json!({"l": [1, 2, 3]}), json!({"l": [3, 2, 1]}));
        assert_eq!(patch, json!({"l": [3, 2, 1]}));
        assert_eq!(round_trip(json!([1]), json!({"a": 1})), json!({"a": 1}));
        assert_eq!(round_trip(json!({"a": 1}), json!("text")), json!("text"));
        assert_eq!(round_trip(json!({"a": 1}), json!({"a": 1})), json!({}));
        assert_eq!(
            round_trip(json!({"o": 1}), json!({"o": {"deep": {"x": 1}}})),
            json!({"o": {"deep": {"x": 1}}})
        );
    }

    #[test]
    fn nulls_a_merge_patch_cannot_express_fall_back_to_a_snapshot() {
        let old = json!({"a": 1});
        for new in [
            json!({"a": null}),
            json!({"a": 1, "b": null}),
            json!({"a": {"x": null}}),
        ] {
            assert_eq!(
                change(Emit::MergePatch, Some(&old), &new),
                Change::Snapshot(new.to_string()),
                "{new}"
            );
        }
        // A null that stays where it was is fine: the patch does not mention it.
        let old = json!({"a": null, "b": 1});
        let new = json!({"a": null, "b": 2});
        assert_eq!(
            change(Emit::MergePatch, Some(&old), &new),
            Change::Patch(json!({"b": 2}).to_string())
        );
    }

    #[test]
    fn json_patch_applies_to_the_old_document() {
        let old = json!({"items": [1, 2, 3], "meta": {"v": 1}});
        let new = json!({"items": [3, 1], "meta": {"v": 2, "n": null}});
        let Change::Patch(patch) = change(Emit::JsonPatch, Some(&old), &new) else {
            panic!("expected a patch");
        };
        let operations: Vec<json_patch::PatchOperation> =
            serde_json::from_str(&patch).expect("patch parses");
        let mut applied = old;
        json_patch::patch(&mut applied, &operations).expect("patch applies");
        assert_eq!(applied, new);
    }

    #[test]
    fn numbers_reach_clients_as_the_upstream_wrote_them() {
        // Found by fuzz/json_diff: without serde_json's `float_roundtrip`, both of these
        // were parsed one ULP off, so snapshots and patches changed the upstream's number.
        let long = format!("88{}10248191152060862007", "0".repeat(84));
        for text in ["8.799999999999999e105", long.as_str()] {
            let upstream: f64 = text.parse().expect("a number");
            let new: Value = serde_json::from_str(text).expect("JSON");
            let Change::Snapshot(sent) = change(Emit::Snapshot, None, &new) else {
                panic!("expected a snapshot");
            };
            assert_eq!(sent.parse::<f64>().expect("a number"), upstream, "{text}");
            let Change::Patch(patch) = change(Emit::MergePatch, Some(&json!(1)), &new) else {
                panic!("expected a patch");
            };
            let client: Value = serde_json::from_str(&patch).expect("JSON");
            assert_eq!(client.as_f64(), Some(upstream), "{text}");
        }
    }

    #[test]
    fn first_document_and_snapshot_mode_send_the_whole_document() {
        let doc = json!({"a": [1, {"b": 2}]});
        for emit in [Emit::Snapshot, Emit::JsonPatch, Emit::MergePatch] {
            assert_eq!(change(emit, None, &doc), Change::Snapshot(doc.to_string()));
        }
        assert_eq!(
            change(Emit::Snapshot, Some(&json!(1)), &doc),
            Change::Snapshot(doc.to_string())
        );
    }

    #[test]
    fn depth_scan_counts_arrays_and_objects() {
        assert!(within_depth(b"1", 0));
        assert!(!within_depth(b"[]", 0));
        assert!(within_depth(b"[]", 1));
        assert!(within_depth(br#"{"a": [1, {"b": 2}], "c": {}}"#, 3));
        assert!(!within_depth(br#"{"a": [1, {"b": 2}], "c": {}}"#, 2));
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert!(!within_depth(deep.as_bytes(), 64));
        assert!(within_depth(deep.as_bytes(), 65));
        // Siblings do not add up.
        assert!(within_depth(b"[[],[],[[]],[]]", 3));
    }

    #[test]
    fn depth_scan_skips_strings_and_escapes() {
        assert!(within_depth(br#"{"k": "[[[[{{{{"}"#, 1));
        assert!(within_depth(br#"["\"[[[", "\\", "]]]"]"#, 1));
        assert!(!within_depth(br#"["\\", [[]]]"#, 2));
        // The scan cannot be pushed negative to hide depth.
        assert!(!within_depth(b"]]]][[[", 2));
    }
}
