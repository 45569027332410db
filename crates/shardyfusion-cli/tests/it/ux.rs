//! `shardy` for people: value formats, table output, errors that say what to do, the REPL at
//! a real terminal (a pseudo-terminal), help, completions and the man page. Every run is
//! hermetic: its own `HOME` and working directory, `SHARDY_*` cleared.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{err_json, ok_json, scratch};

/// `shardy` with `HOME` and the working directory inside `dir`.
fn shardy_in(dir: &Path) -> assert_cmd::Command {
    let mut c = crate::shardy();
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    c.env("HOME", &home)
        .env_remove("XDG_STATE_HOME")
        .env_remove("SHARDY_HISTORY")
        .current_dir(dir);
    c
}

/// `shardy write` of `airlines.jsonl` keyed by `code`, with `args` after it.
fn write_airlines(dir: &Path, args: &[&str]) -> assert_cmd::Command {
    let mut c = shardy_in(dir);
    c.args([
        "write",
        "--no-progress",
        "--input",
        "airlines.jsonl",
        "--key-col",
        "code",
    ])
    .args(args);
    c
}

fn stdout(c: &mut assert_cmd::Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// An airlines lookup table (string keys) and a JSON-valued table, as a new user writes them.
fn airlines(dir: &Path) -> (String, String) {
    let input = dir.join("airlines.jsonl");
    std::fs::write(
        &input,
        "{\"code\":\"AA\",\"name\":\"American Airlines Inc.\",\"hub\":\"DFW\"}\n\
         {\"code\":\"UA\",\"name\":\"United Air Lines Inc.\",\"hub\":\"ORD\"}\n\
         {\"code\":\"B6\",\"name\":\"JetBlue Airways\",\"hub\":\"JFK\"}\n",
    )
    .unwrap();
    let mut out = Vec::new();
    for (prefix, value) in [
        ("snaps/names", vec!["--value-col", "name"]),
        ("snaps/rows", vec!["--value-json-cols", "name,hub"]),
    ] {
        let w = ok_json(
            shardy_in(dir)
                .args(["write", "--no-progress", "--input", "airlines.jsonl"])
                .args([
                    "--key-col",
                    "code",
                    "--key-encoding",
                    "utf8",
                    "--num-dbs",
                    "2",
                ])
                .args(value)
                .args(["--prefix", prefix]),
        );
        assert_eq!(
            w["current_url"].as_str(),
            Some(format!("{prefix}/_CURRENT").as_str()),
            "write names the --current-url to read with"
        );
        out.push(format!("{prefix}/_CURRENT"));
    }
    (out[0].clone(), out[1].clone())
}

#[test]
fn values_people_can_read() {
    let dir = scratch("ux-values");
    let (names, rows) = airlines(&dir);
    let text = |args: &[&str]| stdout(shardy_in(&dir).args(args));
    assert_eq!(
        text(&[
            "--current-url",
            &names,
            "--output-format",
            "text",
            "get",
            "AA"
        ]),
        "American Airlines Inc.\n",
        "text output shows UTF-8 values as text"
    );
    assert_eq!(
        text(&[
            "--current-url",
            &rows,
            "--output-format",
            "text",
            "get",
            "UA"
        ]),
        "{\"hub\":\"ORD\",\"name\":\"United Air Lines Inc.\"}\n"
    );
    let hex = text(&[
        "--current-url",
        &names,
        "--output-format",
        "text",
        "--value-format",
        "hex",
        "get",
        "B6",
    ]);
    assert_eq!(
        hex.trim(),
        "4a6574426c75652041697277617973",
        "JetBlue Airways in hex"
    );
    // Scripts keep base64 unless they ask; `auto` and `json` nest JSON values.
    let g = ok_json(shardy_in(&dir).args(["--current-url", &names, "get", "AA"]));
    assert_eq!(g["value"], "QW1lcmljYW4gQWlybGluZXMgSW5jLg==");
    let g = ok_json(shardy_in(&dir).args([
        "--current-url",
        &rows,
        "--value-format",
        "json",
        "get",
        "AA",
    ]));
    assert_eq!(g["value"]["hub"], "DFW");
    let e = err_json(
        shardy_in(&dir).args([
            "--current-url",
            &names,
            "--value-format",
            "json",
            "get",
            "AA",
        ]),
        1,
    );
    assert!(
        e["error"].as_str().unwrap().contains("--value-format auto"),
        "{e}"
    );
    // JSONL multiget: one line per distinct key, in input order.
    let lines: Vec<Value> = text(&[
        "--current-url",
        &names,
        "--value-format",
        "utf8",
        "multiget",
        "UA",
        "ZZ",
        "AA",
        "UA",
    ])
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    let keys: Vec<&str> = lines.iter().map(|l| l["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["UA", "ZZ", "AA"]);
    assert_eq!(lines[1]["found"], false);
    assert_eq!(lines[2]["value"], "American Airlines Inc.");
    // Table output is aligned: every value column starts at the same place.
    let table = text(&[
        "--current-url",
        &names,
        "--output-format",
        "table",
        "multiget",
        "AA",
        "B6",
    ]);
    let rows: Vec<&str> = table.lines().collect();
    assert!(
        rows[0].starts_with("key") && rows[1].starts_with("---"),
        "{table}"
    );
    let col = rows[0].find("value").unwrap();
    assert!(rows[2][col..].starts_with("American"), "{table}");
    assert!(rows[3][col..].starts_with("JetBlue"), "{table}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn errors_say_what_to_do_next() {
    let dir = scratch("ux-errors");
    let (names, _) = airlines(&dir);
    let prefix = names.trim_end_matches("/_CURRENT");
    // The write's --prefix given as --current-url.
    let e = err_json(
        shardy_in(&dir).args(["--current-url", prefix, "get", "AA"]),
        1,
    );
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains(&format!("pass --current-url {prefix}/_CURRENT")),
        "{e}"
    );
    // A string key under the default u64be encoding.
    let e = err_json(
        &mut write_airlines(
            &dir,
            &[
                "--value-col",
                "name",
                "--num-dbs",
                "2",
                "--prefix",
                "snaps/bad",
            ],
        ),
        1,
    );
    assert!(
        e["error"].as_str().unwrap().contains("--key-encoding utf8"),
        "{e}"
    );
    // No sharding chosen.
    let e = err_json(
        &mut write_airlines(
            &dir,
            &[
                "--key-encoding",
                "utf8",
                "--value-col",
                "name",
                "--prefix",
                "snaps/bad",
            ],
        ),
        1,
    );
    assert!(e["error"].as_str().unwrap().contains("--num-dbs"), "{e}");
    // Sharding flags that need another flag name it.
    let out = write_airlines(
        &dir,
        &[
            "--key-encoding",
            "utf8",
            "--value-col",
            "name",
            "--routing-values",
            "AA,UA",
            "--num-dbs",
            "2",
            "--prefix",
            "snaps/bad",
        ],
    )
    .output()
    .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cel-expr <CEL_EXPR>"));
    let e = err_json(
        &mut write_airlines(
            &dir,
            &[
                "--key-encoding",
                "utf8",
                "--value-col",
                "name",
                "--cel-expr",
                "code",
                "--cel-column",
                "code:string",
                "--prefix",
                "snaps/bad",
            ],
        ),
        1,
    );
    let msg = e["error"].as_str().unwrap();
    assert!(
        msg.contains("--routing-values") && msg.contains("--infer-routing-values"),
        "{e}"
    );
    // A missing argument is named.
    let out = shardy_in(&dir)
        .args(["--current-url", &names, "get"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("<KEY>"));
    // A misspelt key in reader.toml is reported, with the key it resembles.
    std::fs::write(dir.join("reader.toml"), "[reader]\ncurent_url = \"x\"\n").unwrap();
    let out = shardy_in(&dir)
        .args(["--current-url", &names, "info"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown key \"curent_url\" in [reader]")
            && stderr.contains("did you mean \"current_url\""),
        "{stderr}"
    );
    std::fs::write(
        dir.join("credentials.toml"),
        "[default]\nregoin = \"eu-west-1\"\n",
    )
    .unwrap();
    let out = shardy_in(&dir)
        .args(["--current-url", &names, "info"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown key \"regoin\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `shardy` alone with nothing configured prints help, not a JSON error.
    std::fs::remove_file(dir.join("reader.toml")).unwrap();
    let out = shardy_in(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Usage: shardy") && stderr.contains("no snapshot given"),
        "{stderr}"
    );
    assert!(!stderr.contains("{\""), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn info_history_and_rollback_show_the_whole_picture() {
    let dir = scratch("ux-info");
    let input = dir.join("flights.jsonl");
    std::fs::write(
        &input,
        "{\"id\":1,\"carrier\":\"AA\"}\n{\"id\":2,\"carrier\":\"UA\"}\n{\"id\":3,\"carrier\":\"AA\"}\n",
    )
    .unwrap();
    let write = || {
        ok_json(
            shardy_in(&dir)
                .args([
                    "write",
                    "--no-progress",
                    "--input",
                    "flights.jsonl",
                    "--key-col",
                    "id",
                ])
                .args([
                    "--value-json-cols",
                    "--cel-expr",
                    "carrier",
                    "--cel-column",
                    "carrier:string",
                ])
                .args(["--routing-values", "AA,UA", "--prefix", "snaps/flights"]),
        )
    };
    let (w1, w2) = (write(), write());
    let current = "snaps/flights/_CURRENT";
    let info = ok_json(shardy_in(&dir).args(["--current-url", current, "info"]));
    assert_eq!(
        (
            info["key_col"].as_str(),
            info["sharding"].as_str(),
            info["cel_expr"].as_str()
        ),
        (Some("id"), Some("cel"), Some("carrier"))
    );
    assert_eq!(info["cel_columns"]["carrier"], "string");
    assert_eq!(
        info["routing_values"][1],
        serde_json::json!({"value": "UA", "db_id": 1})
    );
    let text =
        stdout(shardy_in(&dir).args(["--current-url", current, "--output-format", "text", "info"]));
    assert!(
        text.contains("routing_values: \"AA\" -> shard 0, \"UA\" -> shard 1"),
        "{text}"
    );

    // Roll back, see the mark move, roll forward.
    let back =
        ok_json(shardy_in(&dir).args(["--current-url", current, "rollback", "--offset", "1"]));
    assert_eq!(
        (back["direction"].as_str(), back["to"].as_str()),
        (Some("back"), w1["manifest_ref"].as_str())
    );
    let h = ok_json(shardy_in(&dir).args(["--current-url", current, "history"]));
    let marks: Vec<bool> = h["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["current"].as_bool().unwrap())
        .collect();
    assert_eq!(marks, [false, true], "history marks the current manifest");
    let text = stdout(shardy_in(&dir).args([
        "--current-url",
        current,
        "--output-format",
        "text",
        "history",
    ]));
    assert!(text.lines().nth(1).unwrap().starts_with("* [1]"), "{text}");
    let forward = stdout(shardy_in(&dir).args([
        "--current-url",
        current,
        "--output-format",
        "text",
        "rollback",
        "--offset",
        "0",
    ]));
    assert_eq!(
        forward.trim(),
        format!(
            "Rolled forward _CURRENT to: {}",
            w2["manifest_ref"].as_str().unwrap()
        )
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn completions_and_man_page() {
    let dir = scratch("ux-completions");
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout(shardy_in(&dir).args(["completions", shell]));
        assert!(
            script.contains("multiget") && script.contains("value-format"),
            "{shell}"
        );
    }
    let man = stdout(shardy_in(&dir).arg("man"));
    assert!(man.contains(".TH shardy 1") && man.contains("multiget"));
    std::fs::remove_dir_all(dir).unwrap();
}

fn binary() -> PathBuf {
    assert_cmd::cargo::cargo_bin("shardy")
}

#[test]
fn the_repl_at_a_terminal() {
    let dir = scratch("ux-repl");
    let (names, _) = airlines(&dir);
    let history = dir.join("history");
    let mut cmd = std::process::Command::new(binary());
    cmd.args(["--current-url", &names, "--output-format", "text"])
        .current_dir(&dir)
        .env("HOME", dir.join("home"))
        .env("SHARDY_HISTORY", &history)
        .env("TERM", "xterm")
        .env_remove("SHARDY_CURRENT")
        .env_remove("SHARDY_CONFIG")
        .env_remove("SHARDY_CREDENTIALS");
    let mut p = rexpect::session::spawn_command(cmd, Some(20_000)).unwrap();
    p.exp_string("type `help` for commands").unwrap();
    p.exp_string("shardy> ").unwrap();
    p.send_line("help").unwrap();
    p.exp_string("multiget KEY...").unwrap();
    p.exp_string("shardy> ").unwrap();
    // Tab completes the command word.
    p.send("inf\t").unwrap();
    p.flush().unwrap();
    p.send_line("").unwrap();
    p.exp_string("key_col: code").unwrap();
    p.exp_string("shardy> ").unwrap();
    p.send_line("get").unwrap();
    p.exp_string("error: the following required arguments were not provided: <KEY>")
        .unwrap();
    p.exp_string("shardy> ").unwrap();
    p.send_line("get B6").unwrap();
    p.exp_string("JetBlue Airways").unwrap();
    p.exp_string("shardy> ").unwrap();
    p.send_line("quit").unwrap();
    p.exp_eof().unwrap();
    let saved = std::fs::read_to_string(&history).unwrap();
    assert!(
        saved.contains("get B6") && saved.contains("info"),
        "{saved}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
