//! Polled JSON diffs: for any two documents, applying the change the poller would send to
//! the first document gives the second — an RFC 6902 JSON Patch, and an RFC 7396 merge
//! patch (or the snapshot sent when a merge patch cannot say it exactly).

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sse_edge::config::Emit;
use sse_edge::sources::poll::{change, Change};

fn applied(emit: Emit, old: &Value, new: &Value) -> Value {
    match change(emit, Some(old), new) {
        Change::Snapshot(text) => serde_json::from_str(&text).expect("a snapshot is JSON"),
        Change::Patch(text) => {
            let mut document = old.clone();
            match emit {
                Emit::JsonPatch => {
                    let patch: json_patch::Patch =
                        serde_json::from_str(&text).expect("a JSON Patch");
                    json_patch::patch(&mut document, &patch).expect("the patch applies");
                }
                _ => {
                    let patch: Value = serde_json::from_str(&text).expect("a merge patch");
                    json_patch::merge(&mut document, &patch);
                }
            }
            document
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // Two documents, separated by the first NUL byte.
    let Some(split) = data.iter().position(|&b| b == 0) else {
        return;
    };
    let parse = |bytes: &[u8]| serde_json::from_slice::<Value>(bytes).ok();
    let (Some(old), Some(new)) = (parse(&data[..split]), parse(&data[split + 1..])) else {
        return;
    };
    assert_eq!(
        applied(Emit::JsonPatch, &old, &new),
        new,
        "json_patch {old} -> {new}"
    );
    assert_eq!(
        applied(Emit::MergePatch, &old, &new),
        new,
        "merge_patch {old} -> {new}"
    );
    let Change::Snapshot(first) = change(Emit::Snapshot, None, &new) else {
        panic!("the first document is a snapshot");
    };
    assert_eq!(serde_json::from_str::<Value>(&first).ok(), Some(new));
});
