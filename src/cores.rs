//! Per-core runtimes: one current-thread tokio runtime per CPU the process may use, for the
//! commands that serve connections (`traceforge proxy`, `traceforge upstream`) and the closed-loop
//! load generator (`traceforge load`).
//!
//! A command's own runtime (the one `main` blocks on) is one of them; [`install`] starts the
//! others on threads of their own, each blocked on its runtime until the process exits. An accept
//! loop ([`crate::server::spawn_tcp`]) hands each accepted connection to the runtime [`next`]
//! names, round robin, and the connection is served there from start to end: its socket is
//! registered with that runtime's reactor, its tasks and timers are that runtime's. Nothing is
//! stolen between threads and no wake-up crosses one while a connection is served, which is what
//! nginx's worker processes get from `SO_REUSEPORT`; accepting on one thread and handing the
//! socket over keeps the split exact (every runtime gets every n-th connection) on any port.
//!
//! Nothing is installed in a library user's process or in `traceforge run`: [`next`] then always
//! says "here", and every connection stays on the runtime that accepted it.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;

/// The runtimes started by [`install`], and the round-robin position.
struct Cores {
    /// The extra runtimes; position 0 of the rotation is the caller's own.
    others: Vec<Handle>,
    turn: AtomicUsize,
}

static CORES: OnceLock<Cores> = OnceLock::new();

/// Starts `total - 1` threads, each running a current-thread runtime (timers and I/O enabled)
/// until the process exits; the caller's runtime is the `total`-th. Once per process: a second
/// call, or `total` below 2, starts nothing.
pub fn install(total: usize) -> std::io::Result<()> {
    if total < 2 || CORES.get().is_some() {
        return Ok(());
    }
    let mut others = Vec::with_capacity(total - 1);
    for i in 1..total {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        others.push(runtime.handle().clone());
        std::thread::Builder::new()
            .name(format!("tf-core-{i}"))
            // The runtime runs what is spawned on it through its handle for as long as the
            // process lives; the thread ends with the process.
            .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    }
    let _ = CORES.set(Cores {
        others,
        turn: AtomicUsize::new(0),
    });
    Ok(())
}

/// The runtime the next connection (or closed-loop worker) goes to: `None` for the caller's own
/// runtime, which is also the answer when nothing is installed.
pub fn next() -> Option<Handle> {
    let cores = CORES.get()?;
    let total = cores.others.len() + 1;
    match cores.turn.fetch_add(1, Ordering::Relaxed) % total {
        0 => None,
        k => cores.others.get(k - 1).cloned(),
    }
}

/// The CPUs this process may run on: its affinity mask and CPU quota, as the standard library
/// reads them (at least 1).
pub fn available() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}
