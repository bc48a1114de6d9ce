//! `traceforge upstream` and `traceforge proxy`: the two servers on their own.

/// Arguments of `traceforge upstream`.
#[derive(Debug, clap::Args)]
pub struct UpstreamArgs {}

/// Arguments of `traceforge proxy`.
#[derive(Debug, clap::Args)]
pub struct ProxyArgs {}

pub fn upstream(_args: &UpstreamArgs) -> u8 {
    eprintln!("error: `traceforge upstream` is not built yet");
    super::EXIT_RUNTIME
}

pub fn proxy(_args: &ProxyArgs) -> u8 {
    eprintln!("error: `traceforge proxy` is not built yet");
    super::EXIT_RUNTIME
}
