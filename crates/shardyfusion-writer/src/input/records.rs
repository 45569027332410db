//! Record input: any iterator or stream of caller records, with key/value/columns extractors,
//! consumed once; a re-readable (`Clone`) collection is surveyed first when the routing needs
//! it (`max_keys_per_shard`, inferred or discovered CEL shards).

use std::time::Instant;

use futures::{Stream, StreamExt};
use shardyfusion_core::{DEFAULT_KEY_COL, Key, Result, WriteOptions};

use crate::RoutingContext;
use crate::result::BuildResult;
use crate::route::{self, Survey};
use crate::writer::ShardedWriter;

/// One input record as the writer sees it: its key, its value bytes and, for multi-column CEL
/// routing, its routing columns. The value is anything that views as bytes (an owned `Vec<u8>`,
/// or a slice borrowed from the caller's record, which saves a copy per row).
#[derive(Debug, Clone, PartialEq)]
pub struct Record<V = Vec<u8>> {
    /// The logical key.
    pub key: Key,
    /// The value bytes.
    pub value: V,
    /// Routing columns (multi-column CEL only).
    pub columns: Option<RoutingContext>,
}

impl<V> Record<V> {
    /// A record routed by its key alone.
    pub fn new(key: Key, value: V) -> Self {
        Record {
            key,
            value,
            columns: None,
        }
    }
}

impl ShardedWriter {
    /// Write records with key and value extractors (HASH, or key-only CEL).
    ///
    /// `records` is read once; it must be `Clone` (e.g. `&Vec<T>`) only so that routing that
    /// needs a look at every row first (`max_keys_per_shard` without `expected_rows`, inferred
    /// CEL routing values) can survey it. Streaming inputs use
    /// [`write_records`](Self::write_records) or [`write_record_stream`](Self::write_record_stream).
    ///
    /// The value extractor returns anything that views as bytes: an owned `Vec<u8>`, or a
    /// slice borrowed from the record (`|r| r.payload.as_slice()` when iterating `&records`),
    /// which saves one allocation and copy per row.
    pub async fn write<I, T, FK, FV, V>(
        &self,
        records: I,
        key: FK,
        value: FV,
        options: &WriteOptions,
    ) -> Result<BuildResult>
    where
        I: IntoIterator<Item = T> + Clone,
        FK: Fn(&T) -> Key,
        FV: Fn(&T) -> V,
        V: AsRef<[u8]>,
    {
        let extract = |r: &T| Ok(Record::new(key(r), value(r)));
        self.write_surveyed(records, extract, options).await
    }

    /// Write records with a columns extractor for multi-column CEL routing.
    pub async fn write_with_columns<I, T, FK, FV, FC, V>(
        &self,
        records: I,
        key: FK,
        value: FV,
        columns: FC,
        options: &WriteOptions,
    ) -> Result<BuildResult>
    where
        I: IntoIterator<Item = T> + Clone,
        FK: Fn(&T) -> Key,
        FV: Fn(&T) -> V,
        V: AsRef<[u8]>,
        FC: Fn(&T) -> RoutingContext,
    {
        let extract = |r: &T| {
            Ok(Record {
                key: key(r),
                value: value(r),
                columns: Some(columns(r)),
            })
        };
        self.write_surveyed(records, extract, options).await
    }

    /// Write a one-pass input of fallible records: each item is read once, in bounded memory.
    /// An `Err` item, or an extractor error, aborts the write cleanly (nothing is published and
    /// every opened shard is closed). Routing must be known up front: `num_dbs`, or
    /// `max_keys_per_shard` with [`WriteOptions::expected_rows`], or CEL `routing_values`.
    pub async fn write_records<I, T, F, V>(
        &self,
        records: I,
        extract: F,
        options: &WriteOptions,
    ) -> Result<BuildResult>
    where
        I: IntoIterator<Item = Result<T>>,
        F: Fn(&T) -> Result<Record<V>>,
        V: AsRef<[u8]>,
    {
        let plan = route::plan(self.config(), options.expected_rows, Survey::default())?;
        self.write_planned(plan, futures::stream::iter(records), extract, options)
            .await
    }

    /// [`write_records`](Self::write_records) over an async `Stream` of fallible records.
    pub async fn write_record_stream<S, T, F, V>(
        &self,
        records: S,
        extract: F,
        options: &WriteOptions,
    ) -> Result<BuildResult>
    where
        S: Stream<Item = Result<T>>,
        F: Fn(&T) -> Result<Record<V>>,
        V: AsRef<[u8]>,
    {
        let plan = route::plan(self.config(), options.expected_rows, Survey::default())?;
        self.write_planned(plan, records, extract, options).await
    }

    /// Write `records` (read once) under a routing plan fixed beforehand.
    pub(crate) async fn write_planned<S, T, F, V>(
        &self,
        plan: route::Plan,
        records: S,
        extract: F,
        options: &WriteOptions,
    ) -> Result<BuildResult>
    where
        S: Stream<Item = Result<T>>,
        F: Fn(&T) -> Result<Record<V>>,
        V: AsRef<[u8]>,
    {
        self.run(plan, DEFAULT_KEY_COL, options, async |session, router| {
            let mut records = std::pin::pin!(records);
            let mut row = 0u64;
            while let Some(item) = records.next().await {
                let at = |e| super::at_row(e, row);
                let record = item.and_then(|item| extract(&item)).map_err(at)?;
                let db_id = router
                    .route(record.key.as_key_ref(), record.columns.as_ref())
                    .map_err(at)?;
                row += 1;
                session
                    .push(db_id, record.key.as_key_ref(), record.value.as_ref())
                    .await?;
            }
            Ok(())
        })
        .await
    }

    /// A re-readable input: survey it if the routing needs to, then write it in one pass.
    async fn write_surveyed<I, T, F, V>(
        &self,
        records: I,
        extract: F,
        options: &WriteOptions,
    ) -> Result<BuildResult>
    where
        I: IntoIterator<Item = T> + Clone,
        F: Fn(&T) -> Result<Record<V>>,
        V: AsRef<[u8]>,
    {
        let survey = self.survey_records(&records, &extract, options)?;
        let plan = route::plan(self.config(), options.expected_rows, survey)?;
        let records = futures::stream::iter(records.into_iter().map(Ok));
        self.write_planned(plan, records, extract, options).await
    }

    /// One pass over a re-readable input for what the routing needs before the first row.
    fn survey_records<I, T, F, V>(
        &self,
        records: &I,
        extract: &F,
        options: &WriteOptions,
    ) -> Result<Survey>
    where
        I: IntoIterator<Item = T> + Clone,
        F: Fn(&T) -> Result<Record<V>>,
    {
        let needs = route::needs(self.config(), options.expected_rows);
        let started = Instant::now();
        let mut survey = Survey::default();
        if needs.rows {
            survey.rows = Some(records.clone().into_iter().count() as u64);
        }
        #[cfg(feature = "cel")]
        if needs.cel_results {
            let expr = route::cel_expression(self.config().sharding())?;
            let mut results = Vec::new();
            for r in records.clone() {
                let record = extract(&r)?;
                results.push(match &record.columns {
                    Some(ctx) => expr.evaluate(ctx)?,
                    None => expr.evaluate_key(record.key.as_key_ref())?,
                });
            }
            survey.cel_results = Some(results);
        }
        #[cfg(not(feature = "cel"))]
        let _ = extract;
        if needs.rows || needs.cel_results {
            survey.duration_ms = started.elapsed().as_millis() as u64;
        }
        Ok(survey)
    }
}
