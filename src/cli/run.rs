//! `traceforge run`: play scenarios, print their reports, and turn them into one exit code.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::report::{self, Played};
use super::{EXIT_FAILED, EXIT_INVALID, EXIT_OK, EXIT_RUNTIME};
use crate::golden::{self, Verdict};
use crate::record::Format;
use crate::runner::{self, RunOptions, RunReport};
use crate::scenario::{self, Override, Scenario};

/// Arguments of `traceforge run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Scenario files, or folders of them (every `*.toml` inside), played one after another.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Stream every request's outcome to this file. With several scenarios, put `{name}` in the
    /// path (`results/{name}.json`).
    #[arg(long, short, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Format of the --output file.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// Accept this run's result as the new golden snapshot.
    #[arg(long)]
    pub accept: bool,
    /// On a mismatch, write `<name>.snap.new` even when `CI` is set (for CI to upload).
    #[arg(long)]
    pub write_new: bool,
    /// Where golden snapshots live.
    #[arg(long, value_name = "DIR", default_value = "golden")]
    pub golden_dir: PathBuf,
    /// Static files for the demo upstream (the built-in page when the folder does not exist).
    #[arg(long, value_name = "DIR", default_value = "static")]
    pub static_dir: PathBuf,
    /// Override a scenario field, validated like the file: --set load.concurrency=64
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<Override>,
    /// Runtime worker threads, 1 to 1024 (default: one per core).
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub workers: Option<usize>,
    /// Write a JUnit XML report: one test case per scenario (golden snapshot and expectations)
    /// and one per expectation.
    #[arg(long, value_name = "PATH")]
    pub junit: Option<PathBuf>,
    /// Write every scenario's summary and verdicts as JSON (`"version": 1`).
    #[arg(long, value_name = "PATH")]
    pub summary_json: Option<PathBuf>,
}

/// Expands folders into their `*.toml` files, sorted, so `run scenarios/` plays them all.
pub fn expand(files: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for f in files {
        if f.is_dir() {
            let entries =
                std::fs::read_dir(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(format!("{} holds no .toml scenario", f.display()));
            }
            out.extend(found);
        } else {
            out.push(f.clone());
        }
    }
    Ok(out)
}

fn output_for(template: &Path, name: &str, several: bool) -> Result<PathBuf, String> {
    let text = template.to_string_lossy();
    if text.contains("{name}") {
        return Ok(PathBuf::from(text.replace("{name}", name)));
    }
    if several {
        return Err(format!(
            "--output {} would be overwritten by each scenario; put {{name}} in it, like results/{{name}}.json",
            template.display()
        ));
    }
    Ok(template.to_path_buf())
}

pub fn run(args: &RunArgs) -> u8 {
    let files = match expand(&args.files) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_INVALID;
        }
    };
    // Validate everything first: an invalid file means nothing runs.
    let mut scenarios = Vec::new();
    let mut invalid = false;
    for file in &files {
        match scenario::load(file, &args.overrides) {
            Ok(s) => scenarios.push((file.clone(), s)),
            Err(e) => {
                eprintln!("{e}");
                invalid = true;
            }
        }
    }
    if invalid {
        eprintln!("error: nothing was run: fix the scenario errors above");
        return EXIT_INVALID;
    }
    let several = scenarios.len() > 1;
    let mut outputs = Vec::new();
    for (_, s) in &scenarios {
        match args
            .output
            .as_deref()
            .map(|o| output_for(o, &s.name, several))
            .transpose()
        {
            Ok(o) => outputs.push(o),
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_INVALID;
            }
        }
    }

    let runtime = match super::runtime(args.workers, true) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return EXIT_RUNTIME;
        }
    };
    let stop = super::stop_on_ctrl_c(&runtime);
    let policy = golden::Policy::from_env(args.accept, args.write_new);
    let static_dir = args.static_dir.is_dir().then(|| args.static_dir.clone());

    let mut played: Vec<Played> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    let mut worst = EXIT_OK;
    for ((file, scenario), output) in scenarios.iter().zip(outputs) {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        println!("==> {} ({})", scenario.name, file.display());
        if !scenario.description.is_empty() {
            println!("    {}", scenario.description);
        }
        let progress = Arc::new(AtomicU64::new(0));
        let options = RunOptions {
            output,
            format: args.format,
            golden_dir: args.golden_dir.clone(),
            golden: policy,
            static_dir: static_dir.clone(),
            progress: progress.clone(),
            stop: stop.clone(),
        };
        let ticker = Ticker::start(progress, scenario.load.profile.fixed_count());
        let result = runner::play_scenario(&runtime, scenario, &options);
        drop(ticker);
        let (result, text) = match result {
            Ok(report) => {
                let text = render_report(scenario, &report);
                print!("{text}");
                let (code, _, _) = verdict(&report);
                worst = worst.max(code);
                (Ok(report), text)
            }
            Err(e) => {
                eprintln!("error: {}: {e}", scenario.name);
                worst = worst.max(EXIT_RUNTIME);
                (Err(e.to_string()), format!("error: {e}\n"))
            }
        };
        played.push(Played {
            file: file.clone(),
            name: scenario.name.clone(),
            result,
        });
        texts.push(text);
        println!();
    }
    if played.len() > 1 {
        println!("{}", render_results(&played));
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    if let Some(path) = &args.junit {
        let written = std::fs::File::create(path)
            .and_then(|f| report::write_junit(std::io::BufWriter::new(f), &played, &texts));
        if let Err(e) = written {
            eprintln!("error: cannot write {}: {e}", path.display());
            worst = worst.max(EXIT_RUNTIME);
        }
    }
    if let Some(path) = &args.summary_json {
        let mut text = serde_json::to_string_pretty(&report::summary_json(&played))
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        text.push('\n');
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("error: cannot write {}: {e}", path.display());
            worst = worst.max(EXIT_RUNTIME);
        }
    }
    worst
}

pub(crate) fn verdict(report: &RunReport) -> (u8, &'static str, String) {
    if report.interrupted {
        return (
            EXIT_RUNTIME,
            "STOPPED",
            format!("interrupted after {} requests", report.summary.requests),
        );
    }
    let mut why = Vec::new();
    for v in report.expectations.iter().filter(|v| !v.passed) {
        why.push(format!(
            "{} {} (measured {})",
            v.name, v.threshold, v.measured
        ));
    }
    match &report.golden {
        Some(Verdict::Mismatch { .. }) => why.push("golden snapshot differs".to_string()),
        Some(Verdict::Missing { .. }) => why.push("no golden snapshot yet".to_string()),
        _ => {}
    }
    if why.is_empty() {
        (EXIT_OK, "PASS", String::new())
    } else {
        (EXIT_FAILED, "FAIL", why.join("; "))
    }
}

/// The report printed after each scenario: summary, expectations, golden verdict.
pub fn render_report(scenario: &Scenario, report: &RunReport) -> String {
    let mut out = String::new();
    for line in report.summary.render_table().lines() {
        let _ = writeln!(out, "    {line}");
    }
    if let Some((path, n)) = &report.output {
        let _ = writeln!(out, "    outcomes:     {n} written to {}", path.display());
    }
    if !report.expectations.is_empty() {
        out.push('\n');
        out.push_str(&render_verdicts(&report.expectations));
    }
    out.push('\n');
    match &report.golden {
        None => {
            let _ = writeln!(out, "    golden: not compared (the run was interrupted)");
        }
        Some(Verdict::Matched { path }) => {
            let _ = writeln!(out, "    golden: matches {}", path.display());
        }
        Some(Verdict::Accepted { path }) => {
            let _ = writeln!(out, "    golden: accepted, wrote {}", path.display());
        }
        Some(Verdict::Missing { path, new }) => {
            let _ = writeln!(out, "    golden: {} does not exist yet", path.display());
            if let Some(new) = new {
                let _ = writeln!(out, "    wrote {} for review", new.display());
            }
            let _ = writeln!(
                out,
                "    hint: review and accept with `cargo insta review`, or re-run with --accept"
            );
        }
        Some(Verdict::Mismatch { path, new, diff }) => {
            let _ = writeln!(out, "    golden: this run differs from {}", path.display());
            for line in diff.lines() {
                let _ = writeln!(out, "    {line}");
            }
            match new {
                Some(new) => {
                    let _ = writeln!(
                        out,
                        "    wrote {} for review: `cargo insta review` (or re-run with --accept)",
                        new.display()
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "    (CI is set: no .snap.new written; pass --write-new to get one)"
                    );
                }
            }
        }
    }
    let (_, label, why) = verdict(report);
    let _ = write!(out, "{label} {}", scenario.name);
    if !why.is_empty() {
        let _ = write!(out, ": {why}");
    }
    out.push('\n');
    out
}

/// The verdict table: one row per expectation, columns as wide as their longest cell.
pub fn render_verdicts(verdicts: &[crate::expect::Verdict]) -> String {
    let width = |f: fn(&crate::expect::Verdict) -> &str, title: &str| {
        verdicts
            .iter()
            .map(|v| f(v).len())
            .chain([title.len()])
            .max()
            .unwrap_or(0)
    };
    let name = width(|v| &v.name, "expectation");
    let threshold = width(|v| &v.threshold, "threshold");
    let measured = width(|v| &v.measured, "measured");
    let mut out = format!(
        "    {:<name$}  {:<threshold$}  {:<measured$}  result\n",
        "expectation", "threshold", "measured"
    );
    for v in verdicts {
        let _ = writeln!(
            out,
            "    {:<name$}  {:<threshold$}  {:<measured$}  {}",
            v.name,
            v.threshold,
            v.measured,
            if v.passed { "pass" } else { "FAIL" }
        );
    }
    out
}

fn render_results(played: &[Played]) -> String {
    let width = played
        .iter()
        .map(|p| p.name.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let mut out = format!("{:<width$}  result   details\n", "scenario");
    let mut passed = 0;
    for p in played {
        let (label, why) = p.verdict();
        if label == "pass" {
            passed += 1;
        }
        let label = label.to_ascii_uppercase();
        let row = format!("{:<width$}  {label:<7}  {why}", p.name);
        let _ = writeln!(out, "{}", row.trim_end());
    }
    let _ = write!(out, "{passed} passed, {} failed", played.len() - passed);
    out
}

/// A progress line on stderr while a run is going, only when stderr is a terminal.
struct Ticker {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    fn start(progress: Arc<AtomicU64>, total: Option<u64>) -> Ticker {
        let done = Arc::new(AtomicBool::new(false));
        let thread = std::io::stderr().is_terminal().then(|| {
            let done = done.clone();
            std::thread::spawn(move || {
                let started = std::time::Instant::now();
                let mut shown = false;
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                    // Quick runs finish before the first line; only longer ones show progress.
                    if started.elapsed() >= Duration::from_millis(500) {
                        let n = progress.load(Ordering::Relaxed);
                        match total {
                            Some(total) => eprint!(
                                "\r    {n}/{total} requests ({:.0}%)",
                                n as f64 * 100.0 / total.max(1) as f64
                            ),
                            None => eprint!(
                                "\r    {n} requests, {:.0}s",
                                started.elapsed().as_secs_f64()
                            ),
                        }
                        shown = true;
                    }
                }
                if shown {
                    eprint!("\r\x1b[2K");
                }
            })
        });
        Ticker { done, thread }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
