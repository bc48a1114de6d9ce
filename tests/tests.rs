//! The integration tests: one binary, one module per area. Every test drives real code through
//! its public entry points; servers bind 127.0.0.1 on port 0.

mod run;
mod support; // shared helpers: paths, the built binary, small servers // traceforge run end to end, golden verdicts, outputs, standalone load
