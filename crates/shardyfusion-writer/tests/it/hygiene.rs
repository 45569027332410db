//! A failed or cancelled write closes every shard database it opened (SPEC 15.1 async
//! hygiene): an adapter factory counts opens and closes.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use shardyfusion_core::{Key, Result, WriteConfig, WriteOptions};
use shardyfusion_storage::StorageResolver;
use shardyfusion_writer::{AdapterFactory, KvBatch, ShardAdapter, ShardedWriter};
use tokio::sync::Notify;

use crate::{store_for, unique};

#[derive(Debug, Default)]
struct Counts {
    opened: AtomicUsize,
    closed: AtomicUsize,
    batches: AtomicUsize,
    /// After this many batches, every further batch waits forever (0 = never).
    hang_after: AtomicUsize,
    hung: Notify,
}

#[derive(Debug)]
struct Factory(Arc<Counts>);

struct Adapter {
    counts: Arc<Counts>,
    open: bool,
}

#[async_trait]
impl AdapterFactory for Factory {
    async fn open(&self, _: &str, _: &Path, _: u32) -> Result<Box<dyn ShardAdapter>> {
        self.0.opened.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(Adapter {
            counts: self.0.clone(),
            open: true,
        }))
    }
}

#[async_trait]
impl ShardAdapter for Adapter {
    async fn write_batch(&mut self, _batch: KvBatch) -> Result<()> {
        let n = self.counts.batches.fetch_add(1, Ordering::SeqCst) + 1;
        let hang = self.counts.hang_after.load(Ordering::SeqCst);
        if hang > 0 && n > hang {
            self.counts.hung.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(())
    }
    async fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    async fn seal(&mut self) -> Result<()> {
        Ok(())
    }
    fn db_bytes(&self) -> u64 {
        0
    }
    async fn close(&mut self) -> Result<()> {
        if std::mem::take(&mut self.open) {
            self.counts.closed.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

fn writer(counts: &Arc<Counts>) -> ShardedWriter {
    let prefix = format!("memory://hygiene/{}", unique("p"));
    let store = store_for(&prefix, &StorageResolver::default());
    let config = WriteConfig::builder(&prefix)
        .num_dbs(8)
        .batch_size(10)
        .manifest_store(store)
        .build()
        .unwrap();
    ShardedWriter::new(config)
        .unwrap()
        .with_run_registry(false)
        .with_adapter_factory(Arc::new(Factory(counts.clone())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_closes_every_database_it_opened() {
    for parallel in [false, true] {
        let counts = Arc::new(Counts::default());
        let keys: Vec<i64> = (0..2000).collect();
        let options = WriteOptions::builder().parallel(parallel).build().unwrap();
        // The key extractor fails on row 1500, after every shard has written batches.
        let err = writer(&counts)
            .write(
                &keys,
                |k| {
                    if **k == 1500 {
                        Key::Str(String::new())
                    } else {
                        Key::Int(**k)
                    }
                },
                |k| k.to_le_bytes().to_vec(),
                &options,
            )
            .await
            .unwrap_err();
        let opened = counts.opened.load(Ordering::SeqCst);
        assert_eq!(
            opened, 8,
            "parallel={parallel}: every shard was open: {err}"
        );
        assert_eq!(
            counts.closed.load(Ordering::SeqCst),
            opened,
            "parallel={parallel}: every database closed before the error returned"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_write_closes_every_database_it_opened() {
    let counts = Arc::new(Counts::default());
    counts.hang_after.store(40, Ordering::SeqCst);
    let keys: Vec<i64> = (0..2000).collect();
    let w = writer(&counts);
    let options = WriteOptions::default();
    let write = w.write(
        &keys,
        |k| Key::Int(**k),
        |k| k.to_le_bytes().to_vec(),
        &options,
    );
    // Drop the write future once it hangs inside a batch write.
    tokio::select! {
        r = write => panic!("the write should hang, got {:?}", r.map(|r| r.run_id)),
        () = counts.hung.notified() => {}
    }
    let opened = counts.opened.load(Ordering::SeqCst);
    assert!(opened > 0);
    // Closing happens on the runtime after the drop; wait for it (bounded).
    for _ in 0..500 {
        if counts.closed.load(Ordering::SeqCst) == opened {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(counts.closed.load(Ordering::SeqCst), opened);
}
