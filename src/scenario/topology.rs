//! The validated topology of a scenario with `[[services]]` or `[[proxies]]`: the processes the
//! run starts, the named fault proxies in front of their dependencies, where the load enters, and
//! the user's own client when `[load] command` replaces the built-in load generator.
//!
//! A file without `[[services]]` and `[[proxies]]` has no topology ([`super::Scenario::topology`]
//! is `None`): its one proxy is `[upstream]` + `[[faults]]` + `[proxy]`, played as it always was.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::fault::FaultRule;

use super::{ProxyConfig, Route};

/// Services, named proxies and where the load enters.
#[derive(Debug, Clone)]
pub struct Topology {
    /// In start order: every service after the services it depends on (through a placeholder or
    /// through a proxy in front of it).
    pub services: Vec<ServiceConfig>,
    /// In file order.
    pub proxies: Vec<NamedProxy>,
    /// Where the built-in load generator sends its requests.
    pub entry: Entry,
    /// `[load] command`: the user's own client is the load, in place of the built-in generator.
    pub client: Option<ClientConfig>,
}

impl Topology {
    pub fn proxy(&self, name: &str) -> Option<&NamedProxy> {
        self.proxies.iter().find(|p| p.name == name)
    }

    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// Where the load enters: `[load] to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Service(String),
    Proxy(String),
}

impl Entry {
    pub fn name(&self) -> &str {
        match self {
            Entry::Service(n) | Entry::Proxy(n) => n,
        }
    }
}

/// A `[[services]]` entry: a process the run starts, waits for, logs and stops.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub name: String,
    /// The program, then its arguments; never empty.
    pub command: Vec<Template>,
    /// Added to the parent's environment, in name order (the file is read into a sorted map).
    pub env: Vec<(String, Template)>,
    /// The working directory as written (relative paths are relative to where traceforge runs);
    /// `None`: where traceforge runs.
    pub cwd: Option<PathBuf>,
    /// A fixed port (`port = 8080`); `None`: a free port picked for each run, given as `{port}`.
    pub port: Option<u16>,
    pub ready: Readiness,
    pub ready_timeout: Duration,
    pub stop_timeout: Duration,
}

/// When a service counts as ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// `GET http://127.0.0.1:{port}<path>` answers 2xx or 3xx.
    Http(String),
    /// `127.0.0.1:{port}` accepts a TCP connection (the default).
    Tcp,
    /// A line of its output contains this text.
    Log(String),
}

/// `[load] command`: the user's client or test suite.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The program, then its arguments; never empty.
    pub command: Vec<Template>,
    pub env: Vec<(String, Template)>,
    pub cwd: Option<PathBuf>,
}

/// A `[[proxies]]` entry: a fault-injecting proxy in front of one dependency.
#[derive(Debug, Clone)]
pub struct NamedProxy {
    pub name: String,
    pub upstream: ProxyUpstream,
    pub faults: Vec<FaultRule>,
    pub config: ProxyConfig,
    /// `tls = true`: the proxy serves TLS (`None`: plain HTTP).
    pub tls: Option<ListenerTls>,
}

/// The certificate a TLS listener serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerTls {
    /// A throwaway CA and certificate made for the run; `{proxies.NAME.ca_file}` is the CA's file.
    Generate,
    /// The user's PEM files, `cert_file` and `key_file`.
    Files { cert: PathBuf, key: PathBuf },
}

/// What a named proxy forwards to.
#[derive(Debug, Clone)]
pub enum ProxyUpstream {
    /// A demo upstream serving these routes (and the built-in ones).
    Mock(Vec<Route>),
    /// A server at this URL (placeholders allowed).
    Url(Template),
    /// Another `[[services]]` entry.
    Service(String),
}

/// A string with placeholders, checked when the file is read and filled in when the run starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    pub pieces: Vec<Piece>,
}

/// A piece of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    /// `{port}`: the port of the service whose command or env this is.
    Port,
    /// `{services.NAME.url}`
    ServiceUrl(String),
    /// `{proxies.NAME.url}`
    ProxyUrl(String),
    /// `{proxies.NAME.ca_file}`: the CA file of a proxy with `tls = true` and a generated
    /// certificate.
    ProxyCaFile(String),
    /// `{scenario_dir}`: the folder of the scenario file.
    ScenarioDir,
}

/// The values placeholders stand for in one run.
#[derive(Debug, Clone, Default)]
pub struct Placeholders {
    /// The port of the service being started (`None` outside a service).
    pub port: Option<u16>,
    /// Base URL per service name, `http://127.0.0.1:PORT`.
    pub services: BTreeMap<String, String>,
    /// Base URL per proxy name.
    pub proxies: BTreeMap<String, String>,
    /// The CA file per TLS proxy name (generated certificates only).
    pub proxy_ca_files: BTreeMap<String, String>,
    pub scenario_dir: String,
}

impl Template {
    /// A template of plain text.
    pub fn text(s: impl Into<String>) -> Template {
        Template {
            pieces: vec![Piece::Text(s.into())],
        }
    }

    /// The text with every placeholder filled in. A placeholder with no value (validation makes
    /// that impossible) renders as written.
    pub fn render(&self, values: &Placeholders) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Port => match values.port {
                    Some(p) => out.push_str(&p.to_string()),
                    None => out.push_str("{port}"),
                },
                Piece::ServiceUrl(n) => match values.services.get(n) {
                    Some(u) => out.push_str(u),
                    None => out.push_str(&format!("{{services.{n}.url}}")),
                },
                Piece::ProxyUrl(n) => match values.proxies.get(n) {
                    Some(u) => out.push_str(u),
                    None => out.push_str(&format!("{{proxies.{n}.url}}")),
                },
                Piece::ProxyCaFile(n) => match values.proxy_ca_files.get(n) {
                    Some(u) => out.push_str(u),
                    None => out.push_str(&format!("{{proxies.{n}.ca_file}}")),
                },
                Piece::ScenarioDir => out.push_str(&values.scenario_dir),
            }
        }
        out
    }

    pub fn uses_port(&self) -> bool {
        self.pieces.contains(&Piece::Port)
    }

    /// The services this template names, directly.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::ServiceUrl(n) => Some(n.as_str()),
            _ => None,
        })
    }

    /// The proxies this template names.
    pub fn proxies(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::ProxyUrl(n) | Piece::ProxyCaFile(n) => Some(n.as_str()),
            _ => None,
        })
    }
}

/// As written in the file.
impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => f.write_str(&t.replace('{', "{{").replace('}', "}}"))?,
                Piece::Port => f.write_str("{port}")?,
                Piece::ServiceUrl(n) => write!(f, "{{services.{n}.url}}")?,
                Piece::ProxyUrl(n) => write!(f, "{{proxies.{n}.url}}")?,
                Piece::ProxyCaFile(n) => write!(f, "{{proxies.{n}.ca_file}}")?,
                Piece::ScenarioDir => f.write_str("{scenario_dir}")?,
            }
        }
        Ok(())
    }
}
