//! TEMPORARY stand-in for the shrinker, with its API only; replaced by the real module.

use std::path::{Path, PathBuf};

use super::Base;
use crate::scenario::ScenarioSpec;

pub struct Step {
    pub what: String,
    pub kept: bool,
}

pub struct Shrunk {
    pub seed: u64,
    pub spec: ScenarioSpec,
    pub text: String,
    pub failing: Vec<String>,
    pub removed: Vec<String>,
    pub steps: usize,
}

pub fn shrink(
    _base: &Base,
    _seed: u64,
    _scratch: &Path,
    _on_step: &mut dyn FnMut(&Step),
) -> Result<Shrunk, String> {
    Err("shrinking is not available in this build".into())
}

pub fn write(_shrunk: &Shrunk, _base: &Base, _dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    Err(std::io::Error::other(
        "shrinking is not available in this build",
    ))
}
