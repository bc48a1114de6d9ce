//! How `run` and `load` stop: SIGINT, SIGTERM and SIGHUP all cancel the run's token at once, which
//! cuts every wait short (backoffs, timeouts, stalled responses); the run then completes its files
//! and reports STOPPED (exit 3). A second signal does not wait for that: it completes the open
//! files and the reports right there and exits with 3.

use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

/// What the signal watcher shares with the command it guards.
#[derive(Debug, Clone)]
pub(crate) struct Signals {
    /// Cancelled by the first signal.
    pub stop: CancellationToken,
    received: Arc<Mutex<Option<&'static str>>>,
}

impl Signals {
    /// The name of the first signal received (`SIGTERM`), if any.
    pub fn received(&self) -> Option<&'static str> {
        *self.received.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Starts watching for the stop signals on `runtime`. The handlers are in place when this returns,
/// so a signal sent after it can never kill the process with its files half written. `force` runs
/// on a second signal, just before the process exits with `exit_code`.
pub(crate) fn watch(
    runtime: &tokio::runtime::Runtime,
    exit_code: u8,
    force: impl FnOnce() + Send + 'static,
) -> std::io::Result<Signals> {
    let signals = Signals {
        stop: CancellationToken::new(),
        received: Arc::new(Mutex::new(None)),
    };
    let _entered = runtime.enter();
    let mut next = listen()?;
    let shared = signals.clone();
    runtime.spawn(async move {
        let Some(first) = next.recv().await else {
            return;
        };
        *shared
            .received
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(first);
        shared.stop.cancel();
        if next.recv().await.is_some() {
            force();
            std::process::exit(i32::from(exit_code));
        }
    });
    Ok(signals)
}

/// The stop signals as one stream of their names.
#[cfg(unix)]
fn listen() -> std::io::Result<tokio::sync::mpsc::UnboundedReceiver<&'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    for (kind, name) in [
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::hangup(), "SIGHUP"),
    ] {
        let mut stream = signal(kind)?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(name).is_err() {
                    return;
                }
            }
        });
    }
    Ok(rx)
}

#[cfg(not(unix))]
fn listen() -> std::io::Result<tokio::sync::mpsc::UnboundedReceiver<&'static str>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if tx.send("Ctrl-C").is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
