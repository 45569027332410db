//! Generated reference documents under `docs/reference/`.
//!
//! Each document is rendered by code that lives next to what it describes (xtask depends on no
//! workspace crate), so codegen asks that code to print it and writes or compares the result.

use std::path::Path;

use anyhow::{Context as _, Result, bail};

/// One generated file: where it goes and the workspace artifact (under `target/debug`) that
/// prints it, with its arguments.
struct Generated {
    path: &'static str,
    program: &'static str,
    args: &'static [&'static str],
}

const GENERATED: &[Generated] = &[
    Generated {
        path: "docs/reference/errors.md",
        program: "examples/reference",
        args: &["errors"],
    },
    Generated {
        path: "docs/reference/metrics.md",
        program: "examples/reference",
        args: &["metrics"],
    },
    Generated {
        path: "docs/reference/cli.md",
        program: "shardy",
        args: &["__reference"],
    },
    Generated {
        path: "docs/reference/config.md",
        program: "shardy",
        args: &["__config-reference"],
    },
];

/// Write every generated file, or with `check` fail when any is stale.
pub(crate) fn run(root: &Path, check: bool) -> Result<()> {
    crate::build_artifacts()?;
    let mut stale = Vec::new();
    for g in GENERATED {
        let out = std::process::Command::new(root.join("target/debug").join(g.program))
            .args(g.args)
            .current_dir(root)
            .output()
            .with_context(|| format!("running the generator of {}", g.path))?;
        if !out.status.success() {
            bail!(
                "generating {} failed:\n{}",
                g.path,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let fresh = String::from_utf8(out.stdout).context("generator printed non-UTF-8")?;
        let path = root.join(g.path);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == fresh {
            continue;
        }
        if check {
            stale.push(g.path);
        } else {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&path, fresh)?;
            println!("codegen: wrote {}", g.path);
        }
    }
    if !stale.is_empty() {
        bail!(
            "generated files are stale: {}; run `cargo xtask codegen` and commit",
            stale.join(", ")
        );
    }
    if check {
        println!("codegen: {} generated files up to date", GENERATED.len());
    }
    Ok(())
}
