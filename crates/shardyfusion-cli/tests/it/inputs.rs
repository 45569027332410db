//! Keys given to `shardy` never vanish or change: every `multiget -` line is a key (only the
//! terminator is stripped), a line that does not fit is an error naming it, any key can be
//! entered as hex or base64, `exec` keys are never taken for flags, and configuration errors
//! never echo a line that may hold a secret.

use std::path::Path;

use serde_json::Value;
use shardyfusion::writer::ShardedWriter;
use shardyfusion::{Key, KeyEncoding, WriteConfig, WriteOptions};

use crate::{err_json, ok_json, scratch, shardy};

/// A snapshot of `keys` (value = the key's debug text) written by the library.
fn snapshot(prefix: &Path, enc: KeyEncoding, keys: Vec<Key>) -> String {
    let prefix = prefix.to_str().unwrap().to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = shardyfusion::manifest_store_for_prefix(&prefix).unwrap();
        let config = WriteConfig::builder(&prefix)
            .num_dbs(2)
            .key_encoding(enc)
            .manifest_store(store)
            .build()
            .unwrap();
        ShardedWriter::new(config)
            .unwrap()
            .write(
                &keys,
                |k| (*k).clone(),
                |k| format!("{k:?}").into_bytes(),
                &WriteOptions::default(),
            )
            .await
            .unwrap();
    });
    format!("{prefix}/_CURRENT")
}

fn lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn every_stdin_line_is_a_key() {
    let dir = scratch("inputs-lines");
    let current = snapshot(
        &dir.join("snap"),
        KeyEncoding::Utf8,
        vec![Key::Str("AA".into()), Key::Str(" AA".into())],
    );
    // Spaces are part of keys, an empty line is the empty key (which no snapshot can hold),
    // \r\n is a terminator.
    let out = shardy()
        .args(["--current-url", &current, "multiget", "-"])
        .write_stdin(" AA\r\nAA\n\nBB\n")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<(String, bool)> = lines(&out.stdout)
        .iter()
        .map(|l| {
            (
                l["key"].as_str().unwrap().to_owned(),
                l["found"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (" AA".to_owned(), true),
            ("AA".to_owned(), true),
            (String::new(), false),
            ("BB".to_owned(), false)
        ]
    );
    // A line that is not UTF-8 stops the command with its line number, exit 1.
    let e = err_json(
        shardy()
            .args(["--current-url", &current, "multiget", "-"])
            .write_stdin(&b"AA\n\xff\xfe\nBB\n"[..]),
        1,
    );
    let msg = e["error"].as_str().unwrap();
    assert!(
        msg.contains("stdin line 2") && msg.contains("not valid UTF-8"),
        "{e}"
    );
    // An empty key is refused at write time with a typed error naming the row, never a panic.
    let input = dir.join("empty.jsonl");
    std::fs::write(&input, "{\"k\":\"a\",\"v\":1}\n{\"k\":\"\",\"v\":2}\n").unwrap();
    let e = err_json(
        shardy()
            .args([
                "write",
                "--no-progress",
                "--key-col",
                "k",
                "--key-encoding",
                "utf8",
            ])
            .args(["--value-json-cols", "--num-dbs", "2", "--input"])
            .arg(&input)
            .arg("--prefix")
            .arg(dir.join("empty")),
        1,
    );
    let msg = e["error"].as_str().unwrap();
    assert!(msg.contains("empty key") && msg.contains("row 2"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn any_key_can_be_entered_as_hex_or_base64() {
    let dir = scratch("inputs-formats");
    let raw = snapshot(
        &dir.join("raw"),
        KeyEncoding::Raw,
        vec![Key::Bytes(vec![0xff]), Key::Bytes(b"-V".to_vec())],
    );
    let g = ok_json(shardy().args(["--current-url", &raw, "--key-format", "hex", "get", "ff"]));
    assert_eq!(g["found"], true, "{g}");
    let g = ok_json(shardy().args([
        "--current-url",
        &raw,
        "--key-format",
        "base64",
        "get",
        "/w==",
    ]));
    assert_eq!(g["found"], true, "{g}");
    let out = shardy()
        .args([
            "--current-url",
            &raw,
            "--key-format",
            "hex",
            "multiget",
            "-",
        ])
        .write_stdin("ff\n2d56\n00\n")
        .output()
        .unwrap();
    let found: Vec<bool> = lines(&out.stdout)
        .iter()
        .map(|l| l["found"].as_bool().unwrap())
        .collect();
    assert_eq!(found, [true, true, false]);
    let e = err_json(
        shardy().args(["--current-url", &raw, "--key-format", "hex", "get", "f"]),
        1,
    );
    assert!(e["error"].as_str().unwrap().contains("not hex"), "{e}");
    // Integer snapshots take their 8 big-endian bytes.
    let ints = snapshot(&dir.join("ints"), KeyEncoding::U64Be, vec![Key::Int(258)]);
    let g = ok_json(shardy().args([
        "--current-url",
        &ints,
        "--key-format",
        "hex",
        "get",
        "0000000000000102",
    ]));
    assert_eq!(
        (g["key"].as_i64(), g["found"].as_bool()),
        (Some(258), Some(true))
    );
    // A missing value is JSON null, not the string "null".
    let g = ok_json(shardy().args(["--current-url", &ints, "get", "7"]));
    assert!(g["value"].is_null(), "{g}");
    // exec: a key that looks like a flag is still a key.
    let script = dir.join("steps.yaml");
    std::fs::write(&script, "commands:\n  - op: get\n    key: \"-V\"\n  - op: multiget\n    keys: [\"-V\", \"--help\"]\n").unwrap();
    let out = shardy()
        .args(["--current-url", &raw, "exec", "--script"])
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = lines(&out.stdout);
    assert_eq!(records[0]["key"], "-V");
    assert_eq!(records[0]["found"], true);
    assert_eq!(
        (records[2]["key"].as_str(), records[2]["found"].as_bool()),
        (Some("--help"), Some(false))
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn config_errors_never_echo_secrets() {
    let dir = scratch("inputs-secrets");
    let current = snapshot(&dir.join("snap"), KeyEncoding::U64Be, vec![Key::Int(1)]);
    let creds = dir.join("credentials.toml");
    std::fs::write(
        &creds,
        "[default]\naccess_key_id = \"AKIA\"\nsecret_access_key = \"s3cr3t-value\n",
    )
    .unwrap();
    let e = err_json(
        shardy()
            .args(["--current-url", &current, "--credentials"])
            .arg(&creds)
            .arg("info"),
        1,
    );
    let msg = e["error"].as_str().unwrap();
    assert!(msg.contains("line 3") && !msg.contains("s3cr3t"), "{e}");
    let config = dir.join("reader.toml");
    std::fs::write(
        &config,
        "[manifest_store]\nbackend = \"postgres\"\ndsn = \"postgres://u:hunter2@h/db\n",
    )
    .unwrap();
    let e = err_json(
        shardy()
            .args(["--current-url", &current, "--config"])
            .arg(&config)
            .arg("info"),
        1,
    );
    let msg = e["error"].as_str().unwrap();
    assert!(msg.contains("line 3") && !msg.contains("hunter2"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}
