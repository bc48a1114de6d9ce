//! gRPC and HTTP/2 through the proxy, with clients nobody here wrote: Python's `grpcio` calls a
//! demo upstream's unary gRPC routes over h2c through the proxy and sees `UNAVAILABLE` from a
//! `grpc_status = 14` fault chosen by `match.grpc`; curl speaks HTTP/2 with prior knowledge to both
//! servers.

use std::process::Stdio;

use traceforge::fault::FaultPlan;
use traceforge::scenario::ProxyConfig;

use crate::proxy::{demo_upstream, start_proxy};
use crate::support::{self, PATIENCE};

/// A demo upstream with two gRPC methods, and a proxy whose rule fails one of them.
const SCENARIO: &str = r#"
name = "grpc-test"
seed = 5

[upstream]
routes = [
  { path = "/demo.Shop/Greet", grpc = { response = "0a0568656c6c6f" } },
  { path = "/demo.Shop/Charge", grpc = { response = "" } },
]

[[faults]]
name = "charge-down"
kind = "error"
grpc_status = 14
grpc_message = "payments is down"
match = { grpc = "demo.Shop/Charge" }
"#;

const CLIENT: &str = r#"
import sys, grpc
channel = grpc.insecure_channel(sys.argv[1])
greet = channel.unary_unary("/demo.Shop/Greet")
print("greet", greet(b"\x0a\x02hi", timeout=20).hex())
charge = channel.unary_unary("/demo.Shop/Charge")
try:
    charge(b"", timeout=20)
    print("charge OK")
except grpc.RpcError as e:
    print("charge", e.code().name, e.details())
"#;

async fn run_python(script: &str, arg: &str) -> String {
    let out = tokio::time::timeout(
        PATIENCE,
        tokio::process::Command::new("python3")
            .args(["-c", script, arg])
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("the Python client did not finish"))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_sees_the_demo_answer_and_unavailable_from_a_grpc_fault() {
    if let Err(reason) = tokio::task::spawn_blocking(|| support::python_package("grpc", "grpcio"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    {
        println!("skipped: Python's grpcio is not available: {reason}");
        return;
    }
    let scenario =
        traceforge::parse_str("grpc.toml", SCENARIO, &[]).unwrap_or_else(|e| panic!("{e}"));
    let up = demo_upstream(scenario.upstream.routes.clone()).await;

    // Straight to the demo upstream: its answer, and OK for the method without a fault.
    let direct = run_python(CLIENT, &up.addr.to_string()).await;
    assert_eq!(direct, "greet 0a0568656c6c6f\ncharge OK\n");

    // Through the proxy: the same answer, and the fault's status and message.
    let proxy = start_proxy(
        &up.url(),
        FaultPlan::new(scenario.seed, scenario.faults.clone()),
        ProxyConfig::default(),
    )
    .await;
    let through = run_python(CLIENT, &proxy.addr.to_string()).await;
    assert_eq!(
        through,
        "greet 0a0568656c6c6f\ncharge UNAVAILABLE payments is down\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_speaks_http2_with_prior_knowledge_to_both_servers() {
    if !support::have_curl() {
        return;
    }
    let up = demo_upstream(vec![]).await;
    let proxy = start_proxy(
        &up.url(),
        FaultPlan::new(1, Vec::new()),
        ProxyConfig::default(),
    )
    .await;
    for base in [up.url(), proxy.url()] {
        let out = support::curl(&[
            "-s",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            &format!("{base}/api/resource"),
        ])
        .await;
        assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200", "{base}");
    }
}

/// curl's exit code and stderr for one GET whose body is dropped.
async fn curl(args: &[&str]) -> (Option<i32>, String) {
    let out = support::curl(&[&["-s", "-S", "-o", "/dev/null"], args].concat()).await;
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rst_stream_resets_the_http2_stream_with_its_code_and_closes_an_http1_connection() {
    if !support::have_curl() {
        return;
    }
    let up = demo_upstream(vec![]).await;
    let rules = crate::proxy::plan(
        1,
        "[[faults]]\nname = \"refuse\"\nkind = \"rst_stream\"\nerror_code = 8\nmatch = { path = \"/api/resource\" }\n",
    );
    let proxy = start_proxy(&up.url(), rules, ProxyConfig::default()).await;
    let target = format!("{}/api/resource", proxy.url());
    // HTTP/2: curl reports the stream's reset and its code (8, CANCEL): exit 92. (A 7,
    // REFUSED_STREAM, curl retries on a new connection, as the code invites.)
    let (code, stderr) = curl(&["--http2-prior-knowledge", &target]).await;
    assert_eq!(code, Some(92), "{stderr}");
    assert!(
        stderr.contains("CANCEL") || stderr.contains("err 8"),
        "{stderr}"
    );
    // HTTP/1.1 has no streams: the connection closes with no answer (curl: empty reply, 52).
    let (code, stderr) = curl(&["--http1.1", &target]).await;
    assert_eq!(code, Some(52), "{stderr}");
}
