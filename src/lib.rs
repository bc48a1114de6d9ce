//! TraceForge: declarative HTTP chaos scenarios, played deterministically.
//!
//! A scenario declares an upstream, the faults a proxy injects in front of it, a seed and a load
//! profile. Playing it starts the demo upstream, the fault-injecting proxy and the load generator
//! in one process, records every request's outcome, and checks the outcomes against the
//! scenario's expectations and its golden snapshot. Every random choice derives from
//! `(seed, key)`, so a scenario is the same run at any concurrency, run after run.
//!
//! # The front door
//!
//! - [`load`](fn@load) a scenario from a file or [`parse_str`] one from text, with `--set`-style
//!   [`Override`]s;
//! - [`play`] it (on the real or the virtual clock, as the scenario says) with [`RunOptions`];
//! - read the [`RunReport`]: its [`RunVerdict`] ([`RunReport::verdict`], or just
//!   [`RunReport::passed`]), the [`Summary`](record::Summary), the
//!   expectations, the golden comparison and, when asked, every [`Outcome`](record::Outcome).
//!
//! ```
//! use traceforge::RunOptions;
//!
//! let scenario = traceforge::parse_str(
//!     "checkout.toml",
//!     r#"
//!         name = "checkout"
//!         seed = 7
//!
//!         [[faults]]
//!         kind = "error"
//!         status = 503
//!         probability = 0.2
//!
//!         [load]
//!         requests = 50
//!         retries = 2
//!
//!         [expect]
//!         success_rate = 0.95
//!     "#,
//!     &["load.concurrency=8".parse()?],
//! )?;
//! let golden = std::env::temp_dir().join("traceforge-doc-golden");
//! let options = RunOptions::new(&golden).accepting().keeping_outcomes();
//! let report = traceforge::play(&scenario, &options)?;
//! assert!(report.passed(), "{:?}", report.expectations);
//! assert_eq!(report.outcomes.len(), 50);
//! assert!(report.summary.retries > 0, "the 503s were retried");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! For a test server of your own, [`upstream::builder`] spawns the demo upstream with the routes
//! you give it on `127.0.0.1:0`. [`panic_watch::install`] makes a panic in any task of a run fail
//! that run, as the `traceforge` binary does.
//!
//! # The layers
//!
//! From the bottom: the scenario file format ([`spec`]), the compiled fault rules ([`fault`]) and
//! load plan ([`load::plan`]), their validation into a [`Scenario`] ([`scenario`]), the parts that
//! run (the demo [`upstream`], the fault-injecting [`proxy`], the [`load`](mod@load) generator, the
//! recorder ([`record`]), [`expect`]ations and [`golden`] snapshots, and, on Unix, the
//! [`service`] supervisor for processes a run depends on), the [`runner`] that plays
//! them together and decides the run's verdict, and the [`report`]s of what it found (text, JSON,
//! JUnit).
//! The `traceforge` binary's command line is not part of the library. `ARCHITECTURE.md` in the
//! repository is the map.

#![forbid(unsafe_code)]

pub mod cores;
pub mod expect;
pub mod explore;
pub mod fault;
pub mod golden;
#[doc(hidden)]
pub mod ids;
pub mod k8s;
pub mod load;
pub mod observe;
pub mod panic_watch;
pub mod proxy;
pub mod record;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod schema;
#[doc(hidden)]
pub mod seed;
#[doc(hidden)]
pub mod server;
#[cfg(unix)]
pub mod service;
pub mod spec;
pub mod tls;
#[doc(hidden)]
pub mod transport;
pub mod upstream;
pub mod websocket;
pub mod wire;

pub use runner::{RunError, RunOptions, RunReport, RunVerdict, play};
pub use scenario::{Override, Scenario, ScenarioError, load, parse_str};

/// The README's Rust examples, compiled and run by `cargo test` like any doc example.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
