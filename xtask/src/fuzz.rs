//! `cargo xtask fuzz [--seconds N] [TARGET...]`: run the `cargo fuzz` targets in `fuzz/` (outside
//! the workspace) for N seconds each, seeded from the test fixtures, and print executions per
//! target. cargo-fuzz is installed (pinned) when missing; the toolchain is stable, so the
//! sanitizer build runs with `RUSTC_BOOTSTRAP=1`. A crash fails the run and leaves its input
//! under `fuzz/artifacts/<target>/` (make it a regression test).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

const CARGO_FUZZ: &str = "0.13.2";
const TARGETS: &[&str] = &[
    "manifest_parse",
    "pointer_parse",
    "cel_eval",
    "key_parse",
    "url_parse",
];

fn ensure_cargo_fuzz() -> Result<()> {
    let installed = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(CARGO_FUZZ)
        });
    if !installed {
        crate::run_cmd(
            "install cargo-fuzz",
            Command::new("cargo").args([
                "install",
                "cargo-fuzz",
                "--locked",
                "--version",
                CARGO_FUZZ,
            ]),
        )?;
    }
    Ok(())
}

/// Copy every file under `from` (recursively) whose path ends with one of `suffixes` into `to`.
fn seed(from: &Path, suffixes: &[&str], to: &Path) -> Result<usize> {
    let mut n = 0;
    let mut stack = vec![from.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if suffixes.iter().any(|s| path.to_string_lossy().ends_with(s)) {
                n += 1;
                std::fs::copy(&path, to.join(format!("seed-{n}")))?;
            }
        }
    }
    Ok(n)
}

/// Seeds of each target from the fixtures (and a few written here).
fn corpus(root: &Path, target: &str) -> Result<PathBuf> {
    let dir = root.join("target/fuzz-corpus").join(target);
    std::fs::create_dir_all(&dir)?;
    let fixtures = |c: &str| root.join("crates").join(c).join("tests/fixtures");
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text);
    match target {
        "manifest_parse" => {
            seed(&fixtures("shardyfusion-manifest"), &["/manifest"], &dir)?;
        }
        "pointer_parse" => {
            seed(&fixtures("shardyfusion-manifest"), &["_CURRENT"], &dir)?;
        }
        "cel_eval" => {
            let text = std::fs::read_to_string(fixtures("shardyfusion-cel").join("cel.json"))?;
            let doc: serde_json::Value = serde_json::from_str(&text)?;
            let mut exprs = Vec::new();
            collect_exprs(&doc, &mut exprs);
            for (i, e) in exprs.iter().enumerate() {
                std::fs::write(
                    dir.join(format!("expr-{i}")),
                    [&[7u8; 8][..], e.as_bytes()].concat(),
                )?;
            }
        }
        "key_parse" => {
            for (i, k) in [
                "42",
                "-1",
                "18446744073709551615",
                "0000000000000102",
                "/w==",
                "ff",
                "",
                " 7",
                "AA",
            ]
            .iter()
            .enumerate()
            {
                write(&format!("key-{i}"), k)?;
            }
        }
        "url_parse" => {
            for (i, u) in [
                "s3://bucket/prefix|s3://bucket/prefix/shards/db=00000|s3://old/prefix",
                "/data/snap|file:///data/snap/shards/x|/old/snap",
                "memory://m/p|memory://m/p/a|memory://m/q",
                "./rel|../escape|",
            ]
            .iter()
            .enumerate()
            {
                write(&format!("url-{i}"), u)?;
            }
        }
        other => bail!("unknown fuzz target {other:?}: {}", TARGETS.join(", ")),
    }
    Ok(dir)
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let seconds: u64 = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.parse())
        .transpose()
        .context("--seconds takes a number")?
        .unwrap_or(60);
    let chosen: Vec<&str> = args
        .iter()
        .filter(|a| TARGETS.contains(&a.as_str()))
        .map(String::as_str)
        .collect();
    let targets = if chosen.is_empty() {
        TARGETS.to_vec()
    } else {
        chosen
    };
    ensure_cargo_fuzz()?;
    let mut report = Vec::new();
    for target in targets {
        let corpus = corpus(root, target)?;
        println!("==> fuzz {target} for {seconds} s");
        let out = Command::new("cargo")
            .args(["fuzz", "run", target])
            .arg(&corpus)
            .args([
                "--",
                &format!("-max_total_time={seconds}"),
                "-rss_limit_mb=4096",
            ])
            .env("RUSTC_BOOTSTRAP", "1")
            .current_dir(root)
            .output()
            .with_context(|| format!("running cargo fuzz for {target}"))?;
        let text = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            bail!(
                "fuzz target {target} failed (a crash leaves its input under fuzz/artifacts/{target}/):\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let runs = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("Done ")
                    .and_then(|r| r.split_whitespace().next())
            })
            .unwrap_or("?")
            .to_owned();
        report.push((target, runs));
    }
    println!("\n| fuzz target | executions | seconds |\n|---|---|---|");
    for (t, runs) in report {
        println!("| {t} | {runs} | {seconds} |");
    }
    Ok(())
}
