//! Hostile configuration files (SPEC §4): too large, holding NUL, nested too deep, or
//! quoting huge values in errors. `sse-edge check` must refuse each within a second and in
//! bounded memory, measured on the child process by GNU time (`/usr/bin/time`, Debian's
//! `time` package): `getrusage` of a child spawned here would also count this test
//! process's own peak, which the kernel carries into the child's `maxrss` across `exec`.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(1);
const MAX_RSS_KIB: u64 = 100 * 1024;

/// What one `sse-edge check` run did.
struct Run {
    success: bool,
    stderr: String,
    elapsed: Duration,
    peak_rss_kib: u64,
}

/// Runs `sse-edge check --config file` under GNU time, which reports the peak RSS on the
/// last line of standard error. Both run in a process group of their own, killed whole if
/// they outlive [`common::WAIT`].
fn check(file: &Path) -> Run {
    let stderr_file = file.with_extension("stderr");
    let started = Instant::now();
    let mut child = Command::new("/usr/bin/time")
        .args([
            "-f",
            "peak_rss_kib=%M",
            "--",
            env!("CARGO_BIN_EXE_sse-edge"),
        ])
        .args(["check", "--config"])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_file).expect("stderr file"))
        .process_group(0)
        .spawn()
        .expect("run /usr/bin/time (apt-get install time)");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > common::WAIT {
            // SAFETY: signals the process group made for this child, and nothing else.
            unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
            let _ = child.wait();
            panic!(
                "check --config {} still running after {:?}",
                file.display(),
                common::WAIT
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    let stderr = std::fs::read_to_string(&stderr_file).expect("stderr");
    let (stderr, peak) = stderr
        .trim_end()
        .rsplit_once("peak_rss_kib=")
        .expect("GNU time's report");
    Run {
        success: status.success(),
        stderr: stderr.to_string(),
        elapsed,
        peak_rss_kib: peak.trim().parse().expect("peak RSS in KiB"),
    }
}

/// Asserts that `file` is refused fast and small, with an error containing `reason`.
fn assert_refused(file: &Path, reason: &str) -> Run {
    let run = check(file);
    let name = file.display();
    assert!(!run.success, "{name} was accepted");
    assert!(run.stderr.contains(reason), "{name}: {}", run.stderr);
    assert!(run.elapsed < LIMIT, "{name} took {:?}", run.elapsed);
    assert!(
        run.peak_rss_kib < MAX_RSS_KIB,
        "{name} peaked at {} KiB",
        run.peak_rss_kib
    );
    assert!(
        run.stderr.len() < 1024,
        "{name}: {} bytes of errors",
        run.stderr.len()
    );
    run
}

fn dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sse-edge-bounds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn write(name: &str, content: impl AsRef<[u8]>) -> PathBuf {
    let file = dir().join(name);
    std::fs::write(&file, content).expect("write config");
    file
}

#[test]
fn deep_flow_nesting_is_refused_before_parsing() {
    let seq = format!("routes: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let run = assert_refused(&write("deep-seq.yaml", seq), "nested deeper than 64 levels");
    assert!(run.stderr.contains("deep-seq.yaml:1:"), "{}", run.stderr);
    let map = format!("routes: {}1{}\n", "{a: ".repeat(50_000), "}".repeat(50_000));
    assert_refused(&write("deep-map.yaml", map), "nested deeper than 64 levels");
    let block = format!("routes:\n{}x\n", "- ".repeat(1_000_000));
    let run = assert_refused(&write("deep-block.yaml", block), "nested deeper than 64");
    assert!(run.stderr.contains("deep-block.yaml:2:"), "{}", run.stderr);
}

#[test]
fn huge_files_and_dev_zero_are_refused_unread() {
    let scalar = format!("routes:\n  - path: \"{}\"\n", "x".repeat(50 << 20));
    assert_refused(&write("scalar.yaml", scalar), "larger than 4 MiB");
    let unknown = format!("routes: []\nbogus: \"{}\"\n", "y".repeat(50 << 20));
    assert_refused(&write("unknown.yaml", unknown), "larger than 4 MiB");
    assert_refused(Path::new("/dev/zero"), "larger than 4 MiB");
}

#[test]
fn nul_bytes_are_refused_with_their_line() {
    let run = assert_refused(
        &write("nul.yaml", b"routes: []\nlisten: \"a\0b\"\n"),
        "contains a NUL byte",
    );
    assert!(run.stderr.contains("nul.yaml:2:"), "{}", run.stderr);
}

#[test]
fn values_quoted_in_errors_are_cut_to_80_characters() {
    let value = "z".repeat(1 << 20);
    let yaml = format!(
        "routes:\n  - path: /a\n    heartbeat: \"{value}\"\n    sse: {{ upstream: http://u/x }}\n"
    );
    let run = check(&write("long-value.yaml", yaml));
    assert!(!run.success);
    assert!(run.stderr.contains("routes[0].heartbeat"), "{}", run.stderr);
    assert!(
        run.stderr.len() < 1024,
        "{} bytes of errors",
        run.stderr.len()
    );
    let quoted = format!("\"{}…\"", "z".repeat(80));
    assert!(run.stderr.contains(&quoted), "{}", run.stderr);
}

#[test]
fn a_config_at_the_limits_still_loads() {
    let nested = format!(
        "routes:\n  - path: /a\n    sse: {{ upstream: http://u/x }}\n    cors: {{ allow_origins: [\"*\"] }}\n# {}\nextra_comment_padding: null\n",
        "[".repeat(1000)
    );
    // Brackets in a comment do not count; the unknown key proves the file was parsed.
    let run = check(&write("padded.yaml", nested));
    assert!(
        run.stderr.contains("unknown field `extra_comment_padding`"),
        "{}",
        run.stderr
    );
    let padding = format!("# {}\n", "p".repeat((4 << 20) - 200));
    let ok = format!("{padding}routes:\n  - path: /a\n    sse: {{ upstream: http://u/x }}\n");
    assert!(ok.len() <= 4 << 20);
    let run = check(&write("four-mib.yaml", ok));
    assert!(run.success, "{}", run.stderr);
}
