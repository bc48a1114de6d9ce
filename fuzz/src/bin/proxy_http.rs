//! AFL entry point of the `proxy_http` target; see `traceforge_fuzz::proxy_http`.

fn main() {
    afl::fuzz!(|data: &[u8]| traceforge_fuzz::proxy_http(data));
}
