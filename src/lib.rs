//! TraceForge: declarative HTTP chaos scenarios.
//!
//! A scenario file declares an upstream, the faults a proxy injects in front of it, a seed and a load
//! profile. The library parses and validates scenarios ([`scenario`]), compiles their fault rules
//! into a pure, seeded decision function ([`fault`]), and derives every random choice from
//! `(seed, key)` ([`seed`]). The servers every scenario plays against are the demo [`upstream`]
//! and the fault-injecting [`proxy`], both built on [`server`]. The `traceforge` binary is a thin
//! layer over it ([`cli`]).

#![forbid(unsafe_code)]

pub mod cli;
pub mod expect;
pub mod fault;
pub mod golden;
pub mod ids;
pub mod load;
pub mod panic_watch;
pub mod proxy;
pub mod record;
pub mod runner;
pub mod scenario;
pub mod schema;
pub mod seed;
pub mod server;
pub mod spec;
pub mod transport;
pub mod upstream;
pub mod wire;

pub use scenario::{Scenario, ScenarioError, load, parse_str};
