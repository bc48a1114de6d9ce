//! `traceforge run`: play scenarios, print their reports, and turn them into one exit code.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use super::progress::Progress;
use super::{EXIT_FAILED, EXIT_INVALID, EXIT_OK, EXIT_RUNTIME};
use traceforge::golden;
use traceforge::load::Shard;
use traceforge::record::{Format, OpenFiles};
use traceforge::report::{self, Played};
use traceforge::runner::RunVerdict;
use traceforge::runner::{self, RunOptions, ShardRun};
use traceforge::scenario::{self, Override, Scenario};

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
    /// Runtime worker threads, 1 to 1024 (default: one per CPU the process may use, as its
    /// affinity mask says).
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub workers: Option<usize>,
    /// Write a JUnit XML report: one test case per scenario (golden snapshot and expectations)
    /// and one per expectation.
    #[arg(long, value_name = "PATH")]
    pub junit: Option<PathBuf>,

    /// Where the output of `[[services]]` and of `[load] command` goes: one file per process,
    /// `DIR/<scenario>/<service>.log`.
    #[arg(long, value_name = "DIR", default_value = runner::DEFAULT_LOGS)]
    pub logs: PathBuf,
    /// Write every scenario's summary and verdicts as JSON (`"version": 1`).
    #[arg(long, value_name = "PATH")]
    pub summary_json: Option<PathBuf>,
    /// Write one self-contained HTML report of every scenario: verdict, expectations, golden
    /// result, latency and fault activity over run time, requests and retries per second, the
    /// latency distribution, fault rules, targets and topology.
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,

    /// Export spans to this OpenTelemetry collector over OTLP/HTTP protobuf: the load
    /// generator's (a root span per request, a client span per attempt) and every proxy's (a
    /// server span per request, a client span per upstream call), with the run's deterministic
    /// trace ids. http://host:4318 sends to /v1/traces; a URL with a path is used as given.
    #[arg(long, value_name = "URL", env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_parser = traceforge::observe::otlp::traces_url)]
    pub otlp: Option<hyper::Uri>,

    /// Play only shard K of N (counted from 0): the requests whose index i has i % N == K, each
    /// with the ids, faults and send time it has in a single-machine run. The shard writes a
    /// result bundle (--bundle); `traceforge merge` judges all the bundles together.
    #[arg(long, value_name = "K/N", requires = "bundle")]
    pub shard: Option<Shard>,
    /// Where the shard writes its result bundle (`{name}` becomes the scenario's name).
    #[arg(long, value_name = "PATH", requires = "shard")]
    pub bundle: Option<PathBuf>,
    /// Begin the load at this time, once everything is up: RFC 3339 (2026-11-22T10:00:00Z) or
    /// +DURATION from now (+30s). Shards given the same time start their timetables together.
    #[arg(long, value_name = "TIME", value_parser = parse_start_at)]
    pub start_at: Option<SystemTime>,
}

/// `--start-at`: an RFC 3339 time, or `+DURATION` from now.
pub fn parse_start_at(text: &str) -> Result<SystemTime, String> {
    if let Some(after) = text.strip_prefix('+') {
        let wait = humantime::parse_duration(after)
            .map_err(|e| format!("`{text}`: {e}; write +30s, +2m or an RFC 3339 time"))?;
        return Ok(SystemTime::now() + wait);
    }
    humantime::parse_rfc3339_weak(text).map_err(|e| {
        format!("`{text}` is not a time: {e}; write an RFC 3339 time such as 2026-11-22T10:00:00Z, or +30s")
    })
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
    html: Option<PathBuf>,
    /// The scenarios by name, for the HTML report's seeds, rules and topologies.
    scenarios: Vec<Scenario>,
    played: Vec<Played>,
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
            let why = "stopped by a second signal before it finished";
            self.played.push(Played {
                file,
                name,
                result: Err(why.to_string()),
                text: format!("{why}\n"),
            });
        }
        let mut errors = Vec::new();
        let played = &self.played;
        if let Some(path) = &self.junit {
            errors.extend(write_file(path, |w| report::junit::write_junit(w, played)).err());
        }
        if let Some(path) = &self.summary_json {
            errors.extend(write_file(path, |w| report::json::write_summary(w, played)).err());
        }
        if let Some(path) = &self.html {
            let sections = report::html::sections(played, &self.scenarios);
            errors.extend(write_file(path, |w| report::html::write_html(w, &sections)).err());
        }
        errors
    }
}

/// Creates `path` (and its folders) and writes a report into it; says what went wrong if not.
pub(super) fn write_file(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<(), String> {
    let written = runner::create_parent(path)
        .and_then(|()| std::fs::File::create(path))
        .and_then(|f| {
            let mut w = std::io::BufWriter::new(f);
            write(&mut w)?;
            w.flush()
        });
    written.map_err(|e| format!("cannot write {}: {e}", path.display()))
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
                errln!("error: {e}");
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
    let mut bundles = Vec::new();
    for (_, s) in &scenarios {
        match args
            .bundle
            .as_deref()
            .map(|b| output_for(b, &s.name, several))
            .transpose()
        {
            Ok(b) => bundles.push(b),
            Err(e) => {
                errln!("error: {}", e.replace("--output", "--bundle"));
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
    writes.extend(bundles.iter().flatten().map(|p| ("--bundle", p.as_path())));
    writes.extend(args.junit.as_deref().map(|p| ("--junit", p)));
    writes.extend(args.summary_json.as_deref().map(|p| ("--summary-json", p)));
    writes.extend(args.report.as_deref().map(|p| ("--report", p)));
    if let Err(e) = check_outputs(&scenarios, &golden_dirs, &writes) {
        errln!("error: {e}");
        return EXIT_INVALID;
    }

    let runtime = match super::runtime(args.workers, super::Threads::SharedWithSignals) {
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
        html: args.report.clone(),
        scenarios: if args.report.is_some() {
            scenarios.iter().map(|(_, s)| s.clone()).collect()
        } else {
            Vec::new()
        },
        ..Reports::default()
    }));
    let signals = {
        let (open_files, reports) = (open_files.clone(), reports.clone());
        super::signal::watch(&runtime, EXIT_RUNTIME, move || {
            errln!("error: a second signal: stopping at once");
            // No destructor runs on the way out: end the services here.
            #[cfg(unix)]
            traceforge::service::kill_all();
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
        .zip(static_dirs)
        .zip(bundles);
    for (((((file, scenario), output), golden), statics), bundle) in plan {
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
        if scenario.proxy.upstream_tls.insecure {
            outln!("    {}", traceforge::tls::INSECURE_WARNING);
        }
        for proxy in scenario.topology.iter().flat_map(|t| &t.proxies) {
            if proxy.config.upstream_tls.insecure {
                outln!(
                    "    {} for proxy `{}`",
                    traceforge::tls::INSECURE_WARNING,
                    proxy.name
                );
            }
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
            logs: args.logs.clone(),
            shard: args.shard.zip(bundle).map(|(shard, bundle)| ShardRun {
                shard,
                bundle,
                file: file.display().to_string(),
                overrides: args.overrides.iter().map(ToString::to_string).collect(),
            }),
            start_at: args.start_at,
            timeline: args.report.is_some(),
            otlp: args.otlp.clone(),
        };
        if let Some(run) = &options.shard {
            match scenario.shard_caveats(run.shard.count) {
                Ok(caveats) => {
                    for c in caveats {
                        outln!("    warning: as {} shards: {c}", run.shard.count);
                    }
                }
                Err(why) => {
                    errln!("error: {}: cannot be sharded: {why}", scenario.name);
                    worst = worst.max(EXIT_INVALID);
                    continue;
                }
            }
            outln!(
                "    shard {}: {} of the requests; bundle {}",
                run.shard,
                scenario
                    .load
                    .profile
                    .fixed_count()
                    .map_or("its share".to_string(), |n| run
                        .shard
                        .planned(n)
                        .to_string()),
                run.bundle.display()
            );
        }
        lock(&reports).current = Some((file.clone(), scenario.name.clone()));
        let planned = scenario
            .load
            .profile
            .fixed_count()
            .map(|n| options.shard.as_ref().map_or(n, |run| run.shard.planned(n)));
        let shown = Progress::start(&runtime, progress, planned);
        let result = runner::play_scenario(&runtime, scenario, &options);
        drop(shown);
        let (result, text) = match result {
            Ok(report) => {
                let text = report::text::report_string(&report, signals.received());
                out!("{text}");
                (Ok(report), text)
            }
            Err(e) => {
                errln!("error: {}: {e}", scenario.name);
                (Err(e.to_string()), format!("error: {e}\n"))
            }
        };
        let played = Played {
            file: file.clone(),
            name: scenario.name.clone(),
            result,
            text,
        };
        worst = worst.max(exit_code(&played.verdict()));
        let mut r = lock(&reports);
        r.current = None;
        r.played.push(played);
        drop(r);
        outln!();
    }
    {
        let r = lock(&reports);
        if r.played.len() > 1 {
            let mut table = Vec::new();
            // Writing to a Vec cannot fail.
            let _ = report::text::write_results(&mut table, &r.played);
            out!("{}", String::from_utf8_lossy(&table));
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

/// The exit code of one scenario's verdict; the run exits with the worst of them.
fn exit_code(verdict: &RunVerdict) -> u8 {
    match verdict {
        RunVerdict::Passed => EXIT_OK,
        RunVerdict::Failed(_) => EXIT_FAILED,
        RunVerdict::Stopped(_) | RunVerdict::Error(_) => EXIT_RUNTIME,
    }
}
