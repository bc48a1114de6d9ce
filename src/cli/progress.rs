//! The progress bar on stderr while a scenario plays, drawn by `indicatif`: nothing when stderr
//! is not a terminal (CI logs, pipes, tests), nothing for runs that end before it would help.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;

/// Quick runs finish before this; only longer ones show progress.
const SHOW_AFTER: Duration = Duration::from_millis(500);
/// How often the bar reads the runner's request count.
const REFRESH: Duration = Duration::from_millis(200);

/// The bar of one scenario; dropping it stops it and clears its line.
pub struct Progress {
    bar: ProgressBar,
    poll: JoinHandle<()>,
    runtime: Handle,
}

impl Progress {
    /// Shows `done` (the requests the runner has recorded) out of `total` when the load has a
    /// fixed count, else a count and the elapsed time.
    pub fn start(runtime: &Runtime, done: Arc<AtomicU64>, total: Option<u64>) -> Progress {
        // Hidden until SHOW_AFTER; stderr's target then draws only on a terminal.
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::hidden());
        bar.set_style(style(total.is_some()));
        let poll = runtime.spawn({
            let bar = bar.clone();
            async move {
                tokio::time::sleep(SHOW_AFTER).await;
                bar.set_draw_target(ProgressDrawTarget::stderr());
                loop {
                    // A new count redraws; an unchanged one still moves the spinner and the clock.
                    match done.load(Ordering::Relaxed) {
                        n if n == bar.position() => bar.tick(),
                        n => bar.set_position(n),
                    }
                    tokio::time::sleep(REFRESH).await;
                }
            }
        });
        Progress {
            bar,
            poll,
            runtime: runtime.handle().clone(),
        }
    }
}

fn style(counted: bool) -> ProgressStyle {
    let template = if counted {
        "    {bar:30} {pos}/{len} requests ({percent}%)"
    } else {
        "    {spinner} {pos} requests, {elapsed}"
    };
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.poll.abort();
        // Wait for the task to be gone, so it cannot draw after the line is cleared. Drop runs on
        // the CLI's thread, outside the runtime, where blocking is allowed.
        if Handle::try_current().is_err() {
            let _ = self.runtime.block_on(&mut self.poll);
        }
        self.bar.finish_and_clear();
    }
}
