//! The in-memory transport of virtual-time runs: servers register under an authority
//! (`upstream.traceforge:80`), and a connector for hyper's client opens `tokio::io::duplex` pipes
//! to them. No socket, no kernel, no real time: with tokio's clock paused, a run advances from one
//! timer to the next, so every latency is exact and repeatable.
//!
//! The servers, the proxy and the load generator run the very same code as over TCP: they serve
//! any `AsyncRead + AsyncWrite` stream and reach their peers through a connector.

use std::collections::HashMap;
use std::future::Ready;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::DuplexStream;

/// Bytes buffered in each direction of an in-memory connection, like a socket buffer.
const PIPE_CAPACITY: usize = 64 * 1024;

type Acceptor = Arc<dyn Fn(DuplexStream) + Send + Sync>;

/// The set of in-memory servers of one run, by authority (`host:port`).
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    servers: Arc<Mutex<HashMap<String, Acceptor>>>,
}

impl std::fmt::Debug for MemoryNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .servers
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("MemoryNetwork")
            .field("servers", &names)
            .finish()
    }
}

impl MemoryNetwork {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a server: `accept` is called with the server's end of every new connection and
    /// is expected to spawn a task serving it. `authority` is `host:port` as it appears in URLs.
    pub fn listen(&self, authority: &str, accept: impl Fn(DuplexStream) + Send + Sync + 'static) {
        if let Ok(mut servers) = self.servers.lock() {
            servers.insert(authority.to_ascii_lowercase(), Arc::new(accept));
        }
    }

    /// A connector for hyper-util's client that reaches the servers of this network.
    pub fn connector(&self) -> MemoryConnector {
        MemoryConnector {
            network: self.clone(),
        }
    }

    /// Opens a connection to the server at `authority`: the client's end of a new pipe.
    pub fn connect(&self, authority: &str) -> io::Result<DuplexStream> {
        let accept = self
            .servers
            .lock()
            .ok()
            .and_then(|s| s.get(&authority.to_ascii_lowercase()).cloned())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("no in-memory server at {authority}"),
                )
            })?;
        let (client, server) = tokio::io::duplex(PIPE_CAPACITY);
        accept(server);
        Ok(client)
    }
}

/// Opens in-memory connections for hyper-util's pooled client.
#[derive(Clone, Debug)]
pub struct MemoryConnector {
    network: MemoryNetwork,
}

impl tower_service::Service<Uri> for MemoryConnector {
    type Response = MemoryStream;
    type Error = io::Error;
    type Future = Ready<Result<MemoryStream, io::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let authority = match (uri.host(), uri.port_u16()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => format!("{host}:80"),
            _ => {
                return std::future::ready(Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{uri} has no host"),
                )));
            }
        };
        std::future::ready(self.network.connect(&authority).map(|io| MemoryStream {
            io: TokioIo::new(io),
        }))
    }
}

/// The client's end of an in-memory connection, as hyper's client wants it.
#[derive(Debug)]
pub struct MemoryStream {
    io: TokioIo<DuplexStream>,
}

impl Connection for MemoryStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for MemoryStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for MemoryStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Shutdown;
    use crate::upstream::{self, Upstream, UpstreamOptions};
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    fn paused_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_demo_upstream_answers_over_a_pipe_in_virtual_time() {
        paused_runtime().block_on(async {
            let network = MemoryNetwork::new();
            let route = crate::scenario::Route {
                path: "/slow".into(),
                methods: vec![],
                status: hyper::StatusCode::OK,
                body: "done".into(),
                headers: vec![],
                latency: std::time::Duration::from_millis(1234),
                grpc: None,
            };
            let up = Arc::new(Upstream::new(UpstreamOptions {
                routes: vec![route],
                ..UpstreamOptions::default()
            }));
            network.listen("upstream.test:80", move |io| {
                tokio::spawn(upstream::serve_connection(
                    io,
                    up.clone(),
                    Shutdown::never(),
                ));
            });
            let client: Client<_, Full<Bytes>> =
                Client::builder(TokioExecutor::new()).build(network.connector());
            let started = tokio::time::Instant::now();
            let response = client
                .get("http://upstream.test/slow".parse().unwrap_or_default())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let body = response.into_body().collect().await.map(|b| b.to_bytes());
            assert_eq!(body.ok().as_deref(), Some(&b"done"[..]));
            // Exactly the route's latency: the clock only moves when every task waits on a timer.
            assert_eq!(started.elapsed(), std::time::Duration::from_millis(1234));
        });
    }

    #[test]
    fn an_unknown_authority_is_refused() {
        let network = MemoryNetwork::new();
        let err = network.connect("nowhere:80").err().map(|e| e.kind());
        assert_eq!(err, Some(io::ErrorKind::ConnectionRefused));
    }
}
