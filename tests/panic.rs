//! A panic anywhere in a run is a runtime failure, never a shorter pass. In a binary of its own:
//! the panic watch counts panics process-wide, so the panics planted here must not land beside
//! other tests' runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support.rs"]
mod support;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use hyper::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use traceforge::load::{Dial, LoadOptions};
use traceforge::runner::{self, RunError, RunOptions};

use support::bounded;

/// How a dialer breaks the run it serves.
#[derive(Clone, Copy, PartialEq)]
enum Sabotage {
    /// The second dial panics: its load worker dies with the request it had taken.
    PanicInDial,
    /// Every dial works, but the first also starts a task that panics on its own, as a bug in a
    /// server's connection task would.
    PanicInDetachedTask,
}

/// A TCP dialer with a bug planted in it.
#[derive(Clone)]
struct Sabotaged {
    inner: HttpConnector,
    dials: Arc<AtomicUsize>,
    how: Sabotage,
}

impl tower_service::Service<Uri> for Sabotaged {
    type Response = <HttpConnector as tower_service::Service<Uri>>::Response;
    type Error = <HttpConnector as tower_service::Service<Uri>>::Error;
    type Future = <HttpConnector as tower_service::Service<Uri>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        self.inner.call(uri)
    }
}

impl Dial for Sabotaged {
    type Io = TokioIo<tokio::net::TcpStream>;

    fn dial(&self, uri: Uri) -> impl Future<Output = std::io::Result<Self::Io>> + Send {
        let n = self.dials.fetch_add(1, Ordering::SeqCst);
        let how = self.how;
        let mut inner = self.inner.clone();
        async move {
            if how == Sabotage::PanicInDial && n == 1 {
                panic!("planted panic in a dial");
            }
            if how == Sabotage::PanicInDetachedTask && n == 0 {
                let _ = tokio::spawn(async { panic!("planted panic in a detached task") }).await;
            }
            let connect: Pin<Box<_>> = Box::pin(tower_service::Service::call(&mut inner, uri));
            connect.await.map_err(std::io::Error::other)
        }
    }
}

async fn sabotaged_run(how: Sabotage, output: &Path) -> Result<u64, RunError> {
    let (upstream, _hits) = support::counting_upstream().await;
    let scenario = traceforge::scenario::parse_str(
        "sabotaged.toml",
        "name = \"sabotaged\"\nseed = 1\n[load]\nrequests = 10\nconcurrency = 2\n",
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let load = LoadOptions {
        base: upstream.url().parse().unwrap_or_else(|e| panic!("{e}")),
        seed: scenario.seed,
        load: scenario.load.clone(),
        tls: None,
        calls: None,
    };
    let options = RunOptions {
        output: Some(output.to_path_buf()),
        ..RunOptions::new("")
    };
    let dialer = Sabotaged {
        inner: traceforge::load::tcp_dialer(),
        dials: Arc::new(AtomicUsize::new(0)),
        how,
    };
    runner::play_with(dialer, load, &options, |_| {})
        .await
        .map(|(summary, _)| summary.requests)
}

fn outcomes_in(path: &Path) -> usize {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_str::<Vec<serde_json::Value>>(&text)
        .unwrap_or_else(|e| panic!("{e}: {text}"))
        .len()
}

#[tokio::test]
async fn a_panic_in_a_load_worker_or_any_task_of_the_load_is_a_runtime_error() {
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let output = scratch.path().join("out.json");
    let result = bounded(sabotaged_run(Sabotage::PanicInDial, &output)).await;
    match result {
        Err(RunError::Panicked { what, message }) => {
            assert_eq!(what, "the load generator");
            assert!(message.contains("planted panic in a dial"), "{message}");
        }
        other => panic!("expected a panic error, got {other:?}"),
    }
    // What was recorded before the panic is still a complete file.
    assert!(outcomes_in(&output) < 10);

    // The panic watch counts panics process-wide: the second half runs after the first, not
    // beside it, so the planted panic above cannot be mistaken for this one.
    traceforge::panic_watch::install();
    let output = scratch.path().join("out2.json");
    let result = bounded(sabotaged_run(Sabotage::PanicInDetachedTask, &output)).await;
    match result {
        Err(RunError::Panicked { message, .. }) => {
            assert!(
                message.contains("planted panic in a detached task"),
                "{message}"
            );
        }
        other => panic!("expected a panic error, got {other:?}"),
    }
    assert_eq!(
        outcomes_in(&output),
        10,
        "every request was played and kept"
    );
}
