//! `traceforge k8s`: print the manifests of a sharded run on Kubernetes.

use std::path::PathBuf;

use super::{EXIT_INVALID, EXIT_OK};
use traceforge::k8s::{self, K8sOptions};
use traceforge::scenario::{self, Override};

/// Arguments of `traceforge k8s`.
#[derive(Debug, clap::Args)]
pub struct K8sArgs {
    /// The scenario file, as a path inside the image (relative to its working directory, /app).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// How many shards (pods) play the scenario.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(traceforge::load::plan::MAX_SHARDS)))]
    pub shards: u32,
    /// The image every pod runs (built from the repository's Dockerfile, or your own FROM it).
    #[arg(long, value_name = "IMAGE", default_value = concat!("traceforge:", env!("CARGO_PKG_VERSION")))]
    pub image: String,
    /// The PersistentVolumeClaim (ReadWriteMany) that holds the bundles.
    #[arg(long, value_name = "NAME", default_value = "traceforge-bundles")]
    pub claim: String,
    /// Override a scenario field in every pod: --set load.requests=100000
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<Override>,
    /// Give every pod this `--start-at` (RFC 3339), so the shards start their load together.
    #[arg(long, value_name = "TIME")]
    pub start_at: Option<String>,
    /// Print the Job that merges the bundles, to apply once the shards' Job is complete.
    #[arg(long)]
    pub merge: bool,
}

pub fn k8s(args: &K8sArgs) -> u8 {
    let scenario = match scenario::load(&args.file, &args.overrides) {
        Ok(s) => s,
        Err(e) => {
            errln!("error: {e}");
            return EXIT_INVALID;
        }
    };
    if let Some(at) = &args.start_at {
        if let Err(e) = super::run::parse_start_at(at) {
            errln!("error: --start-at {e}");
            return EXIT_INVALID;
        }
    }
    match scenario.shard_caveats(args.shards) {
        Ok(caveats) => {
            for c in caveats {
                errln!("warning: as {} shards: {c}", args.shards);
            }
        }
        Err(why) => {
            errln!(
                "error: {}: cannot be played as shards: {why}",
                args.file.display()
            );
            return EXIT_INVALID;
        }
    }
    let options = K8sOptions {
        file: args.file.display().to_string(),
        shards: args.shards,
        image: args.image.clone(),
        claim: args.claim.clone(),
        overrides: args.overrides.iter().map(ToString::to_string).collect(),
        start_at: args.start_at.clone(),
    };
    let manifest = if args.merge {
        k8s::merge_job(&scenario, &options)
    } else {
        k8s::shards_job(&scenario, &options)
    };
    out!("{}", k8s::to_yaml(&manifest));
    EXIT_OK
}
