//! `traceforge merge`: judge the result bundles of a sharded run together.

use std::path::PathBuf;

use super::{EXIT_FAILED, EXIT_INVALID, EXIT_OK, EXIT_RUNTIME};
use traceforge::golden;
use traceforge::record::{Format, OpenFiles};
use traceforge::report::{self, Played};
use traceforge::runner::{self, MergeError, RunOptions, RunVerdict};

/// Arguments of `traceforge merge`.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The bundles of every shard of one run (`traceforge run --shard K/N --bundle PATH`), in any
    /// order.
    #[arg(required = true, value_name = "BUNDLE")]
    pub bundles: Vec<PathBuf>,
    /// The scenario file [default: the path the shards were given, from the working directory].
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Write every request's outcome, all shards together, to this file.
    #[arg(long, short, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Format of the --output file.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// Accept the merged result as the new golden snapshot.
    #[arg(long)]
    pub accept: bool,
    /// On a mismatch, write `<name>.snap.new` even when `CI` is set.
    #[arg(long)]
    pub write_new: bool,
    /// Where golden snapshots live [default: as `run` finds them for the scenario file].
    #[arg(long, value_name = "DIR")]
    pub golden_dir: Option<PathBuf>,
    /// Write a JUnit XML report, as `run --junit` does.
    #[arg(long, value_name = "PATH")]
    pub junit: Option<PathBuf>,
    /// Write the summary and verdicts as JSON, as `run --summary-json` does.
    #[arg(long, value_name = "PATH")]
    pub summary_json: Option<PathBuf>,
    /// Write the merged run's HTML report, as `run --report` does.
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
}

pub fn merge(args: &MergeArgs) -> u8 {
    // Where the golden file is depends on the scenario file: the first bundle names it.
    let file = match &args.scenario {
        Some(f) => f.clone(),
        None => match traceforge::record::bundle::read_trailer(&args.bundles[0]) {
            Ok(t) => PathBuf::from(t.file),
            Err(e) => {
                errln!("error: {e}");
                return EXIT_INVALID;
            }
        },
    };
    let golden_dir = super::run::locate(args.golden_dir.as_deref(), "golden", &file).dir;
    let mut options = RunOptions::new(golden_dir);
    options.golden = golden::Policy::from_env(args.accept, args.write_new);
    options.output = args.output.clone();
    options.format = args.format;
    options.open_files = OpenFiles::default();
    options.timeline = args.report.is_some();
    let mut merged_scenario = None;
    let (name, result) = match runner::merge(&args.bundles, args.scenario.as_deref(), &options) {
        Ok((scenario, report)) => {
            outln!(
                "==> {} ({}), merged from {} bundle{}",
                scenario.name,
                file.display(),
                args.bundles.len(),
                if args.bundles.len() == 1 { "" } else { "s" }
            );
            let name = scenario.name.clone();
            merged_scenario = Some(scenario);
            (name, Ok(report))
        }
        Err(e @ (MergeError::Invalid(_) | MergeError::Bundle(_) | MergeError::Scenario(_))) => {
            errln!("error: {e}");
            errln!("error: nothing was merged");
            return EXIT_INVALID;
        }
        Err(MergeError::Run(e)) => {
            errln!("error: {e}");
            (String::new(), Err(e.to_string()))
        }
    };
    let text = match &result {
        Ok(report) => {
            let text = report::text::report_string(report, None);
            out!("{text}");
            text
        }
        Err(e) => format!("error: {e}\n"),
    };
    let played = vec![Played {
        file: file.clone(),
        name,
        result,
        text,
    }];
    let mut code = match played[0].verdict() {
        RunVerdict::Passed => EXIT_OK,
        RunVerdict::Failed(_) => EXIT_FAILED,
        RunVerdict::Stopped(_) | RunVerdict::Error(_) => EXIT_RUNTIME,
    };
    if let Some(path) = &args.junit {
        if let Err(e) = super::run::write_file(path, |w| report::junit::write_junit(w, &played)) {
            errln!("error: {e}");
            code = code.max(EXIT_RUNTIME);
        }
    }
    if let Some(path) = &args.report {
        let scenarios: Vec<_> = merged_scenario.into_iter().collect();
        let sections = report::html::sections(&played, &scenarios);
        if let Err(e) = super::run::write_file(path, |w| report::html::write_html(w, &sections)) {
            errln!("error: {e}");
            code = code.max(EXIT_RUNTIME);
        }
    }
    if let Some(path) = &args.summary_json {
        if let Err(e) = super::run::write_file(path, |w| report::json::write_summary(w, &played)) {
            errln!("error: {e}");
            code = code.max(EXIT_RUNTIME);
        }
    }
    code
}
