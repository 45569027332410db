//! Tests of the shared SQL-store logic on an in-memory fake backend with real transactions.

use super::*;
use crate::error::ErrorKind;
use crate::model::{RequiredBuildMeta, RequiredShardMeta};
use crate::{Error, Key, ManifestRef};

#[derive(Clone, Default)]
struct Tables {
    builds: Vec<BuildRow>,
    shards: Vec<(String, ShardRow)>,
    pointer: Vec<RefRow>,
}

/// A backend over vectors: `begin_write` snapshots the tables, `rollback` restores them, and
/// writes outside a transaction fail.
struct Fake {
    t: Tables,
    saved: Option<Tables>,
    clock: Timestamp,
    fail_insert_pointer: bool,
    /// `latest_pointer` ignores the newest row (a broken ordering).
    hide_newest_pointer: bool,
    rollbacks: usize,
}

impl Fake {
    fn new() -> Self {
        Fake {
            t: Tables::default(),
            saved: None,
            clock: Timestamp::from_unix_micros(1_700_000_000_000_000).unwrap(),
            fail_insert_pointer: false,
            hide_newest_pointer: false,
            rollbacks: 0,
        }
    }
    fn tick(&mut self, micros: i64) {
        self.clock = Timestamp::from_unix_micros(self.clock.unix_micros() + micros).unwrap();
    }
    fn in_tx(&self) -> Result<()> {
        match self.saved {
            Some(_) => Ok(()),
            None => Err(Error::new(
                ErrorKind::ManifestStore,
                "write outside a transaction",
            )),
        }
    }
}

impl SqlBackend for Fake {
    const INTEGER_MAX: i64 = i32::MAX as i64;
    fn describe(&self) -> &str {
        "fake db"
    }
    fn begin_write(&mut self) -> Result<()> {
        assert!(self.saved.is_none(), "nested transaction");
        self.saved = Some(self.t.clone());
        Ok(())
    }
    fn commit(&mut self) -> Result<()> {
        self.in_tx()?;
        self.saved = None;
        Ok(())
    }
    fn rollback(&mut self) -> Result<()> {
        self.rollbacks += 1;
        if let Some(t) = self.saved.take() {
            self.t = t;
        }
        Ok(())
    }
    fn now(&mut self) -> Result<Timestamp> {
        Ok(self.clock)
    }
    fn latest_pointer(&mut self) -> Result<Option<RefRow>> {
        let mut rows: Vec<(usize, &RefRow)> = self.t.pointer.iter().enumerate().collect();
        rows.sort_by_key(|r| std::cmp::Reverse((r.1.at, r.0)));
        let skip = usize::from(self.hide_newest_pointer);
        Ok(rows.get(skip).map(|(_, r)| (*r).clone()))
    }
    fn newest_build(&mut self) -> Result<Option<RefRow>> {
        Ok(self.list_builds(1)?.pop())
    }
    fn list_builds(&mut self, limit: i64) -> Result<Vec<RefRow>> {
        let mut rows: Vec<RefRow> = self
            .t
            .builds
            .iter()
            .map(|b| RefRow {
                run_id: b.run_id.clone(),
                at: b.created_at,
            })
            .collect();
        rows.sort_by(|a, b| (b.at, &b.run_id).cmp(&(a.at, &a.run_id)));
        rows.truncate(usize::try_from(limit).unwrap());
        Ok(rows)
    }
    fn build_row(&mut self, run_id: &str) -> Result<Option<BuildRow>> {
        Ok(self.t.builds.iter().find(|b| b.run_id == run_id).cloned())
    }
    fn shard_rows(&mut self, run_id: &str) -> Result<Vec<ShardRow>> {
        Ok(self
            .t
            .shards
            .iter()
            .filter(|(id, _)| id == run_id)
            .map(|(_, r)| r.clone())
            .rev()
            .collect())
    }
    fn insert_build(&mut self, row: &BuildRow) -> Result<bool> {
        self.in_tx()?;
        if self.t.builds.iter().any(|b| b.run_id == row.run_id) {
            return Ok(false);
        }
        self.t.builds.push(row.clone());
        Ok(true)
    }
    fn insert_shards(&mut self, run_id: &str, rows: &[ShardRow]) -> Result<()> {
        self.in_tx()?;
        for r in rows {
            self.t.shards.push((run_id.to_owned(), r.clone()));
        }
        Ok(())
    }
    fn insert_pointer(&mut self, run_id: &str, at: Timestamp) -> Result<()> {
        self.in_tx()?;
        if self.fail_insert_pointer {
            return Err(Error::new(ErrorKind::ManifestStore, "disk full"));
        }
        self.t.pointer.push(RefRow {
            run_id: run_id.to_owned(),
            at,
        });
        Ok(())
    }
}

fn snapshot(run_id: &str) -> (RequiredBuildMeta, Vec<RequiredShardMeta>) {
    let mut build = RequiredBuildMeta::new(run_id, 4, "s3://b/p");
    build.custom.insert("team".into(), "ml".into());
    let shards = [3u32, 0]
        .into_iter()
        .map(|db_id| {
            let mut s = RequiredShardMeta::empty(db_id);
            s.db_url = Some(format!(
                "s3://b/p/shards/run_id={run_id}/db={db_id:05}/attempt=00"
            ));
            s.row_count = 10 + u64::from(db_id);
            s.min_key = Some(Key::Int(1));
            s.max_key = Some(Key::Str("z".into()));
            s
        })
        .chain([RequiredShardMeta::empty(1)])
        .collect();
    (build, shards)
}

fn publish_ok(db: &mut Fake, run_id: &str) -> ManifestRef {
    let (b, s) = snapshot(run_id);
    let r = publish(db, &b, &s).unwrap();
    db.tick(10);
    r
}

fn current(db: &mut Fake) -> String {
    load_current(db).unwrap().unwrap().run_id
}

#[test]
fn round_trip_keeps_non_empty_shards_in_order() {
    let mut db = Fake::new();
    let (b, s) = snapshot("r1");
    let r = publish(&mut db, &b, &s).unwrap();
    assert_eq!(
        (r.manifest_ref.as_str(), r.published_at),
        ("r1", b.created_at)
    );
    let m = load_manifest(&mut db, "r1", &[]).unwrap();
    assert_eq!(m.build, b);
    assert_eq!(m.shards.iter().map(|s| s.db_id).collect::<Vec<_>>(), [0, 3]);
    assert_eq!(m.shards[1], s[0]);
    assert_eq!(current(&mut db), "r1");
    assert!(db.saved.is_none(), "transaction ended");
}

#[test]
fn republishing_a_run_id_is_refused_and_changes_nothing() {
    let mut db = Fake::new();
    publish_ok(&mut db, "r1");
    publish_ok(&mut db, "r2");
    let before = db.t.clone();
    let (mut b, mut s) = snapshot("r1");
    b.custom.insert("changed".into(), true.into());
    s.truncate(1);
    let err = publish(&mut db, &b, &s).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConfigValidation, "{err}");
    assert!(err.message().contains("run id already published"), "{err}");
    assert!(err.message().contains("\"r1\""), "{err}");
    assert_eq!(db.t.builds, before.builds, "build rows unchanged");
    assert_eq!(db.t.shards, before.shards, "shard rows unchanged");
    assert_eq!(db.t.pointer, before.pointer, "no pointer row appended");
    assert_eq!(db.rollbacks, 1);
    assert_eq!(current(&mut db), "r2");
}

#[test]
fn a_clock_that_steps_back_still_moves_the_pointer_forward() {
    let mut db = Fake::new();
    publish_ok(&mut db, "r1");
    let first = db.t.pointer[0].at;
    db.tick(-5_000_000);
    publish_ok(&mut db, "r2");
    assert_eq!(current(&mut db), "r2");
    assert!(db.t.pointer[1].at > first, "strictly newer pointer row");
    db.tick(-5_000_000);
    set_current(&mut db, "r1").unwrap();
    assert_eq!(current(&mut db), "r1");
}

#[test]
fn failed_pointer_write_rolls_back_the_whole_publish() {
    let mut db = Fake::new();
    publish_ok(&mut db, "r1");
    db.fail_insert_pointer = true;
    let (b, s) = snapshot("r2");
    let err = publish(&mut db, &b, &s).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PublishManifest, "{err}");
    assert!(err.is_retryable());
    assert!(err.message().contains("nothing became current"), "{err}");
    assert!(
        db.build_row("r2").unwrap().is_none(),
        "build row rolled back"
    );
    assert!(
        db.shard_rows("r2").unwrap().is_empty(),
        "shard rows rolled back"
    );
    db.fail_insert_pointer = false;
    assert_eq!(current(&mut db), "r1");
    // The same run id publishes fine once the database recovers.
    publish(&mut db, &b, &s).unwrap();
    assert_eq!(current(&mut db), "r2");
}

#[test]
fn a_pointer_row_that_is_not_newest_afterwards_is_rolled_back() {
    let mut db = Fake::new();
    publish_ok(&mut db, "r1");
    publish_ok(&mut db, "r2");
    db.hide_newest_pointer = true;
    let err = set_current(&mut db, "r1").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ManifestStore, "{err}");
    assert!(err.message().contains("not the newest"), "{err}");
    assert_eq!(db.t.pointer.len(), 2, "no pointer row kept");
}

#[test]
fn set_current_validates_inside_its_transaction() {
    let mut db = Fake::new();
    publish_ok(&mut db, "r1");
    publish_ok(&mut db, "r2");
    let err = set_current(&mut db, "nope").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ManifestParse);
    assert!(
        err.message().contains("Manifest not found: ref=nope"),
        "{err}"
    );
    db.t.builds[0].sharding = "{not json".into();
    let err = set_current(&mut db, "r1").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ManifestParse);
    assert!(err.message().contains("column sharding"), "{err}");
    assert_eq!(db.t.pointer.len(), 2);
    assert_eq!(db.rollbacks, 2);
    let r = set_current(&mut db, "r2").unwrap();
    assert_eq!(r.run_id, "r2");
    assert_eq!(db.t.pointer.len(), 3);
}

#[test]
fn values_the_columns_cannot_hold_are_refused_before_writing() {
    let mut db = Fake::new();
    let (b, mut s) = snapshot("big");
    s[0].row_count = 1 << 31;
    let err = publish(&mut db, &b, &s).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ManifestBuild);
    assert!(err.message().contains("row_count 2147483648"), "{err}");
    let (b, mut s) = snapshot("bytes");
    s[0].db_bytes = u64::MAX;
    let err = publish(&mut db, &b, &s).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ManifestBuild);
    assert!(err.message().contains("db_bytes"), "{err}");
    let (b, mut s) = snapshot("outside");
    s[0].db_id = 9;
    let err = publish(&mut db, &b, &s).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ManifestBuild);
    assert!(err.message().contains("db_id 9"), "{err}");
    let (mut b, s) = snapshot("wide");
    b.num_dbs = u32::MAX;
    let err = publish(&mut db, &b, &s).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ManifestBuild);
    assert!(err.message().contains("num_dbs 4294967295"), "{err}");
    assert!(db.t.builds.is_empty() && db.t.pointer.is_empty());
}

#[test]
fn out_of_range_integers_read_back_are_parse_errors_naming_the_column() {
    for (column, set) in [
        (
            "num_dbs",
            (|t: &mut Tables| t.builds[0].num_dbs = -1) as fn(&mut Tables),
        ),
        ("num_dbs", |t| t.builds[0].num_dbs = 1 << 33),
        ("num_dbs", |t| t.builds[0].num_dbs = 0),
        ("db_id", |t| t.shards[0].1.db_id = -3),
        ("attempt", |t| t.shards[0].1.attempt = i64::MAX),
        ("row_count", |t| t.shards[0].1.row_count = -1),
        ("db_bytes", |t| t.shards[0].1.db_bytes = i64::MIN),
        ("key_encoding", |t| t.builds[0].key_encoding = "u128".into()),
        ("min_key", |t| t.shards[0].1.min_key = Some("[1]".into())),
        ("writer_info", |t| {
            t.shards[0].1.writer_info = Some("7".into())
        }),
        ("custom", |t| t.builds[0].custom = Some("[]".into())),
    ] {
        let mut db = Fake::new();
        publish_ok(&mut db, "r1");
        set(&mut db.t);
        let err = load_manifest(&mut db, "r1", &[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ManifestParse, "{column}: {err}");
        assert!(err.message().contains(column), "{column}: {err}");
        assert!(err.message().contains("\"r1\""), "{column}: {err}");
    }
}

#[test]
fn current_falls_back_to_the_newest_build_and_lists_newest_first() {
    let mut db = Fake::new();
    assert_eq!(load_current(&mut db).unwrap(), None);
    assert!(list_manifests(&mut db, 10).unwrap().is_empty());
    publish_ok(&mut db, "a");
    let a_at = db.t.builds[0].created_at;
    let (mut b, s) = snapshot("b");
    b.created_at = a_at.plus(std::time::Duration::from_secs(1));
    publish(&mut db, &b, &s).unwrap();
    db.t.pointer.clear();
    assert_eq!(current(&mut db), "b");
    let ids: Vec<String> = list_manifests(&mut db, 1)
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(ids, ["b"]);
    assert!(list_manifests(&mut db, 0).unwrap().is_empty());
    assert_eq!(list_manifests(&mut db, usize::MAX).unwrap().len(), 2);
}
