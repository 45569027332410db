//! Repository rules checked by `cargo xtask tidy` and by the `tidy` test.
//!
//! * Every Rust file under `crates/` and `xtask/` opens with `//!` docs.
//! * The crate layering of DESIGN.md §2 holds, read from `cargo metadata`: a crate's normal and
//!   build dependencies on workspace crates are within its allow-list; core and manifest pull in
//!   no I/O crate; only the CLI and xtask depend on `anyhow`. Dev-dependencies are exempt (tests
//!   are users and may wire any crate in).
//! * Members take every dependency from `[workspace.dependencies]`.
//! * No leftover debugging or placeholder macros, no ignored or panic-expecting tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::cargo;

/// Allowed workspace dependencies per crate (DESIGN.md §2). `None` = anything.
const LAYERS: &[(&str, Option<&[&str]>)] = &[
    ("shardyfusion-core", Some(&[])),
    ("shardyfusion-cel", Some(&["shardyfusion-core"])),
    ("shardyfusion-manifest", Some(&["shardyfusion-core"])),
    ("shardyfusion-storage", Some(&["shardyfusion-core"])),
    (
        "shardyfusion-store-s3",
        Some(&[
            "shardyfusion-core",
            "shardyfusion-manifest",
            "shardyfusion-storage",
        ]),
    ),
    ("shardyfusion-store-postgres", Some(&["shardyfusion-core"])),
    ("shardyfusion-store-sqlite", Some(&["shardyfusion-core"])),
    // Test support: the shared ManifestStore conformance suite (dev-dependency of the stores).
    (
        "shardyfusion-store-conformance",
        Some(&["shardyfusion-core"]),
    ),
    (
        "shardyfusion-writer",
        Some(&[
            "shardyfusion-core",
            "shardyfusion-manifest",
            "shardyfusion-storage",
            "shardyfusion-cel",
        ]),
    ),
    (
        "shardyfusion-reader-async",
        Some(&[
            "shardyfusion-core",
            "shardyfusion-manifest",
            "shardyfusion-storage",
            "shardyfusion-cel",
        ]),
    ),
    (
        "shardyfusion-reader",
        Some(&["shardyfusion-core", "shardyfusion-reader-async"]),
    ),
    ("shardyfusion-cli", None),
    ("shardyfusion", None),
    // The Python bindings: the facade "and anything above" it.
    ("shardyfusion-py", Some(&["shardyfusion"])),
    ("xtask", Some(&[])),
];

/// External crates that would give a sans-I/O crate I/O or a runtime.
const IO_CRATES: &[&str] = &[
    "tokio",
    "object_store",
    "slatedb",
    "rusqlite",
    "postgres",
    "tokio-postgres",
    "reqwest",
    "hyper",
    "cel-interpreter",
];

/// Crates that must stay sans-I/O, and the I/O crates each may still use (bytes in, bytes out).
const SANS_IO: &[(&str, &[&str])] = &[
    ("shardyfusion-core", &[]),
    ("shardyfusion-manifest", &["rusqlite"]),
];

/// Only these may depend on `anyhow` outside dev-dependencies.
const ANYHOW_OK: &[&str] = &["shardyfusion-cli", "xtask"];

/// Run every check; the error lists every violation.
pub(crate) fn check(root: &Path) -> Result<()> {
    let mut problems = Vec::new();
    check_layering(root, &mut problems)?;
    for file in rust_files(root)? {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let rel = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        check_file(&rel, &text, &mut problems);
    }
    for manifest in member_manifests(root)? {
        let text = std::fs::read_to_string(&manifest)?;
        let rel = manifest
            .strip_prefix(root)
            .unwrap_or(&manifest)
            .display()
            .to_string();
        check_manifest_inherits(&rel, &text, &mut problems);
    }
    if !problems.is_empty() {
        bail!(
            "tidy found {} problem(s):\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    Ok(())
}

fn check_layering(root: &Path, problems: &mut Vec<String>) -> Result<()> {
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .current_dir(root)
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: Value = serde_json::from_slice(&out.stdout)?;
    layering_problems(&meta, problems)
}

fn layering_problems(meta: &Value, problems: &mut Vec<String>) -> Result<()> {
    let layers: BTreeMap<&str, Option<&[&str]>> = LAYERS.iter().copied().collect();
    let packages = meta["packages"]
        .as_array()
        .context("metadata has no packages")?;
    let members: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    for pkg in packages {
        let name = pkg["name"].as_str().unwrap_or_default();
        let Some(allowed) = layers.get(name) else {
            problems.push(format!(
                "crate {name} is not in the layering table of xtask/src/tidy.rs (DESIGN.md §2)"
            ));
            continue;
        };
        for dep in pkg["dependencies"].as_array().into_iter().flatten() {
            let dep_name = dep["name"].as_str().unwrap_or_default();
            if dep["kind"].as_str() == Some("dev") {
                continue;
            }
            if members.contains(&dep_name)
                && let Some(allowed) = allowed
                && !allowed.contains(&dep_name)
            {
                problems.push(format!(
                    "layering: {name} must not depend on {dep_name} (DESIGN.md §2)"
                ));
            }
            if let Some((_, exempt)) = SANS_IO.iter().find(|(c, _)| *c == name)
                && IO_CRATES.contains(&dep_name)
                && !exempt.contains(&dep_name)
            {
                problems.push(format!("sans-I/O: {name} must not depend on {dep_name}"));
            }
            if dep_name == "anyhow" && !ANYHOW_OK.contains(&name) {
                problems.push(format!(
                    "{name} must not depend on anyhow (only the CLI and xtask may)"
                ));
            }
        }
    }
    Ok(())
}

fn check_file(rel: &str, text: &str, problems: &mut Vec<String>) {
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    if !first.starts_with("//!") {
        problems.push(format!("{rel}: must open with `//!` module docs"));
    }
    // Built with concat! so this file does not flag itself.
    let banned = [
        concat!("to", "do!("),
        concat!("d", "bg!("),
        concat!("unimple", "mented!("),
        concat!("#[", "ignore"),
        concat!("#[", "should_panic"),
    ];
    for (i, line) in text.lines().enumerate() {
        for b in banned {
            if line.contains(b) {
                problems.push(format!("{rel}:{}: `{b}` is not allowed", i + 1));
            }
        }
    }
    // Writers and readers take `Arc<dyn ManifestStore>`; they never name a concrete store.
    let engine = [
        "crates/shardyfusion-writer/src",
        "crates/shardyfusion-reader-async/src",
        "crates/shardyfusion-reader/src",
    ];
    if engine.iter().any(|p| rel.starts_with(p)) {
        for (i, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue; // docs may show how callers wire a store in
            }
            for ty in [
                "ObjectStoreManifestStore",
                "PostgresManifestStore",
                "SqliteManifestStore",
                "InMemoryManifestStore",
            ] {
                if line.contains(ty) {
                    problems.push(format!(
                        "{rel}:{}: writers and readers must not name the concrete store {ty}",
                        i + 1
                    ));
                }
            }
        }
    }
    if rel.starts_with("crates/shardyfusion-core/src") {
        for (i, line) in text.lines().enumerate() {
            for io in ["std::fs", "std::net", "std::process", "tokio::"] {
                if line.contains(io) {
                    problems.push(format!(
                        "{rel}:{}: core is sans-I/O and must not use {io}",
                        i + 1
                    ));
                }
            }
        }
    }
}

fn check_manifest_inherits(rel: &str, text: &str, problems: &mut Vec<String>) {
    let mut in_deps = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            in_deps = t.ends_with("dependencies]");
            continue;
        }
        if !in_deps || t.is_empty() || t.starts_with('#') {
            continue;
        }
        if !t.contains("workspace = true") {
            problems.push(format!(
                "{rel}:{}: dependencies come from [workspace.dependencies] (`name.workspace = true`): {t}",
                i + 1
            ));
        }
    }
}

fn rust_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for top in ["crates", "xtask"] {
        walk(&root.join(top), &mut out)?;
    }
    out.sort();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() {
            if name != "target" && name != "fixtures" && !name.starts_with('.') {
                walk(&path, out)?;
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
    Ok(())
}

fn member_manifests(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![root.join("xtask/Cargo.toml")];
    for entry in std::fs::read_dir(root.join("crates"))? {
        let p = entry?.path().join("Cargo.toml");
        if p.exists() {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidy() {
        check(&crate::project_root()).unwrap();
    }

    #[test]
    fn file_rules_catch_violations() {
        let mut p = Vec::new();
        let banned = concat!("fn f() { to", "do!() }\n");
        check_file(
            "crates/x/src/a.rs",
            &format!("use std::fmt;\n{banned}"),
            &mut p,
        );
        assert_eq!(p.len(), 2, "{p:?}");
        let mut p = Vec::new();
        check_file(
            "crates/shardyfusion-core/src/a.rs",
            "//! ok\nuse std::fs::File;\n",
            &mut p,
        );
        assert_eq!(p.len(), 1, "{p:?}");
    }

    #[test]
    fn manifest_rule_catches_pinned_versions() {
        let mut p = Vec::new();
        check_manifest_inherits(
            "c/Cargo.toml",
            "[dependencies]\nserde = \"1\"\nfoo.workspace = true\n[features]\nx = []\n",
            &mut p,
        );
        assert_eq!(p.len(), 1, "{p:?}");
    }

    #[test]
    fn forbidden_edges_fail() {
        let meta = serde_json::json!({"packages": [
            {"name": "shardyfusion-core", "dependencies": [{"name": "tokio", "kind": null}]},
            {"name": "shardyfusion-reader", "dependencies": [
                {"name": "shardyfusion-manifest", "kind": null},
                {"name": "shardyfusion-core", "kind": null},
                {"name": "anyhow", "kind": null},
                {"name": "shardyfusion-store-s3", "kind": "dev"}
            ]},
            {"name": "shardyfusion-manifest", "dependencies": [{"name": "rusqlite", "kind": null}]},
            {"name": "shardyfusion-store-s3", "dependencies": []},
            {"name": "rogue", "dependencies": []}
        ]});
        let mut p = Vec::new();
        layering_problems(&meta, &mut p).unwrap();
        assert_eq!(p.len(), 4, "{p:#?}");
        assert!(
            p.iter()
                .any(|m| m.contains("core must not depend on tokio"))
        );
        assert!(
            p.iter()
                .any(|m| m.contains("reader must not depend on shardyfusion-manifest"))
        );
        assert!(p.iter().any(|m| m.contains("anyhow")));
        assert!(p.iter().any(|m| m.contains("rogue")));
    }

    #[test]
    fn layering_table_has_every_design_crate() {
        assert_eq!(LAYERS.len(), 15);
        assert!(LAYERS.iter().any(|(c, a)| *c == "shardyfusion-reader"
            && a.is_some_and(|a| !a.contains(&"shardyfusion-manifest"))));
    }
}
