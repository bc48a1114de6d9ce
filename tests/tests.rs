//! The integration tests: one binary, one module per area. Every test drives real code through
//! its public entry points; servers bind 127.0.0.1 on port 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod otlp_receiver;
mod support; // shared helpers: paths, the built binary, small servers // an OTLP/HTTP receiver decoding with opentelemetry-proto

mod ci_report; // `run --junit` and `--summary-json`, `init`
mod cli_validate; // the binary: `validate`, `schema`, `run` on invalid input, exit codes in --help
mod control; // the proxy's control API: every operation against the OpenAPI file, atomic changes, a Python client, `proxy --control`
mod dashboard; // dashboards/traceforge-proxy.json queries only metrics a real /metrics scrape has
#[cfg(unix)]
mod example; // the shipped example service (examples/checkout) against a payments test server
mod expect; // every expectation kind passing and failing; names that refer to nothing
mod explore; // `traceforge explore`: pinned failing seeds, the same table at any --jobs, exit codes, summary JSON, budget, signals, shrinking
mod faults; // every fault kind, matcher and timing over real sockets: the client sees what the issue says
mod front_door; // the library as Rust tests use it: parse, override, play, outcomes; upstream builder
mod fuzz_regressions; // every saved fuzz input (fuzz/regressions, fuzz/corpus) replayed without AFL
mod grpc; // gRPC and HTTP/2 through the proxy: grpcio and curl as the clients
mod h2_faults; // every fault per HTTP/2 stream beside an intact neighbour, goaway, upstream.http2
mod layers; // the layers point down: nothing below the reports uses them
mod load_profile; // open loops, stalls, ramps, durations, request mix, retry policy
mod load_protocols; // the load generator over https and HTTP/2 (h2c, ALPN), a TLS entry proxy, `load --url https://`
mod load_websocket; // WebSocket targets: echoes, ws_close and ws_drop through the proxy, retries, wss://, `load --url ws://`, golden determinism
mod observe; // the request log and spans of a run and of `proxy --otlp`: the same ids run after run, rotation, a full disk, a refusing collector
mod otlp; // span export over OTLP/HTTP: exact ids, times and status at a real receiver; failing, silent and absent collectors; a full queue
mod phases; // [[phases]]: rules on for a block of requests or virtual time, off for another, at any concurrency; located errors
mod proxy; // the fault-injecting proxy: ids, faults, seeded decisions, hop-by-hop, metrics, 502/504
mod report_html; // the HTML report: the same bytes from a run, its outcomes and its shards; every chart in headless Chromium; topology
mod response_faults; // rules on the upstream's response: status classes, header conditions, delay, cut, replace, reset
mod run; // `traceforge run` end to end, golden comparisons, outputs, the standalone load generator
mod scenario_file; // rendered scenario errors, overrides, no panic on any input
mod schema; // the committed JSON schema and the shipped scenarios against it
mod serve_cli; // `traceforge upstream|proxy` as processes: printed address, SIGTERM, env and .env
#[cfg(unix)]
mod service;
mod services_run; // services as real processes: readiness, early exits, stop and SIGKILL, no process left behind
mod shards; // `run --shard K/N` in separate processes, then `merge`: exactly the single-machine run
mod shrink; // shrinking a failing seed: fewer requests, rules, lower probabilities; the .min.toml and its golden file; spec round trips
mod signals; // SIGINT/SIGTERM/SIGHUP stop run and load promptly with complete files; closed stdout
mod stateful_faults; // quota by requests and by time, per header; probability and delay ramps; fixed and Markov bursts
mod streams; // server-sent events through the proxy, the stream fault, with hyper and curl
mod tls; // https:// upstreams and TLS listeners with curl and rustls clients, certificates, validation
mod topology_file; // [[services]], [[proxies]], load.to/command and [expect.proxies]: their shape and every error
mod upstream; // the demo upstream: routes, ids, static containment, malformed bytes, shutdown
mod verdict; // a panic never passes; latencies past an hour; output folders and protected files
mod virtual_time; // the virtual clock: in-memory pipes, paused time, exact latencies
mod websocket;
mod wire_faults; // corrupt, garbage, empty, slow_read, slow_close over real sockets and HTTP/2; what the load generator records // WebSockets through the proxy: Python's websockets and tokio-tungstenite as clients, stream faults
