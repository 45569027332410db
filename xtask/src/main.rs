//! `cargo xtask`: the project's automation, in Rust instead of shell scripts.
//!
//! * `cargo xtask ci` — everything CI checks, in order: `fmt --check`, clippy with `-D warnings`
//!   on all targets, the facade's features one by one, the tests through `it`, the README's
//!   quickstart on a small dataset, `cargo doc` with warnings denied, a fuzzing smoke (every
//!   `cargo fuzz` target a few seconds), `tidy`, `codegen --check`.
//! * `cargo xtask it` — the tests with the servers they need (S3-compatible, PostgreSQL).
//! * `cargo xtask test` — the workspace tests alone (server tests skip outside CI).
//! * `cargo xtask tidy` — repository rules (module docs, dependency layering, banned macros).
//! * `cargo xtask codegen [--check]` — write (or verify) the generated `docs/reference/*.md`.
//! * `cargo xtask features` — the facade compiles with each feature alone (like
//!   `cargo hack check --each-feature`).
//! * `cargo xtask bench [--rows N] [--cel]` — benchmarks as ratios against raw SlateDB;
//!   `cargo xtask bench --scale` — the scale scenario (2 M and 20 M rows, peak RSS);
//!   `cargo xtask bench --python` — the Python bindings and Spark against Rust.
//! * `cargo xtask fuzz [--seconds N] [TARGET...]` — the `cargo fuzz` targets in `fuzz/`.

#![allow(clippy::print_stdout)]

mod bench;
mod codegen;
mod fuzz;
mod it;
mod pybench;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

fn main() {
    if let Err(err) = run() {
        eprintln!("xtask: error: {err:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = project_root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("ci") => ci(&root),
        Some("test") => test(&root),
        Some("it") => it::run(&root),
        Some("bench") => bench::run(&root, &args[1..]),
        Some("fuzz") => fuzz::run(&root, &args[1..]),
        Some("features") => features(&root),
        Some("tidy") => {
            tidy::check(&root)?;
            println!("tidy: ok");
            Ok(())
        }
        Some("codegen") => codegen::run(&root, args.iter().any(|a| a == "--check")),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci | it | test | tidy | codegen [--check] | features | bench [--rows N] [--cel] | bench --scale | bench --python | fuzz [--seconds N] [TARGET...]>"
            );
            bail!("unknown or missing command")
        }
    }
}

/// The workspace root (the parent of this crate's manifest directory).
pub(crate) fn project_root() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    dir.parent().map(Path::to_path_buf).unwrap_or(dir)
}

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
}

/// Build every binary and example of the workspace (one feature resolution for all of them).
pub(crate) fn build_artifacts() -> Result<()> {
    run_cmd(
        "build bins and examples",
        cargo().args([
            "build",
            "--quiet",
            "--locked",
            "--workspace",
            "--bins",
            "--examples",
        ]),
    )
}

pub(crate) fn run_cmd(name: &str, cmd: &mut Command) -> Result<()> {
    let start = Instant::now();
    println!("\n==> {name}");
    let status = cmd.status().with_context(|| format!("spawning {name}"))?;
    println!(
        "<== {name}: {} in {:.1}s",
        if status.success() { "ok" } else { "FAILED" },
        start.elapsed().as_secs_f64()
    );
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    Ok(())
}

fn test(_root: &Path) -> Result<()> {
    run_cmd("tests", cargo().args(["test", "--workspace", "--locked"]))
}

/// Features of the `shardyfusion` facade, each checked alone.
const FACADE_FEATURES: &[&str] = &[
    "s3",
    "postgres",
    "postgres-tls",
    "sqlite",
    "cel",
    "writer",
    "reader",
    "async",
];

fn features(_root: &Path) -> Result<()> {
    run_cmd(
        "features: none",
        cargo().args([
            "check",
            "--quiet",
            "--locked",
            "-p",
            "shardyfusion",
            "--no-default-features",
        ]),
    )?;
    for f in FACADE_FEATURES {
        run_cmd(
            &format!("features: {f}"),
            cargo().args([
                "check",
                "--quiet",
                "--locked",
                "-p",
                "shardyfusion",
                "--no-default-features",
                "--features",
                f,
            ]),
        )?;
    }
    Ok(())
}

fn ci(root: &Path) -> Result<()> {
    let start = Instant::now();
    run_cmd("fmt", cargo().args(["fmt", "--all", "--", "--check"]))?;
    run_cmd(
        "fmt (fuzz targets)",
        cargo().args(["fmt", "--manifest-path", "fuzz/Cargo.toml", "--", "--check"]),
    )?;
    run_cmd(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    features(root)?;
    it::run(root)?;
    // The README's main job, end to end on the embedded default (smaller dataset). Binaries and
    // examples are built once for the whole workspace, so no per-package feature set rebuilds.
    build_artifacts()?;
    run_cmd(
        "quickstart",
        std::process::Command::new(root.join("target/debug/examples/quickstart"))
            .args(["20000", "target/quickstart-ci"])
            .current_dir(root),
    )?;
    run_cmd(
        "doc",
        cargo()
            .args(["doc", "--workspace", "--no-deps", "--locked"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    // Fuzzing as a smoke: every target builds with the sanitizers and runs a few seconds on
    // seeds from the fixtures (`cargo xtask fuzz --seconds N` for longer runs).
    fuzz::run(root, &["--seconds".to_owned(), "8".to_owned()])?;
    println!("\n==> tidy");
    tidy::check(root)?;
    println!("<== tidy: ok");
    println!("\n==> codegen --check");
    codegen::run(root, true)?;
    println!(
        "\nci: all checks passed in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
