//! `sse-edge demo`: built-in upstreams, a generated config, and a live page.

/// Runs the demo (not yet available).
pub fn run(_listen: &str) -> Result<(), String> {
    Err("the demo is not built yet".into())
}
