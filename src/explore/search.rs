//! The seed search: a scenario played once per seed of a range on a pool of worker threads, each
//! trial judged by its expectations alone ([`super::trial`]).
//!
//! Workers take the next seed from a shared counter, so seeds are started in increasing order and
//! the results are kept by seed: what is reported never depends on which worker was faster. A
//! time budget only stops taking new seeds (the seeds tried are then a prefix of the range whose
//! length depends on the machine's speed); a stop (a signal) also cuts the trials under way
//! short, and those are not counted as tried.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Base, Trial, trial_until};

/// What to search.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The seeds, both ends included.
    pub seeds: RangeInclusive<u64>,
    /// Worker threads (at least one).
    pub jobs: usize,
    /// Take no new seed after this long.
    pub budget: Option<Duration>,
}

/// Why a search ended before its last seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The time budget ran out: the seeds not yet started were left out.
    Budget,
    /// Stopped (a signal): the seeds not yet started were left out, and the trials under way were
    /// cut short and are not counted.
    Stopped,
}

/// The result of a search: every finished trial, by seed.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub trials: BTreeMap<u64, Trial>,
    /// `None` when every seed of the range was tried.
    pub cut: Option<Cut>,
}

impl Search {
    /// Seeds tried (whose trial finished).
    pub fn tried(&self) -> usize {
        self.trials.len()
    }

    /// Seeds whose every expectation held.
    pub fn held(&self) -> usize {
        self.trials.values().filter(|t| **t == Trial::Held).count()
    }

    /// The failing seeds, in order, with the expectations each broke.
    pub fn failed(&self) -> impl Iterator<Item = (u64, &[crate::expect::Verdict])> {
        self.trials.iter().filter_map(|(seed, t)| match t {
            Trial::Broke(v) => Some((*seed, v.as_slice())),
            _ => None,
        })
    }

    /// The seeds that could not be played, in order, with why.
    pub fn errors(&self) -> impl Iterator<Item = (u64, &str)> {
        self.trials.iter().filter_map(|(seed, t)| match t {
            Trial::Error(e) => Some((*seed, e.as_str())),
            _ => None,
        })
    }

    /// Each expectation that broke, in the order of its first failing seed (ties in the
    /// scenario's order), with the seeds that broke it, in order.
    pub fn by_expectation(&self) -> Vec<(String, Vec<(u64, &crate::expect::Verdict)>)> {
        let mut out: Vec<(String, Vec<(u64, &crate::expect::Verdict)>)> = Vec::new();
        for (seed, verdicts) in self.failed() {
            for v in verdicts {
                match out.iter_mut().find(|(name, _)| *name == v.name) {
                    Some((_, seeds)) => seeds.push((seed, v)),
                    None => out.push((v.name.clone(), vec![(seed, v)])),
                }
            }
        }
        out
    }
}

/// Plays `base` once per seed of `plan`. Each trial gets `scratch/seed-N` as its scratch folder:
/// nothing is written there but the logs of the scenario's services, if it has any
/// (`scratch/seed-N/logs/<scenario>/<service>.log`). `on_trial` is called from the workers as each trial ends (for progress), in
/// no particular order. `stop` ends the search early (see [`Cut::Stopped`]).
pub fn search(
    base: &Base,
    plan: &Plan,
    scratch: &Path,
    stop: &CancellationToken,
    on_trial: &(dyn Fn(u64, &Trial) + Sync),
) -> Search {
    let (first, last) = (*plan.seeds.start(), *plan.seeds.end());
    let next = AtomicU64::new(0);
    let started = Instant::now();
    let trials = Mutex::new(BTreeMap::new());
    let over_budget = Mutex::new(false);
    let take = || -> Option<u64> {
        if stop.is_cancelled() {
            return None;
        }
        if plan.budget.is_some_and(|b| started.elapsed() >= b) {
            *over_budget.lock().unwrap_or_else(PoisonError::into_inner) = true;
            return None;
        }
        // Seeds are handed out in order, as offsets from the first (an offset past the range
        // takes nothing; the counter cannot wrap in any real run).
        let offset = next.fetch_add(1, Ordering::SeqCst);
        if offset > last - first {
            return None;
        }
        let seed = first + offset;
        Some(seed)
    };
    std::thread::scope(|scope| {
        for _ in 0..plan.jobs.max(1) {
            scope.spawn(|| {
                while let Some(seed) = take() {
                    let played = match base.with_seed(seed) {
                        Ok(scenario) => {
                            let own = scratch.join(format!("seed-{seed}"));
                            trial_until(&scenario, &own, stop)
                        }
                        Err(e) => Trial::Error(e.to_string()),
                    };
                    if stop.is_cancelled() && matches!(played, Trial::Error(_)) {
                        // Cut short by the stop: neither tried nor an error of the scenario.
                        return;
                    }
                    on_trial(seed, &played);
                    trials
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(seed, played);
                }
            });
        }
    });
    let trials = trials.into_inner().unwrap_or_else(PoisonError::into_inner);
    let cut = if stop.is_cancelled() && trials.len() as u64 <= last - first {
        Some(Cut::Stopped)
    } else if *over_budget.lock().unwrap_or_else(PoisonError::into_inner)
        && (trials.len() as u64) <= last - first
    {
        Some(Cut::Budget)
    } else {
        None
    };
    Search { trials, cut }
}
