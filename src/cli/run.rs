//! `traceforge run`: play scenarios, print their reports, and turn them into one exit code.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::report::{self, Played};
use super::{EXIT_FAILED, EXIT_INVALID, EXIT_OK, EXIT_RUNTIME};
use crate::golden::{self, Verdict};
use crate::record::{Format, OpenFiles};
use crate::runner::{self, RunOptions, RunReport};
use crate::scenario::{self, Override, Scenario};

/// Arguments of `traceforge run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Scenario files, or folders of them (every `*.toml` inside), played one after another.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Stream every request's outcome to this file (missing folders are created). With several
    /// scenarios, put `{name}` in the path (`results/{name}.json`).
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
    /// Where golden snapshots live [default: golden/ in the working directory if it exists, else
    /// the golden/ folder beside the scenario's folder if that exists, else ./golden]
    #[arg(long, value_name = "DIR")]
    pub golden_dir: Option<PathBuf>,
    /// Static files for the demo upstream [default: static/ in the working directory, else the
    /// static/ folder beside the scenario's folder; the built-in page when there is none]
    #[arg(long, value_name = "DIR")]
    pub static_dir: Option<PathBuf>,
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

/// Where a folder the run needs (`golden`, `static`) was found.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub dir: PathBuf,
    /// True when it is not the working directory's own (nor a flag's): it is worth printing.
    pub beside_scenario: bool,
}

/// Finds the `name` folder (`golden`, `static`) for the scenario at `file`: the flag's when given;
/// else the working directory's when it exists; else the one beside the scenario's folder
/// (`scenarios/../golden`) or inside it, when either exists; else the working directory's
/// (created when something is written there). So a run from another folder uses the project's
/// files instead of leaving a stray `./golden/` behind.
pub fn locate(flag: Option<&Path>, name: &str, file: &Path) -> Located {
    let here = |dir: PathBuf| Located {
        dir,
        beside_scenario: false,
    };
    if let Some(dir) = flag {
        return here(dir.to_path_buf());
    }
    let own = PathBuf::from(name);
    if own.is_dir() {
        return here(own);
    }
    let folder = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let candidates = [folder.join("..").join(name), folder.join(name)];
    for candidate in candidates {
        if candidate.is_dir() {
            return Located {
                dir: normalize(&candidate),
                beside_scenario: true,
            };
        }
    }
    here(own)
}

/// `a/b/../c` as `a/c`, for paths shown to users (no file system access, no symlink resolution).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// The absolute form of `path` for comparing files that may not exist yet: its folder resolved
/// (when it exists) plus its name.
fn identity(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match (parent.canonicalize(), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    }
}

/// What the run writes must not overwrite what it reads: no output may be a scenario file or a
/// golden file of the run.
fn check_outputs(
    scenarios: &[(PathBuf, Scenario)],
    golden: &[Located],
    writes: &[(&str, &Path)],
) -> Result<(), String> {
    let mut protected = Vec::new();
    for ((file, scenario), golden) in scenarios.iter().zip(golden) {
        protected.push((identity(file), "a scenario file of this run"));
        let snap = golden.dir.join(format!("{}.snap", scenario.name));
        protected.push((identity(&snap), "a golden file of this run"));
    }
    for (flag, path) in writes {
        let id = identity(path);
        if let Some((_, what)) = protected.iter().find(|(p, _)| *p == id) {
            return Err(format!(
                "{flag} {} is {what}; writing it would destroy it",
                path.display()
            ));
        }
    }
    Ok(())
}

/// Two scenarios of one run with the same name would share a golden file and an output file.
fn check_names(scenarios: &[(PathBuf, Scenario)]) -> Result<(), String> {
    for (i, (file, s)) in scenarios.iter().enumerate() {
        if let Some((other, _)) = scenarios[..i].iter().find(|(_, o)| o.name == s.name) {
            return Err(format!(
                "{} and {} are both named \"{}\": they would share golden/{}.snap; give each a name of its own",
                other.display(),
                file.display(),
                s.name,
                s.name
            ));
        }
    }
    Ok(())
}

/// The machine-readable reports of a run, shared with the signal watcher so that a forced exit
/// still writes them (once) with what was played so far.
#[derive(Debug, Default)]
struct Reports {
    junit: Option<PathBuf>,
    summary_json: Option<PathBuf>,
    played: Vec<Played>,
    texts: Vec<String>,
    /// The scenario being played, reported as stopped if a forced exit comes first.
    current: Option<(PathBuf, String)>,
    written: bool,
}

impl Reports {
    /// Writes the JUnit and JSON reports, once; returns what could not be written.
    fn write(&mut self) -> Vec<String> {
        if self.written {
            return Vec::new();
        }
        self.written = true;
        if let Some((file, name)) = self.current.take() {
            self.played.push(Played {
                file,
                name,
                result: Err("stopped by a second signal before it finished".to_string()),
            });
            self.texts
                .push("stopped by a second signal before it finished\n".to_string());
        }
        let mut errors = Vec::new();
        if let Some(path) = &self.junit {
            let written = runner::create_parent(path)
                .and_then(|()| std::fs::File::create(path))
                .and_then(|f| {
                    let mut w = std::io::BufWriter::new(f);
                    report::write_junit(&mut w, &self.played, &self.texts)?;
                    std::io::Write::flush(&mut w)
                });
            if let Err(e) = written {
                errors.push(format!("cannot write {}: {e}", path.display()));
            }
        }
        if let Some(path) = &self.summary_json {
            let mut text = serde_json::to_string_pretty(&report::summary_json(&self.played))
                .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
            text.push('\n');
            if let Err(e) = runner::create_parent(path).and_then(|()| std::fs::write(path, text)) {
                errors.push(format!("cannot write {}: {e}", path.display()));
            }
        }
        errors
    }
}

fn lock(reports: &Mutex<Reports>) -> MutexGuard<'_, Reports> {
    reports.lock().unwrap_or_else(PoisonError::into_inner)
}

pub fn run(args: &RunArgs) -> u8 {
    let files = match expand(&args.files) {
        Ok(f) => f,
        Err(e) => {
            errln!("error: {e}");
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
                errln!("{e}");
                invalid = true;
            }
        }
    }
    if invalid {
        errln!("error: nothing was run: fix the scenario errors above");
        return EXIT_INVALID;
    }
    if let Err(e) = check_names(&scenarios) {
        errln!("error: {e}");
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
                errln!("error: {e}");
                return EXIT_INVALID;
            }
        }
    }
    let golden_dirs: Vec<Located> = scenarios
        .iter()
        .map(|(file, _)| locate(args.golden_dir.as_deref(), "golden", file))
        .collect();
    let static_dirs: Vec<Located> = scenarios
        .iter()
        .map(|(file, _)| locate(args.static_dir.as_deref(), "static", file))
        .collect();
    let mut writes: Vec<(&str, &Path)> = outputs
        .iter()
        .flatten()
        .map(|p| ("--output", p.as_path()))
        .collect();
    writes.extend(args.junit.as_deref().map(|p| ("--junit", p)));
    writes.extend(args.summary_json.as_deref().map(|p| ("--summary-json", p)));
    if let Err(e) = check_outputs(&scenarios, &golden_dirs, &writes) {
        errln!("error: {e}");
        return EXIT_INVALID;
    }

    let runtime = match super::runtime(args.workers, true) {
        Ok(r) => r,
        Err(e) => {
            errln!("error: cannot start the runtime: {e}");
            return EXIT_RUNTIME;
        }
    };
    let open_files = OpenFiles::default();
    let reports = Arc::new(Mutex::new(Reports {
        junit: args.junit.clone(),
        summary_json: args.summary_json.clone(),
        ..Reports::default()
    }));
    let signals = {
        let (open_files, reports) = (open_files.clone(), reports.clone());
        super::signal::watch(&runtime, EXIT_RUNTIME, move || {
            errln!("error: a second signal: stopping at once");
            for e in open_files.finish_all() {
                errln!("error: cannot complete an output file: {e}");
            }
            for e in lock(&reports).write() {
                errln!("error: {e}");
            }
        })
    };
    let signals = match signals {
        Ok(s) => s,
        Err(e) => {
            errln!("error: cannot watch for signals: {e}");
            return EXIT_RUNTIME;
        }
    };
    let policy = golden::Policy::from_env(args.accept, args.write_new);

    let mut worst = EXIT_OK;
    let mut not_run = 0;
    let plan = scenarios
        .iter()
        .zip(outputs)
        .zip(golden_dirs)
        .zip(static_dirs);
    for ((((file, scenario), output), golden), statics) in plan {
        if signals.stop.is_cancelled() {
            not_run += 1;
            continue;
        }
        outln!("==> {} ({})", scenario.name, file.display());
        if !scenario.description.is_empty() {
            outln!("    {}", scenario.description);
        }
        if golden.beside_scenario {
            outln!("    golden files: {}", golden.dir.display());
        }
        if statics.beside_scenario {
            outln!("    static files: {}", statics.dir.display());
        }
        let progress = Arc::new(AtomicU64::new(0));
        let options = RunOptions {
            output,
            format: args.format,
            golden_dir: golden.dir,
            golden: policy,
            static_dir: statics.dir.is_dir().then_some(statics.dir),
            progress: progress.clone(),
            stop: signals.stop.clone(),
            open_files: open_files.clone(),
            keep_outcomes: false,
        };
        lock(&reports).current = Some((file.clone(), scenario.name.clone()));
        let ticker = Ticker::start(progress, scenario.load.profile.fixed_count());
        let result = runner::play_scenario(&runtime, scenario, &options);
        drop(ticker);
        let (result, text) = match result {
            Ok(report) => {
                let text = render_report(scenario, &report, signals.received());
                out!("{text}");
                let (code, _, _) = verdict(&report);
                worst = worst.max(code);
                (Ok(report), text)
            }
            Err(e) => {
                errln!("error: {}: {e}", scenario.name);
                worst = worst.max(EXIT_RUNTIME);
                (Err(e.to_string()), format!("error: {e}\n"))
            }
        };
        let mut r = lock(&reports);
        r.current = None;
        r.played.push(Played {
            file: file.clone(),
            name: scenario.name.clone(),
            result,
        });
        r.texts.push(text);
        drop(r);
        outln!();
    }
    {
        let r = lock(&reports);
        if r.played.len() > 1 {
            outln!("{}", render_results(&r.played));
        }
    }
    if not_run > 0 {
        outln!(
            "stopped: {not_run} scenario{} not run",
            if not_run == 1 { "" } else { "s" }
        );
        worst = worst.max(EXIT_RUNTIME);
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    for e in lock(&reports).write() {
        errln!("error: {e}");
        worst = worst.max(EXIT_RUNTIME);
    }
    worst
}

pub(crate) fn verdict(report: &RunReport) -> (u8, &'static str, String) {
    if report.interrupted {
        let cancelled = report.summary.errors.get("cancelled").copied().unwrap_or(0);
        let mut why = format!(
            "interrupted after {} requests",
            report.summary.requests - cancelled
        );
        if cancelled > 0 {
            why.push_str(&format!(" ({cancelled} more cut short)"));
        }
        return (EXIT_RUNTIME, "STOPPED", why);
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

/// The report printed after each scenario: summary, expectations, golden verdict. `signal` names
/// what stopped the run, when something did.
pub fn render_report(scenario: &Scenario, report: &RunReport, signal: Option<&str>) -> String {
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
            let by = signal.map(|s| format!(" by {s}")).unwrap_or_default();
            let _ = writeln!(
                out,
                "    golden: not compared (the run was interrupted{by})"
            );
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
