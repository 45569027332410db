//! `cargo xtask it`: run the tests with the servers they need.
//!
//! * S3-compatible server: `SHARDYFUSION_S3_ENDPOINT` wins (bucket `SHARDYFUSION_S3_BUCKET`,
//!   default `shardyfusion-it`); otherwise the moto server from PyPI is installed into a
//!   virtualenv under `target/it-venv` and started on a free port of 127.0.0.1.
//! * PostgreSQL: `DATABASE_URL` wins; otherwise `postgres://postgres@127.0.0.1:5432/postgres`
//!   when reachable.
//!
//! The same virtualenv carries the Python SlateDB binding (`slatedb==0.13.1`), exported as
//! `SHARDYFUSION_PYTHON` for the cross-language tests.
//!
//! The endpoints are exported to the test processes with `SHARDYFUSION_IT=1`, so a test that
//! needs a server fails instead of skipping. Under `CI=true` a server that cannot be provided
//! fails the run here. Whatever was started is stopped at the end.

use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::{cargo, run_cmd};

/// The moto release the tests are written against.
const MOTO: &str = "moto[server]==5.2.5";
/// The Python SlateDB binding the cross-language tests read Rust-written shards with.
const PY_SLATEDB: &str = "slatedb==0.13.1";
const DEFAULT_BUCKET: &str = "shardyfusion-it";
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Stops the started server when dropped.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn venv(root: &Path) -> PathBuf {
    root.join("target/it-venv")
}

/// Create the virtualenv with the Python tools the integration tests use.
pub(crate) fn ensure_venv(root: &Path) -> Result<PathBuf> {
    let venv = venv(root);
    let marker = venv.join(".shardyfusion-ready-moto-5.2.5-slatedb-0.13.1");
    if marker.exists() {
        return Ok(venv);
    }
    println!(
        "it: installing {MOTO} and {PY_SLATEDB} into {}",
        venv.display()
    );
    run_cmd(
        "python venv",
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
    )?;
    run_cmd(
        "pip install",
        Command::new(venv.join("bin/pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            MOTO,
            PY_SLATEDB,
        ]),
    )?;
    std::fs::write(&marker, b"")?;
    Ok(venv)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn reachable(host_port: &str, timeout: Duration) -> bool {
    host_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, timeout).is_ok())
}

fn wait_for(host_port: &str, limit: Duration) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if reachable(host_port, Duration::from_millis(200)) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{host_port} did not accept connections within {limit:?}")
}

fn create_bucket(venv: &Path, endpoint: &str, bucket: &str) -> Result<()> {
    let script = "import boto3, sys\n\
                  c = boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id='test', \
                  aws_secret_access_key='test-secret', region_name='us-east-1')\n\
                  try:\n    c.create_bucket(Bucket=sys.argv[2])\n\
                  except c.exceptions.BucketAlreadyOwnedByYou:\n    pass\n";
    run_cmd(
        "create bucket",
        Command::new(venv.join("bin/python")).args(["-c", script, endpoint, bucket]),
    )
}

/// `host:port` of a postgres URL (`postgres://user@host:port/db`).
fn pg_host_port(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host = authority.rsplit('@').next()?;
    Some(if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    })
}

/// Provide the servers, run the workspace tests against them, stop what was started.
pub(crate) fn run(root: &Path) -> Result<()> {
    let mut env: Vec<(String, String)> = vec![("SHARDYFUSION_IT".into(), "1".into())];
    let mut _guard = None;

    // S3-compatible server.
    let bucket =
        std::env::var("SHARDYFUSION_S3_BUCKET").unwrap_or_else(|_| DEFAULT_BUCKET.to_owned());
    let venv = ensure_venv(root).context("installing the S3-compatible test server (moto)")?;
    let endpoint = match std::env::var("SHARDYFUSION_S3_ENDPOINT")
        .ok()
        .filter(|s| !s.is_empty())
    {
        Some(e) => e,
        None => {
            let port = free_port()?;
            let log = std::fs::File::create(root.join("target/it-moto.log"))?;
            let child = Command::new(venv.join("bin/moto_server"))
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::from(log.try_clone()?))
                .stderr(Stdio::from(log))
                .spawn()
                .context("starting moto_server")?;
            _guard = Some(Started(child));
            let hp = format!("127.0.0.1:{port}");
            wait_for(&hp, Duration::from_secs(60))
                .context("waiting for moto_server (see target/it-moto.log)")?;
            format!("http://{hp}")
        }
    };
    create_bucket(&venv, &endpoint, &bucket)?;
    println!("it: S3-compatible server at {endpoint}, bucket {bucket}");
    env.push(("SHARDYFUSION_S3_ENDPOINT".into(), endpoint));
    env.push((
        "SHARDYFUSION_PYTHON".into(),
        venv.join("bin/python").display().to_string(),
    ));
    env.push(("SHARDYFUSION_S3_BUCKET".into(), bucket));

    // PostgreSQL.
    let db = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    let hp = pg_host_port(&db)
        .with_context(|| format!("cannot read host:port from DATABASE_URL {db:?}"))?;
    if reachable(&hp, Duration::from_secs(2)) {
        println!("it: PostgreSQL at {hp}");
        env.push(("DATABASE_URL".into(), db));
    } else if in_ci() {
        bail!(
            "PostgreSQL is not reachable at {hp} (DATABASE_URL={db}); start it or set DATABASE_URL"
        );
    } else {
        bail!(
            "PostgreSQL is not reachable at {hp}: start a server (e.g. `pg_ctlcluster 15 main start`) or set DATABASE_URL"
        );
    }

    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--locked"])
        .current_dir(root);
    for (k, v) in &env {
        cmd.env(k, v);
    }
    run_cmd("tests (with servers)", &mut cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_host_port() {
        assert_eq!(
            pg_host_port("postgres://postgres@127.0.0.1:5432/postgres").as_deref(),
            Some("127.0.0.1:5432")
        );
        assert_eq!(
            pg_host_port("postgresql://u:p@db.local/x").as_deref(),
            Some("db.local:5432")
        );
        assert_eq!(pg_host_port("nonsense"), None);
    }
}
