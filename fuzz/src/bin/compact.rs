//! AFL entry point of the `compact` target; see `traceforge_fuzz::compact`.

fn main() {
    afl::fuzz!(|data: &[u8]| traceforge_fuzz::compact(data));
}
