//! The `traceforge` binary: parse the command line, run, map the result to an exit code.

use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    // Count every panic, on any thread or task: a run that saw one cannot pass.
    traceforge::panic_watch::install();
    match std::panic::catch_unwind(cli::main) {
        Ok(code) => ExitCode::from(code),
        // The hook already printed the message. A panic is a bug, never a pass: a runtime failure.
        Err(_) => {
            // Unwinding dropped what it could; a service started elsewhere must not outlive us.
            #[cfg(unix)]
            traceforge::service::kill_all();
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                b"error: traceforge panicked (a bug); nothing it reported can be trusted\n",
            );
            ExitCode::from(cli::EXIT_RUNTIME)
        }
    }
}
