//! A shard's result bundle (`traceforge run --shard K/N --bundle PATH`): everything a merge needs
//! to produce what a single-machine run produces, in one JSON Lines file.
//!
//! - One line per outcome, as `--format jsonl` writes them, in the order the requests finished.
//! - Then, last, one line `{"bundle": {...}}`: the [`Trailer`], with the shard (`K/N`), the
//!   scenario's name, file, `--set` overrides and digest, the seed, the counts, and the shard's
//!   [`Summary`] (its latency histograms in the standard HdrHistogram V2 encoding).
//!
//! The trailer is written only once every outcome is in, so a bundle without one is a shard that
//! did not finish (it crashed, or was stopped), and a merge refuses it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::calls::Unattributed;
use super::{Outcome, Summary};

/// The version of the bundle format; a merge reads only its own.
pub const VERSION: u32 = 1;

/// The last line of a bundle: which shard of which run it holds, and its aggregates.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trailer {
    pub version: u32,
    /// Shard `shard` (from 0) of `shards`.
    pub shard: u32,
    pub shards: u32,
    pub scenario: String,
    /// The scenario file as the shard was given it, for a merge to load again.
    pub file: String,
    /// The `--set` overrides the shard ran with, as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<String>,
    /// SHA-256 of the effective scenario (after overrides): bundles of one run share it.
    pub digest: String,
    pub seed: u64,
    /// The requests this shard had to play, and the outcome lines before this trailer.
    pub planned: u64,
    pub outcomes: u64,
    pub summary: Summary,
    /// Calls no load request claimed (services in the loop), for the golden body.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unattributed: Vec<Unattributed>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The line that holds a trailer.
#[derive(Serialize, Deserialize)]
struct TrailerLine {
    bundle: Trailer,
}

/// Appends the trailer line to a bundle whose outcomes are written.
pub fn append_trailer(path: &Path, trailer: &Trailer) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut line = serde_json::to_vec(&TrailerLine {
        bundle: trailer.clone(),
    })
    .map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new().append(true).open(path)?;
    file.write_all(&line)?;
    file.sync_all()
}

/// Why a bundle cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read the bundle {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error(
        "{path} is not a complete bundle: it has no trailer line (the shard did not finish, or this is not a bundle)"
    )]
    Incomplete { path: PathBuf },
}

/// A bundle's trailer, read without keeping its outcomes. Checks that the trailer is the last line
/// and that the outcome lines before it are as many as it says.
pub fn read_trailer(path: &Path) -> Result<Trailer, BundleError> {
    let mut trailer = None;
    let mut outcomes = 0u64;
    for_each_line(path, |n, line| {
        if trailer.is_some() {
            return Err(format!("a line after the trailer (line {})", n - 1));
        }
        if line.starts_with("{\"bundle\":") {
            let parsed: TrailerLine =
                serde_json::from_str(line).map_err(|e| format!("a broken trailer: {e}"))?;
            trailer = Some(parsed.bundle);
        } else {
            outcomes += 1;
        }
        Ok(())
    })?;
    let trailer = trailer.ok_or_else(|| BundleError::Incomplete {
        path: path.to_path_buf(),
    })?;
    let invalid = |message: String| BundleError::Invalid {
        path: path.to_path_buf(),
        line: outcomes + 1,
        message,
    };
    if trailer.version != VERSION {
        return Err(invalid(format!(
            "bundle format {} is not the {VERSION} this traceforge reads",
            trailer.version
        )));
    }
    if trailer.outcomes != outcomes {
        return Err(invalid(format!(
            "the trailer counts {} outcomes but {outcomes} lines come before it",
            trailer.outcomes
        )));
    }
    if trailer.shard >= trailer.shards {
        return Err(invalid(format!(
            "shard {}/{} does not exist: shards are counted from 0",
            trailer.shard, trailer.shards
        )));
    }
    Ok(trailer)
}

/// Streams a bundle's outcomes to `each`, in file order.
pub fn read_outcomes(path: &Path, mut each: impl FnMut(Outcome)) -> Result<(), BundleError> {
    for_each_line(path, |_, line| {
        if line.starts_with("{\"bundle\":") {
            return Ok(());
        }
        let outcome: Outcome =
            serde_json::from_str(line).map_err(|e| format!("not an outcome: {e}"))?;
        each(outcome);
        Ok(())
    })
}

/// Calls `each` with every non-empty line of a file (its end trimmed) and its 1-based number; an
/// error `each` returns is the file's, at that line.
pub fn for_each_line(
    path: &Path,
    mut each: impl FnMut(u64, &str) -> Result<(), String>,
) -> Result<(), BundleError> {
    let io = |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    let mut n = 0u64;
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(io)? == 0 {
            return Ok(());
        }
        n += 1;
        let text = line.trim_end();
        if text.is_empty() {
            continue;
        }
        each(n, text).map_err(|message| BundleError::Invalid {
            path: path.to_path_buf(),
            line: n,
            message,
        })?;
    }
}
