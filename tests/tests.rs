//! The integration tests: one binary, one module per area. Every test drives real code through
//! its public entry points; servers bind 127.0.0.1 on port 0.

mod support; // shared helpers: paths, the built binary, small servers

mod proxy; // the fault-injecting proxy: ids, faults, seeded decisions, hop-by-hop, metrics, 502/504
mod serve_cli; // `traceforge upstream|proxy` as processes: printed address, SIGTERM, env and .env
mod upstream; // the demo upstream: routes, ids, static containment, malformed bytes, shutdown
