//! One test per configuration rule: the error kind is ConfigValidation and the message names the
//! offending value.

use std::time::Duration;

use shardyfusion_core::{
    CelColumnType, Error, ErrorKind, KeyEncoding, RetryConfig, S3ConnectionOptions, ShardingSpec,
    WriteConfig, WriteConfigBuilder, WriteOptions,
};

#[track_caller]
fn assert_config_err<T: std::fmt::Debug>(r: Result<T, Error>, needle: &str) {
    let err = r.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConfigValidation, "{err}");
    assert!(
        err.message().contains(needle),
        "message {:?} should contain {needle:?}",
        err.message()
    );
}

fn hash(prefix: &str) -> WriteConfigBuilder {
    WriteConfig::builder(prefix).num_dbs(4)
}

fn cel() -> WriteConfigBuilder {
    WriteConfig::builder("s3://b/p").sharding(ShardingSpec::cel(
        "region",
        [("region", CelColumnType::String)],
    ))
}

#[test]
fn valid_configs_build() {
    hash("s3://b/p").build().unwrap();
    hash("file:///tmp/x").build().unwrap();
    hash("./relative/dir").build().unwrap();
    hash("memory://t/p").build().unwrap();
    cel().build().unwrap();
    WriteConfig::builder("s3://b/p")
        .sharding(ShardingSpec::hash_with_max_keys_per_shard(10))
        .build()
        .unwrap();
}

#[test]
fn prefix_empty() {
    assert_config_err(hash("").build(), "must not be empty");
}

#[test]
fn prefix_unknown_scheme() {
    assert_config_err(hash("gs://bucket/p").build(), "\"gs\"");
}

#[test]
fn prefix_empty_bucket() {
    assert_config_err(hash("s3:///p").build(), "\"s3:///p\"");
}

#[test]
fn prefix_empty_key() {
    assert_config_err(hash("s3://bucket").build(), "\"s3://bucket\"");
    assert_config_err(hash("s3://bucket/").build(), "\"s3://bucket/\"");
}

#[test]
fn prefix_file_not_absolute_or_root() {
    assert_config_err(hash("file://rel/dir").build(), "\"file://rel/dir\"");
    assert_config_err(hash("file:///").build(), "\"file:///\"");
}

#[test]
fn shard_prefix_segment() {
    assert_config_err(hash("s3://b/p").shard_prefix("a/b").build(), "\"a/b\"");
    assert_config_err(hash("s3://b/p").shard_prefix("..").build(), "\"..\"");
    assert_config_err(hash("s3://b/p").shard_prefix("").build(), "shard_prefix");
}

#[test]
fn run_registry_prefix_segment() {
    assert_config_err(
        hash("s3://b/p").run_registry_prefix("r\\s").build(),
        "run_registry_prefix",
    );
}

#[test]
fn db_path_template_subset() {
    assert_config_err(
        hash("s3://b/p").db_path_template("db={shard:05d}").build(),
        "\"db={shard:05d}\"",
    );
    assert_config_err(
        hash("s3://b/p").db_path_template("db={db_id:x}").build(),
        "\"db={db_id:x}\"",
    );
}

#[test]
fn run_id_rules() {
    assert_config_err(hash("s3://b/p").run_id("a/b").build(), "\"a/b\"");
    assert_config_err(hash("s3://b/p").run_id("").build(), "run_id");
}

#[test]
fn key_encoding_known() {
    assert_config_err("u16be".parse::<KeyEncoding>(), "'u16be'");
}

#[test]
fn batch_size_positive() {
    assert_config_err(
        hash("s3://b/p").batch_size(0).build(),
        "batch_size must be > 0, got 0",
    );
}

#[test]
fn hash_num_dbs_positive() {
    assert_config_err(
        WriteConfig::builder("s3://b/p").num_dbs(0).build(),
        "num_dbs must be > 0, got 0",
    );
}

#[test]
fn hash_exactly_one_of_num_dbs_and_max_keys() {
    assert_config_err(
        WriteConfig::builder("s3://b/p")
            .num_dbs(4)
            .sharding(ShardingSpec::hash_with_max_keys_per_shard(9))
            .build(),
        "num_dbs (4) and max_keys_per_shard (9)",
    );
    assert_config_err(WriteConfig::builder("s3://b/p").build(), "neither");
}

#[test]
fn hash_max_keys_positive() {
    assert_config_err(
        WriteConfig::builder("s3://b/p")
            .sharding(ShardingSpec::hash_with_max_keys_per_shard(0))
            .build(),
        "max_keys_per_shard must be > 0, got 0",
    );
}

#[test]
fn cel_forbids_num_dbs() {
    assert_config_err(cel().num_dbs(3).build(), "num_dbs (3)");
}

#[test]
fn cel_forbids_max_keys_per_shard() {
    let mut spec = ShardingSpec::cel("k", [("k", CelColumnType::Int)]);
    spec.max_keys_per_shard = Some(5);
    assert_config_err(
        WriteConfig::builder("s3://b/p").sharding(spec).build(),
        "max_keys_per_shard (5)",
    );
}

#[test]
fn cel_expr_non_empty() {
    let spec = ShardingSpec::cel("  ", [("k", CelColumnType::Int)]);
    assert_config_err(
        WriteConfig::builder("s3://b/p").sharding(spec).build(),
        "\"  \"",
    );
}

#[test]
fn cel_columns_non_empty_and_typed() {
    let spec = ShardingSpec::cel::<&str>("k", []);
    assert_config_err(
        WriteConfig::builder("s3://b/p").sharding(spec).build(),
        "cel_columns",
    );
    assert_config_err("varchar".parse::<CelColumnType>(), "\"varchar\"");
}

#[test]
fn cel_routing_values_valid() {
    let spec =
        ShardingSpec::cel("r", [("r", CelColumnType::String)]).with_routing_values(["eu", "eu"]);
    assert_config_err(
        WriteConfig::builder("s3://b/p").sharding(spec).build(),
        "\"eu\" appears twice",
    );
    let spec = ShardingSpec::cel("r", [("r", CelColumnType::String)])
        .with_routing_values(vec![shardyfusion_core::RoutingValue::Int(1), "x".into()]);
    assert_config_err(
        WriteConfig::builder("s3://b/p").sharding(spec).build(),
        "1 and \"x\"",
    );
}

#[test]
fn cel_routing_values_and_inference_exclusive() {
    let spec = ShardingSpec::cel("r", [("r", CelColumnType::String)])
        .with_routing_values(["a"])
        .infer_routing_values();
    assert_config_err(
        WriteConfig::builder("s3://b/p").sharding(spec).build(),
        "mutually exclusive",
    );
}

#[test]
fn custom_manifest_fields_object() {
    assert_config_err(
        hash("s3://b/p")
            .custom_manifest_fields(serde_json::json!([1, 2]))
            .build(),
        "[1,2]",
    );
    let ok = hash("s3://b/p")
        .custom_manifest_fields(serde_json::json!({"team": "ml"}))
        .build()
        .unwrap();
    assert_eq!(ok.custom_manifest_fields()["team"], "ml");
}

#[test]
fn retry_backoff_finite_and_multiplier_at_least_one() {
    assert_config_err(RetryConfig::new(3, Duration::from_secs(1), 0.5), "got 0.5");
    assert_config_err(
        RetryConfig::new(3, Duration::from_secs(1), f64::NAN),
        "got NaN",
    );
    let mut bad = RetryConfig::default();
    bad.backoff_multiplier = f64::INFINITY;
    assert_config_err(hash("s3://b/p").shard_retry(bad).build(), "got inf");
}

#[test]
fn connection_options_checked_in_config() {
    assert_config_err(
        hash("s3://b/p")
            .s3_connection_options(S3ConnectionOptions::new().with_max_attempts(0))
            .build(),
        "max_attempts must be >= 1, got 0",
    );
    assert_config_err(
        hash("s3://b/p")
            .manifest_s3_connection_options(S3ConnectionOptions::new().with_endpoint_url("ftp://x"))
            .build(),
        "\"ftp://x\"",
    );
}

#[test]
fn write_option_sizes_positive() {
    assert_config_err(
        WriteOptions::builder().max_queue_size(0).build(),
        "max_queue_size must be > 0, got 0",
    );
    assert_config_err(
        WriteOptions::builder()
            .max_parallel_bytes_in_flight(0)
            .build(),
        "max_parallel_bytes_in_flight",
    );
    assert_config_err(
        WriteOptions::builder()
            .max_parallel_bytes_per_worker(0)
            .build(),
        "max_parallel_bytes_per_worker",
    );
    assert_config_err(
        WriteOptions::builder().max_total_batched_items(0).build(),
        "max_total_batched_items must be > 0, got 0",
    );
    assert_config_err(
        WriteOptions::builder().max_total_batched_bytes(0).build(),
        "max_total_batched_bytes must be > 0, got 0",
    );
}

#[test]
fn write_option_rates_positive() {
    assert_config_err(
        WriteOptions::builder().max_writes_per_second(0.0).build(),
        "max_writes_per_second must be a finite number > 0, got 0",
    );
    assert_config_err(
        WriteOptions::builder()
            .max_write_bytes_per_second(-5.0)
            .build(),
        "got -5",
    );
    assert_config_err(
        WriteOptions::builder()
            .max_writes_per_second(f64::INFINITY)
            .build(),
        "got inf",
    );
}

#[test]
fn shard_id_col_rules() {
    assert_config_err(
        WriteOptions::builder().shard_id_col("").build(),
        "shard_id_col must not be empty",
    );
    let opts = WriteOptions::builder().shard_id_col("sid").build().unwrap();
    assert_config_err(opts.check_columns(["key", "sid"]), "\"sid\"");
    opts.check_columns(["key", "value"]).unwrap();
    assert_eq!(WriteOptions::default().shard_id_col, "_shard_id");
}
