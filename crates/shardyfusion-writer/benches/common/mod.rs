//! What the write benchmarks share: the process's peak resident memory, shards that drop
//! their rows.

/// Peak RSS of this process in MiB (`VmHWM` of `/proc/self/status`).
pub(crate) fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Shards that drop every batch (to tell the writer's own cost, in time and memory, from SlateDB's).
#[derive(Debug)]
pub(crate) struct NullFactory;
pub(crate) struct Null;

#[async_trait::async_trait]
impl shardyfusion_writer::AdapterFactory for NullFactory {
    async fn open(
        &self,
        _: &str,
        _: &std::path::Path,
        _: u32,
    ) -> shardyfusion_core::Result<Box<dyn shardyfusion_writer::ShardAdapter>> {
        Ok(Box::new(Null))
    }
}

#[async_trait::async_trait]
impl shardyfusion_writer::ShardAdapter for Null {
    async fn write_batch(
        &mut self,
        _: shardyfusion_writer::KvBatch,
    ) -> shardyfusion_core::Result<()> {
        Ok(())
    }
    async fn flush(&mut self) -> shardyfusion_core::Result<()> {
        Ok(())
    }
    async fn seal(&mut self) -> shardyfusion_core::Result<()> {
        Ok(())
    }
    fn db_bytes(&self) -> u64 {
        0
    }
    async fn close(&mut self) -> shardyfusion_core::Result<()> {
        Ok(())
    }
}
