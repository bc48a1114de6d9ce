//! AFL entry point of the `scenario_bytes` target; see `traceforge_fuzz::scenario_bytes`.

fn main() {
    afl::fuzz!(|data: &[u8]| traceforge_fuzz::scenario_bytes(data));
}
