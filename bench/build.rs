//! Records which lock-runtime this binary measures, at build time: the last commit that
//! changed lock-runtime or lock-macros, whether they had uncommitted changes, and a
//! fingerprint of their sources.
//! (Reading git when the bench runs would name whatever was committed meanwhile, not what
//! was compiled.)

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The sources whose content identifies the measured code.
const SOURCES: &[&str] = &[
    "lock-runtime/src",
    "lock-runtime/Cargo.toml",
    "lock-macros/src",
    "lock-macros/Cargo.toml",
];

fn main() {
    let manifest = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest)
        .parent()
        .expect("bench/ sits in the workspace root")
        .to_path_buf();
    let mut files = Vec::new();
    for source in SOURCES {
        let path = root.join(source);
        println!("cargo::rerun-if-changed={}", path.display());
        collect(&path, &mut files);
    }
    files.sort();
    // FNV-1a over every file's path and content.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for file in &files {
        let name = file.strip_prefix(&root).unwrap_or(file).to_string_lossy();
        for byte in name.bytes().chain(fs::read(file).unwrap_or_default()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(&root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    // Committing changes the commit and the dirty flag without touching the sources.
    let head_log = root.join(".git/logs/HEAD");
    if head_log.is_file() {
        println!("cargo::rerun-if-changed={}", head_log.display());
    }
    let commit = git(&[
        "log",
        "-1",
        "--format=%h",
        "--",
        "lock-runtime",
        "lock-macros",
    ])
    .filter(|c| !c.is_empty())
    .unwrap_or_else(|| "unknown".to_owned());
    let dirty = git(&["status", "--porcelain", "--", "lock-runtime", "lock-macros"])
        .is_some_and(|s| !s.is_empty());
    println!(
        "cargo::rustc-env=LOCK_BENCH_SOURCE=lock-runtime at {commit}{}, source fingerprint {hash:016x}",
        if dirty {
            " with uncommitted changes"
        } else {
            ""
        }
    );
}

/// Every file under `path` (or `path` itself).
fn collect(path: &Path, out: &mut Vec<PathBuf>) {
    match fs::read_dir(path) {
        Ok(entries) => {
            for entry in entries.flatten() {
                collect(&entry.path(), out);
            }
        }
        Err(_) if path.is_file() => out.push(path.to_path_buf()),
        Err(_) => {}
    }
}
