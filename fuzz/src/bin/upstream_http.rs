//! AFL entry point of the `upstream_http` target; see `traceforge_fuzz::upstream_http`.

fn main() {
    afl::fuzz!(|data: &[u8]| traceforge_fuzz::upstream_http(data));
}
