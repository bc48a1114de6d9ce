//! Request ranks for `first`, `after` and `every`: how many requests with a smaller index also
//! meet a rule's `match` conditions. With the load profile known, the rank is a pure function of
//! `(seed, targets, index)`, so it does not depend on arrival order; [`RankTable`] answers it from a
//! compact prefix table, over the load generator's own choice of target ([`pick_target`]).

use super::Matcher;
use crate::load::plan::{Target, pick_index};

/// Indices between two stored prefix counts: a lookup re-picks at most `BLOCK - 1` targets.
const BLOCK: u64 = 64;

/// Ranks of one rule over the load profile.
#[derive(Debug)]
struct RuleRanks {
    /// Whether each target meets the rule's method, path and query conditions.
    target_matches: Vec<bool>,
    /// `prefix[k]`: how many of the indices `0..k * BLOCK` match.
    prefix: Vec<u64>,
    /// How many of the indices `0..requests` match.
    total: u64,
}

/// Precomputed ranks for the rules that use `first`, `after` or `every`, over a load profile of
/// `requests` logical requests. Memory: one `u64` per 64 requests per such rule.
#[derive(Debug)]
pub(crate) struct RankTable {
    seed: u64,
    targets: Vec<Target>,
    requests: u64,
    /// Indexed like the plan's rules; `None` for rules that need no rank.
    rules: Vec<Option<RuleRanks>>,
}

impl RankTable {
    /// Builds the table; `needs_rank[i]` says whether rule `i` uses a counting pattern. Picks every
    /// index's target once.
    pub(crate) fn build(
        seed: u64,
        targets: Vec<Target>,
        requests: u64,
        matchers: &[(&Matcher, bool)],
    ) -> Self {
        let mut rules: Vec<Option<RuleRanks>> = matchers
            .iter()
            .map(|(m, needs_rank)| {
                needs_rank.then(|| RuleRanks {
                    target_matches: targets
                        .iter()
                        .map(|t| {
                            let (path, query) = split_target(&t.path);
                            m.matches_target(&t.method, path, query)
                        })
                        .collect(),
                    prefix: Vec::with_capacity(usize::try_from(requests / BLOCK + 1).unwrap_or(0)),
                    total: 0,
                })
            })
            .collect();
        if rules.iter().any(Option::is_some) {
            for index in 0..requests {
                let picked = pick_index(seed, index, &targets);
                for r in rules.iter_mut().flatten() {
                    if index % BLOCK == 0 {
                        r.prefix.push(r.total);
                    }
                    if picked.is_some_and(|t| r.target_matches[t]) {
                        r.total += 1;
                    }
                }
            }
        }
        RankTable {
            seed,
            targets,
            requests,
            rules,
        }
    }

    /// The rank of request `index` under rule `rule`. Indices at or past the end of the profile
    /// (only outside clients send them) count as if every later index matched.
    pub(crate) fn rank(&self, rule: usize, index: u64) -> u64 {
        let Some(Some(r)) = self.rules.get(rule) else {
            return index;
        };
        if index >= self.requests {
            return r.total + (index - self.requests);
        }
        let block = index / BLOCK;
        let mut count = usize::try_from(block)
            .ok()
            .and_then(|b| r.prefix.get(b))
            .copied()
            .unwrap_or(0);
        for j in block * BLOCK..index {
            if pick_index(self.seed, j, &self.targets).is_some_and(|t| r.target_matches[t]) {
                count += 1;
            }
        }
        count
    }
}

/// A target's path and query (`/a?x=1` -> `/a`, `x=1`).
fn split_target(path: &str) -> (&str, Option<&str>) {
    match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::PathGlob;
    use crate::load::plan::pick_target;
    use crate::seed;
    use hyper::Method;
    use rand::Rng;

    fn target(path: &str, weight: u32) -> Target {
        Target::new(Method::GET, path, weight)
    }

    /// The load generator's reference implementation, kept verbatim: `pick_target` must equal it.
    fn reference(seed: u64, index: u64, targets: &[Target]) -> Option<&Target> {
        let total: u64 = targets.iter().map(|t| u64::from(t.weight)).sum();
        if total == 0 {
            return targets.first();
        }
        let mut roll = seed::rng(seed, &format!("load/target/{index}")).random_range(0..total);
        for t in targets {
            let w = u64::from(t.weight);
            if roll < w {
                return Some(t);
            }
            roll -= w;
        }
        targets.last()
    }

    #[test]
    fn pick_target_is_the_load_generators_choice() {
        let targets = [target("/a", 3), target("/b", 1), target("/c", 5)];
        for index in 0..2000 {
            assert_eq!(
                pick_target(42, index, &targets),
                reference(42, index, &targets)
            );
        }
        assert_eq!(pick_target(1, 0, &[]), None);
    }

    #[test]
    fn ranks_match_a_plain_count_across_block_edges() {
        let targets = vec![target("/api/a?x=1", 1), target("/static/b", 2)];
        let m = Matcher {
            path: PathGlob::new("/api/*").ok(),
            ..Matcher::default()
        };
        let requests = 300;
        let table = RankTable::build(7, targets.clone(), requests, &[(&m, true)]);
        let mut count = 0;
        for index in 0..requests {
            assert_eq!(table.rank(0, index), count, "index {index}");
            if pick_target(7, index, &targets).is_some_and(|t| t.path.starts_with("/api")) {
                count += 1;
            }
        }
        assert_eq!(table.rank(0, requests + 5), count + 5);
    }
}
