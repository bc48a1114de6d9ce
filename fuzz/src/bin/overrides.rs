//! AFL entry point of the `overrides` target; see `traceforge_fuzz::overrides`.

fn main() {
    afl::fuzz!(|data: &[u8]| traceforge_fuzz::overrides(data));
}
