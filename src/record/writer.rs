//! Streaming outcome writers. Each outcome is written as it finishes, so memory does not grow with
//! the request count and a file is usable even if the run stops early: [`OutcomeWriter::finish`]
//! closes the JSON array, and the runner calls it on every path out, failures and Ctrl-C included.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::Outcome;

/// Output formats for recorded outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON array of outcomes.
    Json,
    /// JSON lines: one outcome per line.
    Jsonl,
    /// CSV with a header row, one row per request.
    Csv,
}

/// The CSV columns, one row per logical request. The `ws_` columns describe the last attempt's
/// WebSocket connection and are empty for HTTP targets.
pub const CSV_HEADER: [&str; 21] = [
    "index",
    "method",
    "path",
    "status",
    "error",
    "attempts",
    "retries",
    "faults",
    "latency_ms",
    "start_ms",
    "trace_id",
    "request_id",
    "request_ids",
    "scheduled_ms",
    "service_ms",
    "fault_kinds",
    "protocol",
    "ws_sent",
    "ws_echoed",
    "ws_close_code",
    "ws_end",
];

/// Writes outcomes to any `Write` in one of the formats.
pub struct OutcomeWriter<W: Write> {
    format: Format,
    out: Option<BufWriter<W>>,
    csv: Option<csv::Writer<BufWriter<W>>>,
    written: u64,
}

impl<W: Write> OutcomeWriter<W> {
    pub fn new(format: Format, out: W) -> io::Result<Self> {
        let mut out = BufWriter::new(out);
        let mut csv = None;
        match format {
            Format::Json => out.write_all(b"[")?,
            Format::Jsonl => {}
            Format::Csv => {
                let mut w = csv::Writer::from_writer(out);
                w.write_record(CSV_HEADER).map_err(io::Error::other)?;
                csv = Some(w);
                return Ok(OutcomeWriter {
                    format,
                    out: None,
                    csv,
                    written: 0,
                });
            }
        }
        Ok(OutcomeWriter {
            format,
            out: Some(out),
            csv,
            written: 0,
        })
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn write(&mut self, outcome: &Outcome) -> io::Result<()> {
        match (self.format, self.out.as_mut(), self.csv.as_mut()) {
            (Format::Json, Some(out), _) => {
                out.write_all(if self.written == 0 { b"\n" } else { b",\n" })?;
                serde_json::to_writer(&mut *out, outcome)?;
            }
            (Format::Jsonl, Some(out), _) => {
                serde_json::to_writer(&mut *out, outcome)?;
                out.write_all(b"\n")?;
            }
            (Format::Csv, _, Some(w)) => {
                w.write_record(csv_row(outcome)).map_err(io::Error::other)?;
            }
            _ => return Err(io::Error::other("the writer was already finished")),
        }
        self.written += 1;
        Ok(())
    }

    /// Completes the file (closes the JSON array) and flushes it. Idempotent.
    pub fn finish(&mut self) -> io::Result<()> {
        if let Some(mut out) = self.out.take() {
            if self.format == Format::Json {
                out.write_all(if self.written == 0 { b"]\n" } else { b"\n]\n" })?;
            }
            out.flush()?;
        }
        if let Some(mut w) = self.csv.take() {
            w.flush()?;
        }
        Ok(())
    }

    /// Flushes what is buffered without closing the file.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(out) = self.out.as_mut() {
            out.flush()?;
        }
        if let Some(w) = self.csv.as_mut() {
            w.flush()?;
        }
        Ok(())
    }
}

impl<W: Write> Drop for OutcomeWriter<W> {
    fn drop(&mut self) {
        // A last chance to leave a valid file when a caller returns early; errors have nowhere to go.
        let _ = self.finish();
    }
}

/// An outcome file that another thread can complete: a forced exit (a second signal) finishes it
/// while the recorder may still hold it. Each write takes the lock, which nobody else holds in a
/// normal run.
#[derive(Clone)]
pub struct SharedWriter(Arc<Mutex<OutcomeWriter<File>>>);

impl SharedWriter {
    fn lock(&self) -> MutexGuard<'_, OutcomeWriter<File>> {
        // A writer is plain data: a panic elsewhere while it was locked leaves it usable.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn write(&self, outcome: &Outcome) -> io::Result<()> {
        self.lock().write(outcome)
    }

    /// Completes the file; see [`OutcomeWriter::finish`]. Idempotent.
    pub fn finish(&self) -> io::Result<()> {
        self.lock().finish()
    }

    pub fn written(&self) -> u64 {
        self.lock().written()
    }
}

/// The outcome files a process has open, so that a forced exit can complete every one of them
/// before it goes. Cloning shares the list.
#[derive(Clone, Default)]
pub struct OpenFiles(Arc<Mutex<Vec<SharedWriter>>>);

impl std::fmt::Debug for OpenFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpenFiles")
    }
}

impl OpenFiles {
    /// Starts an outcome file in `format` and keeps it on the list.
    pub fn open(&self, format: Format, file: File) -> io::Result<SharedWriter> {
        let writer = SharedWriter(Arc::new(Mutex::new(OutcomeWriter::new(format, file)?)));
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(writer.clone());
        Ok(writer)
    }

    /// Completes `writer` and takes it off the list.
    pub fn close(&self, writer: &SharedWriter) -> io::Result<()> {
        let result = writer.finish();
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|w| !Arc::ptr_eq(&w.0, &writer.0));
        result
    }

    /// Completes every open file (a forced exit); the errors are returned, not lost.
    pub fn finish_all(&self) -> Vec<io::Error> {
        let open = std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner));
        open.iter().filter_map(|w| w.finish().err()).collect()
    }
}

fn ms(d: std::time::Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// One field per attempt joined with `;`, the values within an attempt with `+`; empty when no
/// attempt has any.
fn join_per_attempt(o: &Outcome, field: impl Fn(&super::Attempt) -> &Vec<String>) -> String {
    let parts: Vec<String> = o.attempts.iter().map(|a| field(a).join("+")).collect();
    if parts.iter().all(String::is_empty) {
        String::new()
    } else {
        parts.join(";")
    }
}

fn csv_row(o: &Outcome) -> Vec<String> {
    let faults = join_per_attempt(o, |a| &a.faults);
    vec![
        o.index.to_string(),
        o.method.clone(),
        o.path.clone(),
        o.status.map(|s| s.to_string()).unwrap_or_default(),
        o.error.map(|e| e.to_string()).unwrap_or_default(),
        o.attempts.len().to_string(),
        o.retries().to_string(),
        faults,
        ms(o.latency),
        ms(o.start),
        o.trace_id.clone(),
        o.attempts
            .last()
            .map(|a| a.request_id.clone())
            .unwrap_or_default(),
        o.request_ids().collect::<Vec<_>>().join(";"),
        ms(o.scheduled),
        ms(o.service),
        join_per_attempt(o, |a| &a.fault_kinds),
        o.protocol.to_string(),
        ws(o, |w| w.sent.to_string()),
        ws(o, |w| w.echoed.to_string()),
        ws(o, |w| {
            w.close_code.map(|c| c.to_string()).unwrap_or_default()
        }),
        ws(o, |w| w.end.as_str().to_string()),
    ]
}

/// A value of the last attempt's WebSocket connection; empty when it had none.
fn ws(o: &Outcome, field: impl Fn(&super::WsSession) -> String) -> String {
    o.attempts
        .last()
        .and_then(|a| a.websocket.as_ref())
        .map(field)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Attempt, ErrorKind};
    use std::time::Duration;

    fn outcome(index: u64) -> Outcome {
        Outcome {
            index,
            method: "GET".into(),
            path: "/api/resource".into(),
            status: Some(200),
            error: None,
            trace_id: "t".into(),
            attempts: vec![
                Attempt {
                    request_id: "a".into(),
                    status: None,
                    error: Some(ErrorKind::Timeout),
                    faults: vec!["slow".into()],
                    fault_kinds: vec!["delay".into()],
                    bytes: 0,
                    latency: Duration::from_millis(5),
                    start: Duration::ZERO,
                    websocket: None,
                },
                Attempt {
                    request_id: "b".into(),
                    status: Some(200),
                    error: None,
                    faults: vec![],
                    fault_kinds: vec![],
                    bytes: 10,
                    latency: Duration::from_micros(1500),
                    start: Duration::from_millis(105),
                    websocket: None,
                },
            ],
            start: Duration::ZERO,
            scheduled: Duration::ZERO,
            latency: Duration::from_millis(7),
            service: Duration::from_millis(7),
            protocol: Default::default(),
            calls: Default::default(),
        }
    }

    fn write_all(format: Format, n: u64) -> String {
        let mut buf = Vec::new();
        {
            let mut w = OutcomeWriter::new(format, &mut buf).unwrap_or_else(|e| panic!("{e}"));
            for i in 0..n {
                w.write(&outcome(i)).unwrap_or_else(|e| panic!("{e}"));
            }
            w.finish().unwrap_or_else(|e| panic!("{e}"));
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    #[test]
    fn json_is_a_valid_array_even_when_empty() {
        for n in [0, 1, 3] {
            let text = write_all(Format::Json, n);
            let back: Vec<Outcome> =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
            assert_eq!(back.len() as u64, n);
            if n > 0 {
                assert_eq!(back[0], outcome(0));
            }
        }
    }

    #[test]
    fn jsonl_has_one_outcome_per_line() {
        let text = write_all(Format::Jsonl, 3);
        let lines: Vec<Outcome> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn csv_has_a_header_and_one_row_per_request() {
        let text = write_all(Format::Csv, 2);
        let mut r = csv::Reader::from_reader(text.as_bytes());
        let header: Vec<String> = r
            .headers()
            .map(|h| h.iter().map(String::from).collect())
            .unwrap_or_default();
        assert_eq!(header, CSV_HEADER);
        let rows: Vec<csv::StringRecord> = r.records().filter_map(Result::ok).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(&rows[1][0], "1");
        assert_eq!(&rows[1][6], "1");
        assert_eq!(&rows[1][7], "slow;");
        assert_eq!(&rows[1][12], "a;b");
    }
}
