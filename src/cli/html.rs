//! `traceforge report`, and the HTML report's sections for `run --report`.

use std::path::PathBuf;

use super::{EXIT_FAILED, EXIT_INVALID, EXIT_OK, EXIT_RUNTIME};
use traceforge::report::{self, Played};
use traceforge::runner::{self, MergeError, RunVerdict};
use traceforge::scenario::Override;

/// Arguments of `traceforge report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The outcomes of a run (`run --output FILE --format jsonl`, or `--format json`), or the
    /// bundles of every shard of a sharded run.
    #[arg(required = true, value_name = "RESULTS")]
    pub inputs: Vec<PathBuf>,
    /// The scenario the run played (required for an outcomes file) [default for bundles: the path
    /// the shards were given].
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// The `--set` overrides the run was played with.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<Override>,
    /// Where to write the HTML report.
    #[arg(long, short, value_name = "PATH")]
    pub output: PathBuf,
    /// Where golden snapshots live [default: as `run` finds them for the scenario file].
    #[arg(long, value_name = "DIR")]
    pub golden_dir: Option<PathBuf>,
}

pub fn report(args: &ReportArgs) -> u8 {
    // Where the golden file is depends on the scenario file: for bundles, the first one names it.
    let file = match &args.scenario {
        Some(f) => f.clone(),
        None => match traceforge::record::bundle::read_trailer(&args.inputs[0]) {
            Ok(t) => PathBuf::from(t.file),
            Err(traceforge::record::bundle::BundleError::Incomplete { .. }) => {
                errln!(
                    "error: {} is not a bundle, so it does not name its scenario: give it with --scenario FILE",
                    args.inputs[0].display()
                );
                return EXIT_INVALID;
            }
            Err(e) => {
                errln!("error: {e}");
                return EXIT_INVALID;
            }
        },
    };
    let golden_dir = super::run::locate(args.golden_dir.as_deref(), "golden", &file).dir;
    let (scenario, report) = match runner::rebuild(
        &args.inputs,
        args.scenario.as_deref(),
        &args.overrides,
        &golden_dir,
    ) {
        Ok(rebuilt) => rebuilt,
        Err(e @ (MergeError::Invalid(_) | MergeError::Bundle(_) | MergeError::Scenario(_))) => {
            errln!("error: {e}");
            errln!("error: no report was written");
            return EXIT_INVALID;
        }
        Err(MergeError::Run(e)) => {
            errln!("error: {e}");
            return EXIT_RUNTIME;
        }
    };
    let text = report::text::report_string(&report, None);
    let played = vec![Played {
        file,
        name: scenario.name.clone(),
        result: Ok(report),
        text,
    }];
    let scenarios = vec![scenario];
    let sections = report::html::sections(&played, &scenarios);
    let written = super::run::write_file(&args.output, |w| report::html::write_html(w, &sections));
    if let Err(e) = written {
        errln!("error: {e}");
        return EXIT_RUNTIME;
    }
    let verdict = played[0].verdict();
    outln!(
        "wrote {} ({}: {})",
        args.output.display(),
        played[0].name,
        verdict.label()
    );
    match verdict {
        RunVerdict::Passed => EXIT_OK,
        RunVerdict::Failed(_) => EXIT_FAILED,
        RunVerdict::Stopped(_) | RunVerdict::Error(_) => EXIT_RUNTIME,
    }
}
