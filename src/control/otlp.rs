//! OTLP/HTTP export of the shards' sampled spans, owned by the control thread.
//!
//! Shards never build an OpenTelemetry value: they send plain [`SpanRecord`]s inside
//! their snapshots (`span_ring.rs`). Here the control thread turns each record into an
//! OpenTelemetry `SpanData` — the route's name from the shard's route table, the start
//! time mapped from the shard's monotonic clock onto the wall clock — and collects them
//! into batches of up to [`BATCH`] spans, sent at least every second. One exporter
//! thread (`ringo-otlp`) posts the batches with `opentelemetry-otlp` (protobuf over
//! HTTP, through a blocking `ureq` agent): a slow or dead collector holds up that thread
//! only, never the control loop and never a shard. When the exporter is behind, whole
//! batches are dropped and counted (`ringo_otlp_spans_total{outcome="dropped"}`).
//!
//! It must never touch a shard's state: it sees records only after they crossed the
//! snapshot channel.

use std::borrow::Cow;
use std::future::Future;
use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Sender, TrySendError};
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_http::{Bytes, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter, SpanLinks};

use crate::span_ring::SpanRecord;

/// Spans per OTLP request.
const BATCH: usize = 512;
/// A partial batch is sent once it is this old.
const SEND_EVERY: Duration = Duration::from_secs(1);
/// Batches waiting for the exporter thread; past this, new batches are dropped.
const QUEUED_BATCHES: usize = 8;

/// Where and how sampled spans are exported (`[trace]` in ringo.toml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceExport {
    /// The collector's OTLP/HTTP traces URL, e.g. `http://127.0.0.1:4318/v1/traces`.
    pub endpoint: String,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// Deadline of one export request.
    pub timeout: Duration,
    /// Spans each shard keeps between two snapshots (200 ms); more are dropped, counted.
    pub spans_per_shard: usize,
}

impl Default for TraceExport {
    fn default() -> Self {
        TraceExport {
            endpoint: String::new(),
            service_name: "ringo".into(),
            timeout: Duration::from_secs(2),
            spans_per_shard: 2048,
        }
    }
}

/// Why span export could not start.
#[derive(Debug, thiserror::Error)]
pub enum TraceExportError {
    /// The exporter rejected its configuration (most often the endpoint).
    #[error("cannot build the OTLP exporter for {endpoint}: {message}")]
    Build {
        /// The configured endpoint.
        endpoint: String,
        /// The exporter's reason.
        message: String,
    },
    /// The exporter thread could not be started.
    #[error("cannot start the OTLP exporter thread: {0}")]
    Thread(#[from] std::io::Error),
    /// Spans reach the control thread with the snapshots, so export needs one.
    #[error("span export needs the control thread: configure an admin listener")]
    NoControlThread,
}

/// What happened to the spans that reached the control thread.
#[derive(Debug, Default)]
pub(crate) struct ExportCounters {
    /// Accepted by the collector.
    pub(crate) exported: AtomicU64,
    /// In a request that failed (collector down, refused, timed out).
    pub(crate) failed: AtomicU64,
    /// Never sent: the exporter thread was behind.
    pub(crate) dropped: AtomicU64,
}

/// The control thread's side of span export: the batch being filled and the queue to
/// the exporter thread.
pub(crate) struct SpanExport {
    pending: Vec<SpanData>,
    oldest: Option<Instant>,
    batches: Option<Sender<Vec<SpanData>>>,
    worker: Option<JoinHandle<()>>,
    /// Set at shutdown: after a failed export, the queued batches are dropped.
    closing: Arc<AtomicBool>,
    scope: InstrumentationScope,
    pub(crate) counters: Arc<ExportCounters>,
}

impl SpanExport {
    /// Builds the exporter and starts its thread.
    pub(crate) fn start(config: &TraceExport) -> Result<SpanExport, TraceExportError> {
        let build_error =
            |message: String| TraceExportError::Build { endpoint: config.endpoint.clone(), message };
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(config.endpoint.clone())
            .with_timeout(config.timeout)
            .with_http_client(BlockingClient::new(config.timeout))
            .build()
            .map_err(|e| build_error(e.to_string()))?;
        exporter.set_resource(
            &opentelemetry_sdk::Resource::builder_empty()
                .with_service_name(config.service_name.clone())
                .build(),
        );
        let counters = Arc::new(ExportCounters::default());
        let (tx, rx) = crossbeam_channel::bounded::<Vec<SpanData>>(QUEUED_BATCHES);
        let worker_counters = Arc::clone(&counters);
        let endpoint = config.endpoint.clone();
        let closing = Arc::new(AtomicBool::new(false));
        let worker_closing = Arc::clone(&closing);
        let worker = std::thread::Builder::new().name("ringo-otlp".into()).spawn(move || {
            let mut last_error_log: Option<Instant> = None;
            let mut last_failed = false;
            for batch in rx {
                let n = batch.len() as u64;
                // Shutting down with a collector that just failed: the rest would each
                // wait their timeout and fail too; drop them so exit is not held up.
                if last_failed && worker_closing.load(Ordering::Relaxed) {
                    worker_counters.dropped.fetch_add(n, Ordering::Relaxed);
                    continue;
                }
                match futures_executor::block_on(exporter.export(batch)) {
                    Ok(()) => {
                        last_failed = false;
                        worker_counters.exported.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(e) => {
                        last_failed = true;
                        worker_counters.failed.fetch_add(n, Ordering::Relaxed);
                        // A dead collector fails every batch: say so at most every 10 s.
                        if last_error_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                            last_error_log = Some(Instant::now());
                            tracing::warn!(%endpoint, error = %e, spans = n, "OTLP export failed; spans lost");
                        }
                    }
                }
            }
            let _ = exporter.shutdown();
        })?;
        Ok(SpanExport {
            pending: Vec::with_capacity(BATCH),
            oldest: None,
            batches: Some(tx),
            closing,
            worker: Some(worker),
            scope: InstrumentationScope::builder("ringo").with_version(env!("CARGO_PKG_VERSION")).build(),
            counters,
        })
    }

    /// Converts one shard's records; `routes` is that shard's route table, `(method,
    /// pattern)` by metric slot.
    pub(crate) fn absorb(&mut self, shard: usize, records: &[SpanRecord], routes: &[(String, String)]) {
        if records.is_empty() {
            return;
        }
        // One clock pair maps the shard's `Instant`s onto the wall clock.
        let (now, wall) = (Instant::now(), SystemTime::now());
        for record in records {
            let start = wall.checked_sub(now.saturating_duration_since(record.start)).unwrap_or(wall);
            let route = routes.get(record.slot).map(|(_, p)| p.as_str()).filter(|p| !p.starts_with('<'));
            let span = self.span_data(shard, record, route, start);
            self.pending.push(span);
            self.oldest.get_or_insert(now);
            if self.pending.len() >= BATCH {
                self.send();
            }
        }
    }

    fn span_data(&self, shard: usize, r: &SpanRecord, route: Option<&str>, start: SystemTime) -> SpanData {
        let name = match route {
            Some(route) => format!("{} {route}", r.method),
            None => r.method.to_owned(),
        };
        let mut attributes = Vec::with_capacity(4);
        attributes.push(KeyValue::new("http.request.method", r.method));
        if let Some(route) = route {
            attributes.push(KeyValue::new("http.route", route.to_owned()));
        }
        attributes.push(KeyValue::new("http.response.status_code", i64::from(r.status)));
        attributes.push(KeyValue::new("ringo.shard", shard as i64));
        SpanData {
            span_context: SpanContext::new(
                TraceId::from_bytes(r.ids.trace_id),
                SpanId::from_bytes(r.ids.span_id),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: r.ids.parent_id.map_or(SpanId::INVALID, SpanId::from_bytes),
            parent_span_is_remote: r.ids.parent_id.is_some(),
            span_kind: SpanKind::Server,
            name: Cow::Owned(name),
            start_time: start,
            end_time: start + r.duration,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            // OTel HTTP conventions: a server span is an error only for 5xx answers.
            status: if r.status >= 500 { Status::error("") } else { Status::Unset },
            instrumentation_scope: self.scope.clone(),
        }
    }

    /// Spans `(exported, failed, dropped)` so far.
    pub(crate) fn counts(&self) -> [u64; 3] {
        let c = &self.counters;
        [
            c.exported.load(Ordering::Relaxed),
            c.failed.load(Ordering::Relaxed),
            c.dropped.load(Ordering::Relaxed),
        ]
    }

    /// Sends the partial batch once it is [`SEND_EVERY`] old.
    pub(crate) fn tick(&mut self, now: Instant) {
        if self.oldest.is_some_and(|t| now.duration_since(t) >= SEND_EVERY) {
            self.send();
        }
    }

    fn send(&mut self) {
        self.oldest = None;
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.pending, Vec::with_capacity(BATCH));
        let Some(tx) = &self.batches else { return };
        if let Err(TrySendError::Full(batch) | TrySendError::Disconnected(batch)) = tx.try_send(batch) {
            self.counters.dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
    }

    /// Sends what is pending and waits for the exporter thread to post it (each
    /// request is bounded by the export timeout; after a failure the rest is dropped,
    /// so a dead collector holds shutdown up by one timeout at most).
    pub(crate) fn finish(&mut self) {
        self.send();
        self.closing.store(true, Ordering::Relaxed);
        self.batches = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

impl Drop for SpanExport {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `opentelemetry-http`'s client trait over a blocking `ureq` agent: the exporter
/// thread has no async runtime, and needs none.
#[derive(Debug)]
struct BlockingClient {
    agent: ureq::Agent,
}

impl BlockingClient {
    fn new(timeout: Duration) -> BlockingClient {
        BlockingClient { agent: ureq::AgentBuilder::new().timeout(timeout).build() }
    }
}

// The trait is declared with `async_trait`; this is its expansion written out, so the
// crate needs no macro dependency for one impl.
impl opentelemetry_http::HttpClient for BlockingClient {
    fn send_bytes<'a, 'b>(
        &'a self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'b>>
    where
        'a: 'b,
    {
        Box::pin(async move { self.post(request) })
    }
}

impl BlockingClient {
    fn post(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let mut call = self.agent.request(parts.method.as_str(), &parts.uri.to_string());
        for (name, value) in &parts.headers {
            if let Ok(value) = value.to_str() {
                call = call.set(name.as_str(), value);
            }
        }
        let response = match call.send_bytes(&body) {
            Ok(response) | Err(ureq::Error::Status(_, response)) => response,
            Err(e) => return Err(Box::new(e)),
        };
        let status = response.status();
        let mut bytes = Vec::new();
        // Collectors answer with a small status message; 64 KiB is plenty.
        response.into_reader().take(64 << 10).read_to_end(&mut bytes)?;
        Ok(Response::builder().status(status).body(Bytes::from(bytes))?)
    }
}
