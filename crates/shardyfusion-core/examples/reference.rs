//! Prints a generated reference document; used by `cargo xtask codegen`.
//!
//! Usage: `cargo run -p shardyfusion-core --example reference -- errors|metrics`

#![allow(clippy::print_stdout)]

fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    let text = match which.as_str() {
        "errors" => shardyfusion_core::reference::errors_markdown(),
        "metrics" => shardyfusion_core::reference::metrics_markdown(),
        other => {
            eprintln!("unknown reference {other:?}: expected errors or metrics");
            std::process::exit(2);
        }
    };
    print!("{text}");
}
