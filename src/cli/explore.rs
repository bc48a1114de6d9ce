//! `traceforge explore`: play a scenario once per seed of a range, on a pool of workers, judge
//! each play by its expectations alone, print a table of what broke and for which seeds, and
//! shrink the first failing seed to a minimal scenario (`NAME.min.toml`).
//!
//! The table on stdout is a function of the command alone (seeds in order, no timings); progress,
//! shrinking steps and timings go to stderr.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use super::{EXIT_FAILED, EXIT_INVALID, EXIT_OK, EXIT_RUNTIME};
use traceforge::explore::search::{self, Cut, Plan, Search};
use traceforge::explore::shrink::{self, Shrunk, Step};
use traceforge::explore::{Base, Trial};
use traceforge::scenario::{Clock, Override, Scenario};

/// How many failing seeds the table lists per expectation.
const LISTED: usize = 10;

/// Arguments of `traceforge explore`.
#[derive(Debug, clap::Args)]
pub struct ExploreArgs {
    /// The scenario file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The seeds to play: `A..B` (both ends included: `1..1000` is 1000 seeds) or one seed.
    #[arg(long, value_name = "A..B", default_value = "1..100", value_parser = parse_seeds)]
    pub seeds: Seeds,
    /// Seeds played at once, each on a thread of its own [default: one per core].
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub jobs: Option<usize>,
    /// Start no new seed after this long (`30s`, `5m`); the table says how many were tried. Which
    /// seeds that is depends on the machine's speed.
    #[arg(long, value_name = "DURATION", value_parser = parse_budget)]
    pub time_budget: Option<Duration>,
    /// Override a scenario field for every seed, validated like the file: --set load.requests=50
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<Override>,
    /// Do not shrink the first failing seed.
    #[arg(long, conflicts_with = "shrink")]
    pub no_shrink: bool,
    /// Shrink this seed instead of searching (`--seeds` is then ignored); a seed that holds has
    /// nothing to shrink (exit 0).
    #[arg(long, value_name = "SEED")]
    pub shrink: Option<u64>,
    /// Where the shrunk `NAME.min.toml` goes [default: the scenario file's folder].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Where the shrunk scenario's golden file goes [default: where `traceforge run` on it looks
    /// from the working directory].
    #[arg(long, value_name = "DIR")]
    pub golden_dir: Option<PathBuf>,
    /// Where the output of `[[services]]` goes: `DIR/explore/seed-N/logs/<scenario>/<service>.log`
    /// for each seed.
    #[arg(long, value_name = "DIR", default_value = traceforge::runner::DEFAULT_LOGS)]
    pub logs: PathBuf,
    /// Write the search's result as JSON: every failing seed, every error and the shrunk
    /// scenario.
    #[arg(long, value_name = "PATH")]
    pub summary_json: Option<PathBuf>,
}

/// A range of seeds, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seeds {
    pub from: u64,
    pub to: u64,
}

impl Seeds {
    fn count(self) -> u64 {
        (self.to - self.from).saturating_add(1)
    }
}

impl std::fmt::Display for Seeds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..{}", self.from, self.to)
    }
}

/// `--seeds`: `A..B` or `A..=B` (both ends included), or one seed `N`.
pub fn parse_seeds(text: &str) -> Result<Seeds, String> {
    let number = |s: &str| {
        s.trim().parse::<u64>().map_err(|_| {
            format!("`{text}` is not a range of seeds: `{s}` is not a whole number from 0 to {}; write 1..1000 or 42", u64::MAX)
        })
    };
    let (from, to) = match text.split_once("..") {
        Some((a, b)) => (number(a)?, number(b.strip_prefix('=').unwrap_or(b))?),
        None => {
            let n = number(text)?;
            (n, n)
        }
    };
    if to < from {
        return Err(format!(
            "`{text}` is an empty range: the last seed comes before the first; write {to}..{from}"
        ));
    }
    Ok(Seeds { from, to })
}

fn parse_budget(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(format!("`{text}`: a time budget must be longer than zero")),
        Err(e) => Err(format!("`{text}`: {e}; write 30s, 5m or 1h")),
    }
}

pub fn explore(args: &ExploreArgs) -> u8 {
    let (base, scenario) = match Base::read(&args.file, args.overrides.clone()) {
        Ok(read) => read,
        Err(e) => {
            errln!("error: {e}");
            errln!("error: nothing was run: fix the scenario errors above");
            return EXIT_INVALID;
        }
    };
    let out_dir = args.out.clone().unwrap_or_else(|| base.dir.clone());
    let runtime = match super::runtime(Some(1), super::Threads::SharedWithSignals) {
        Ok(r) => r,
        Err(e) => {
            errln!("error: cannot start the runtime: {e}");
            return EXIT_RUNTIME;
        }
    };
    let signals = match super::signal::watch(&runtime, EXIT_RUNTIME, || {
        errln!("error: a second signal: stopping at once");
        #[cfg(unix)]
        traceforge::service::kill_all();
    }) {
        Ok(s) => s,
        Err(e) => {
            errln!("error: cannot watch for signals: {e}");
            return EXIT_RUNTIME;
        }
    };
    // Each seed's scratch folder; only services write there (their logs), and a file that
    // names it in an error names the same path every time.
    let scratch = args.logs.join("explore");
    let seeds = match args.shrink {
        Some(seed) => Seeds {
            from: seed,
            to: seed,
        },
        None => args.seeds,
    };
    let jobs = args.jobs.unwrap_or_else(traceforge::cores::available);
    let plan = Plan {
        seeds: seeds.from..=seeds.to,
        jobs: jobs.min(usize::try_from(seeds.count()).unwrap_or(usize::MAX)),
        budget: args.time_budget,
    };
    let has_services = scenario
        .topology
        .as_ref()
        .is_some_and(|t| !t.services.is_empty());
    if has_services {
        errln!("note: every seed starts the scenario's services afresh and stops them after it");
    }

    errln!(
        "exploring {}: seeds {seeds} on {} jobs",
        scenario.name,
        plan.jobs
    );
    let started = Instant::now();
    let found = {
        let bar = bar(seeds.count());
        let failed = AtomicU64::new(0);
        let on_trial = |_seed: u64, trial: &Trial| {
            if matches!(trial, Trial::Broke(_)) {
                let n = failed.fetch_add(1, Ordering::Relaxed) + 1;
                bar.set_message(format!("{n} failed"));
            }
            bar.inc(1);
        };
        let found = search::search(&base, &plan, &scratch, &signals.stop, &on_trial);
        bar.finish_and_clear();
        found
    };
    let elapsed = started.elapsed();
    if found.tried() > 0 {
        let per_minute = found.tried() as f64 / elapsed.as_secs_f64().max(1e-9) * 60.0;
        errln!(
            "{} seeds in {:.2}s on {} jobs: {per_minute:.0} seeds/min",
            found.tried(),
            elapsed.as_secs_f64(),
            plan.jobs
        );
    }

    let mut worst = EXIT_OK;
    if args.shrink.is_none() {
        out!("{}", table(&scenario, &args.file, seeds, &found));
    }
    if found.cut == Some(Cut::Stopped) {
        outln!(
            "stopped by {}: {} of {} seeds tried",
            signals.received().unwrap_or("a signal"),
            found.tried(),
            seeds.count()
        );
        worst = EXIT_RUNTIME;
    }
    if found.errors().next().is_some() {
        worst = worst.max(EXIT_RUNTIME);
    }
    let first_failing = found.failed().next().map(|(seed, _)| seed);
    if first_failing.is_some() {
        worst = worst.max(EXIT_FAILED);
    }

    // Shrink the first failing seed (or the one asked for).
    let to_shrink = match args.shrink {
        Some(seed) => match found.trials.get(&seed) {
            Some(Trial::Held) => {
                outln!(
                    "seed {seed} of {}: every expectation held; nothing to shrink",
                    scenario.name
                );
                None
            }
            Some(Trial::Error(e)) => {
                outln!("seed {seed} of {}: could not be played: {e}", scenario.name);
                None
            }
            Some(Trial::Broke(_)) => Some(seed),
            None => None,
        },
        None if args.no_shrink || found.cut == Some(Cut::Stopped) => None,
        None => first_failing,
    };
    // Then every other way it broke: for each other expectation that broke, the first seed that
    // broke it, shrunk with that expectation as its target (a file and a scenario of its own).
    let mut jobs: Vec<(u64, Option<String>)> =
        to_shrink.map(|seed| (seed, None)).into_iter().collect();
    if args.shrink.is_none() && to_shrink.is_some() {
        let mut covered: Vec<String> = to_shrink
            .and_then(|seed| found.failed().find(|(s, _)| *s == seed))
            .and_then(|(_, verdicts)| verdicts.first())
            .map(|v| vec![v.name.clone()])
            .unwrap_or_default();
        for (seed, verdicts) in found.failed() {
            for v in verdicts {
                if !covered.contains(&v.name) {
                    covered.push(v.name.clone());
                    jobs.push((seed, Some(v.name.clone())));
                }
            }
        }
    }
    let mut shrunk: Vec<(Shrunk, PathBuf, PathBuf)> = Vec::new();
    for (seed, target) in jobs {
        if signals.stop.is_cancelled() {
            break;
        }
        match &target {
            Some(name) => errln!("shrinking seed {seed} for `{name}`"),
            None => errln!("shrinking seed {seed}"),
        }
        let mut on_step = |step: &Step| {
            errln!(
                "  {} ({})",
                step.what,
                if step.kept { "kept" } else { "undone" }
            );
        };
        let written = shrink::shrink_target(&base, seed, target.as_deref(), &scratch, &mut on_step)
            .and_then(|s| {
                match &args.golden_dir {
                    Some(golden) => shrink::write_with_golden(&s, &base, &out_dir, golden),
                    None => shrink::write(&s, &base, &out_dir),
                }
                .map(|(file, golden)| (s, file, golden))
                .map_err(|e| {
                    format!(
                        "cannot write the shrunk scenario in {}: {e}",
                        out_dir.display()
                    )
                })
            });
        match written {
            Ok((s, file, golden)) => {
                out!("{}", shrunk_text(&s, &file, &golden));
                shrunk.push((s, file, golden));
            }
            Err(e) => {
                errln!("error: cannot shrink seed {seed}: {e}");
                worst = worst.max(EXIT_RUNTIME);
            }
        }
    }

    // A signal during shrinking: what was written is complete, but the run did not end on its own.
    if signals.stop.is_cancelled() {
        worst = worst.max(EXIT_RUNTIME);
    }

    if let Some(path) = &args.summary_json {
        let doc = summary(&scenario, &args.file, seeds, &found, &shrunk);
        let written = super::run::write_file(path, |w| {
            serde_json::to_writer_pretty(&mut *w, &doc).map_err(std::io::Error::other)?;
            std::io::Write::write_all(w, b"\n")
        });
        if let Err(e) = written {
            errln!("error: {e}");
            worst = worst.max(EXIT_RUNTIME);
        }
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    worst
}

/// The progress bar on stderr (drawn only on a terminal).
fn bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("    {bar:30} {pos}/{len} seeds, {msg} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message("0 failed");
    bar
}

fn clock_name(clock: Clock) -> &'static str {
    match clock {
        Clock::Real => "real",
        Clock::Virtual => "virtual",
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The table: the same text for the same command, whatever the machine or `--jobs`.
fn table(scenario: &Scenario, file: &Path, seeds: Seeds, found: &Search) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let failed = found.failed().count();
    let errors = found.errors().count();
    let _ = writeln!(t, "==> explore {} ({})", scenario.name, file.display());
    let _ = writeln!(t, "    clock:   {}", clock_name(scenario.clock));
    if scenario.clock == Clock::Real {
        let _ = writeln!(t, "    real clock: each seed plays in real time; slower");
    }
    let _ = writeln!(
        t,
        "    seeds:   {seeds} ({} tried of {})",
        found.tried(),
        seeds.count()
    );
    if found.cut == Some(Cut::Budget) {
        let _ = writeln!(
            t,
            "    time budget reached: the seeds after the first {} were not tried (how many fit depends on the machine)",
            found.tried()
        );
    }
    let _ = writeln!(t, "    held:    {}", found.held());
    let _ = writeln!(t, "    failed:  {failed}");
    let _ = writeln!(t, "    errors:  {errors}");
    let broken = found.by_expectation();
    if !broken.is_empty() {
        let _ = writeln!(t);
        let _ = writeln!(t, "    failing expectations:");
        for (name, seeds) in &broken {
            let listed: Vec<String> = seeds
                .iter()
                .take(LISTED)
                .map(|(s, _)| s.to_string())
                .collect();
            let more = if seeds.len() > LISTED { ", ..." } else { "" };
            let _ = writeln!(
                t,
                "    {name}: broken by {}: {}{more}",
                plural(seeds.len(), "seed", "seeds"),
                listed.join(", ")
            );
            if let Some((seed, v)) = seeds.first() {
                let _ = writeln!(
                    t,
                    "        seed {seed}: measured {}, expected {}",
                    v.measured, v.threshold
                );
            }
        }
    }
    if errors > 0 {
        let _ = writeln!(t);
        let _ = writeln!(t, "    errors (a seed that could not be played):");
        for (seed, e) in found.errors().take(LISTED) {
            let _ = writeln!(t, "    seed {seed}: {e}");
        }
        if errors > LISTED {
            let _ = writeln!(t, "    ... and {} more", errors - LISTED);
        }
    }
    let verdict = match (failed, errors) {
        (0, 0) => "HELD: every seed tried held its expectations".to_string(),
        (0, _) => "ERROR: some seeds could not be played".to_string(),
        (f, _) => format!(
            "FAILED: {} broke an expectation",
            plural(f, "seed", "seeds")
        ),
    };
    let _ = writeln!(t, "    {verdict}");
    t
}

fn shrunk_text(s: &Shrunk, file: &Path, golden: &Path) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "    shrunk seed {} in {}: {}",
        s.seed,
        plural(s.steps, "trial", "trials"),
        file.display()
    );
    let _ = writeln!(t, "    golden:  {}", golden.display());
    let _ = writeln!(t, "    still fails: {}", s.failing.join(", "));
    for line in &s.removed {
        let _ = writeln!(t, "    removed: {line}");
    }
    t
}

/// The `--summary-json` document.
fn summary(
    scenario: &Scenario,
    file: &Path,
    seeds: Seeds,
    found: &Search,
    shrunk: &[(Shrunk, PathBuf, PathBuf)],
) -> Value {
    let failed: Vec<Value> = found
        .failed()
        .map(|(seed, verdicts)| {
            json!({
                "seed": seed,
                "expectations": verdicts.iter().map(|v| json!({
                    "name": v.name,
                    "threshold": v.threshold,
                    "measured": v.measured,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let errors: Vec<Value> = found
        .errors()
        .map(|(seed, e)| json!({ "seed": seed, "error": e }))
        .collect();
    let shrunk: Vec<Value> = shrunk
        .iter()
        .map(|(s, path, golden)| {
            json!({
                "seed": s.seed,
                "file": path.display().to_string(),
                "golden": golden.display().to_string(),
                "failing": s.failing,
                "removed": s.removed,
                "steps": s.steps,
            })
        })
        .collect();
    json!({
        "version": 1,
        "scenario": scenario.name,
        "file": file.display().to_string(),
        "clock": clock_name(scenario.clock),
        "seeds": { "from": seeds.from, "to": seeds.to, "tried": found.tried() },
        "cut": match found.cut {
            None => Value::Null,
            Some(Cut::Budget) => json!("time_budget"),
            Some(Cut::Stopped) => json!("stopped"),
        },
        "held": found.held(),
        "failed": failed,
        "errors": errors,
        // The first failing seed's (or `--shrink`'s), then one per other expectation that broke.
        "shrunk": shrunk.first().cloned().unwrap_or(Value::Null),
        "shrunk_all": shrunk,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_as_inclusive_ranges_or_one_seed() {
        assert_eq!(parse_seeds("1..1000"), Ok(Seeds { from: 1, to: 1000 }));
        assert_eq!(parse_seeds("1..=1000"), Ok(Seeds { from: 1, to: 1000 }));
        assert_eq!(parse_seeds("42"), Ok(Seeds { from: 42, to: 42 }));
        assert_eq!(parse_seeds("1..1000").map(Seeds::count), Ok(1000));
        for bad in ["", "1..", "..5", "a..b", "5..1", "-1..3", "1...3"] {
            assert!(parse_seeds(bad).is_err(), "{bad}");
        }
    }
}
