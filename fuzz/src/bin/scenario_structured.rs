//! AFL entry point of the `scenario_structured` target; see `traceforge_fuzz::scenario_structured`.

fn main() {
    afl::fuzz!(|data: &[u8]| traceforge_fuzz::scenario_structured(data));
}
