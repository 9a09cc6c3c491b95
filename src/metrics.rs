//! Prometheus metrics, served as OpenMetrics text on the debug listener
//! (`http.debug.prometheus`), named as registry:2 names them so that its dashboards and
//! alerts keep working: `registry_http_*` per route (`handler`), method and status,
//! `registry_storage_action_seconds` per driver and action; plus ours (uploads in progress,
//! bytes pushed and pulled, authentication failures and throttles, garbage collection).
//!
//! One process-wide set, switched on once at start-up by [`enable`]: code that records asks
//! [`get`], which is `None` while metrics are off, so a registry without them pays one
//! atomic load per place that would record and nothing else.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The content type of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `registry_http_requests_total`'s labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub handler: &'static str,
    pub code: u16,
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandlerMethod {
    pub handler: &'static str,
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandlerLabel {
    pub handler: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StorageLabels {
    pub driver: &'static str,
    pub action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// registry:2's proxy metrics' label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    /// `blob` or `manifest`.
    pub r#type: &'static str,
}

/// The labels of registry:3's notification series, in its order: `type` or `code` (none
/// for the pending gauge), then `endpoint`.
pub type NotificationLabels = Vec<(&'static str, String)>;

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Histograms<HandlerMethod>,
    pub request_size: Histograms<HandlerLabel>,
    pub response_size: Histograms<HandlerLabel>,
    pub in_flight: Family<HandlerLabel, Gauge>,
    pub storage_action: Histograms<StorageLabels>,
    /// Upload requests (POST, PATCH, PUT of an upload) being received right now.
    pub uploads_in_progress: Gauge,
    /// Bytes of blobs and manifests received by uploads and manifest PUTs that succeeded.
    pub bytes_pushed: Counter,
    /// Bytes of blobs and manifests answered to GETs.
    pub bytes_pulled: Counter,
    pub auth_failures: Family<ReasonLabel, Counter>,
    pub auth_throttled: Counter,
    pub gc_runs: Counter,
    pub gc_bytes_freed: Counter,
    pub gc_blobs_removed: Counter,
    pub gc_duration: Histogram,
    pub notifications_sent: Counter,
    pub notifications_failed: Counter,
    pub notifications_dropped: Counter,
    /// registry:3's `registry_notifications_events_total{type,endpoint}`: `Events` queued,
    /// `Successes` and `Failures` (2xx or not) and `Errors` (no answer) of each attempt.
    pub notification_events: Family<NotificationLabels, Counter>,
    /// registry:3's `registry_notifications_pending_total{endpoint}` (a gauge, named so).
    pub notification_pending: Family<NotificationLabels, Gauge>,
    /// registry:3's `registry_notifications_status_total{code,endpoint}`, `code` as
    /// `200 OK`.
    pub notification_status: Family<NotificationLabels, Counter>,
    /// The pull-through cache, by `type` (blob, manifest), as registry:2 names them:
    /// requests for proxied content, those answered from storage, those fetched upstream,
    /// the bytes fetched and the bytes answered.
    pub proxy_requests: Family<TypeLabel, Counter>,
    pub proxy_hits: Family<TypeLabel, Counter>,
    pub proxy_misses: Family<TypeLabel, Counter>,
    pub proxy_pulled_bytes: Family<TypeLabel, Counter>,
    pub proxy_pushed_bytes: Family<TypeLabel, Counter>,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~65 s: a manifest from the cache is well under a millisecond, a large
    // blob upload takes minutes.
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

fn size_histogram() -> Histogram {
    // 256 B to 64 GiB in factors of 4.
    Histogram::new(exponential_buckets(256.0, 4.0, 15))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("registry");
        let m = Metrics {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            request_size: Family::new_with_constructor(size_histogram),
            response_size: Family::new_with_constructor(size_histogram),
            in_flight: Family::default(),
            storage_action: Family::new_with_constructor(latency_histogram),
            uploads_in_progress: Gauge::default(),
            bytes_pushed: Counter::default(),
            bytes_pulled: Counter::default(),
            auth_failures: Family::default(),
            auth_throttled: Counter::default(),
            gc_runs: Counter::default(),
            gc_bytes_freed: Counter::default(),
            gc_blobs_removed: Counter::default(),
            gc_duration: Histogram::new(exponential_buckets(0.01, 4.0, 12)),
            notifications_sent: Counter::default(),
            notifications_failed: Counter::default(),
            notifications_dropped: Counter::default(),
            notification_events: Family::default(),
            notification_pending: Family::default(),
            notification_status: Family::default(),
            proxy_requests: Family::default(),
            proxy_hits: Family::default(),
            proxy_misses: Family::default(),
            proxy_pulled_bytes: Family::default(),
            proxy_pushed_bytes: Family::default(),
            registry: Registry::default(),
        };
        // Counters get their `_total` from the encoder.
        let r = &mut registry;
        r.register(
            "http_requests",
            "Requests served, by route, status and method",
            m.requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "Time from a request's arrival to its response head",
            m.request_duration.clone(),
        );
        r.register(
            "http_request_size_bytes",
            "Request body sizes as the clients declared them",
            m.request_size.clone(),
        );
        r.register(
            "http_response_size_bytes",
            "Response body sizes",
            m.response_size.clone(),
        );
        r.register(
            "http_in_flight_requests",
            "Requests being served",
            m.in_flight.clone(),
        );
        r.register(
            "storage_action_seconds",
            "Time the storage driver takes per action",
            m.storage_action.clone(),
        );
        r.register(
            "uploads_in_progress",
            "Upload requests receiving data now",
            m.uploads_in_progress.clone(),
        );
        r.register(
            "pushed_bytes",
            "Bytes of blobs and manifests pushed",
            m.bytes_pushed.clone(),
        );
        r.register(
            "pulled_bytes",
            "Bytes of blobs and manifests pulled",
            m.bytes_pulled.clone(),
        );
        r.register(
            "auth_failures",
            "Requests refused for their credentials or permissions, by reason",
            m.auth_failures.clone(),
        );
        r.register(
            "auth_throttled",
            "Requests refused while failures from their address or user are throttled",
            m.auth_throttled.clone(),
        );
        r.register("gc_runs", "Garbage collections run", m.gc_runs.clone());
        r.register(
            "gc_freed_bytes",
            "Bytes freed by garbage collection",
            m.gc_bytes_freed.clone(),
        );
        r.register(
            "gc_removed_blobs",
            "Blobs removed by garbage collection",
            m.gc_blobs_removed.clone(),
        );
        r.register(
            "gc_duration_seconds",
            "Time each garbage collection took",
            m.gc_duration.clone(),
        );
        r.register(
            "notifications_sent",
            "Events an endpoint accepted",
            m.notifications_sent.clone(),
        );
        r.register(
            "notifications_failed",
            "Attempts to send an event that failed (each is retried)",
            m.notifications_failed.clone(),
        );
        r.register(
            "notifications_dropped",
            "Events dropped because a queue was full",
            m.notifications_dropped.clone(),
        );
        // registry:3's series, with its names and help (go-metrics names a gauge in the
        // unit `total` `_total` too).
        r.register(
            "notifications_events",
            "The number of total events",
            m.notification_events.clone(),
        );
        r.register(
            "notifications_pending_total",
            "The gauge of pending events in queue",
            m.notification_pending.clone(),
        );
        r.register(
            "notifications_status",
            "The number of status code",
            m.notification_status.clone(),
        );
        for (name, help, family) in [
            (
                "proxy_requests",
                "Requests for content of proxied repositories",
                &m.proxy_requests,
            ),
            (
                "proxy_hits",
                "Proxied content answered from storage",
                &m.proxy_hits,
            ),
            (
                "proxy_misses",
                "Proxied content fetched from the upstream",
                &m.proxy_misses,
            ),
            (
                "proxy_pulled_bytes",
                "Bytes fetched from the upstreams",
                &m.proxy_pulled_bytes,
            ),
            (
                "proxy_pushed_bytes",
                "Bytes of proxied content answered to clients",
                &m.proxy_pushed_bytes,
            ),
        ] {
            // Both types from the start, at zero, as registry:2 shows them.
            for t in ["blob", "manifest"] {
                let _ = family.get_or_create(&TypeLabel { r#type: t });
            }
            r.register(name, help, family.clone());
        }
        Metrics { registry, ..m }
    }

    /// A request for proxied content (`type`: blob, manifest).
    pub fn proxy_request(&self, r#type: &'static str) {
        self.proxy_requests
            .get_or_create(&TypeLabel { r#type })
            .inc();
    }

    /// Proxied content answered from storage.
    pub fn proxy_hit(&self, r#type: &'static str) {
        self.proxy_hits.get_or_create(&TypeLabel { r#type }).inc();
    }

    /// Proxied content fetched from its upstream: `pulled` bytes.
    pub fn proxy_miss(&self, r#type: &'static str, pulled: u64) {
        let t = TypeLabel { r#type };
        self.proxy_misses.get_or_create(&t).inc();
        self.proxy_pulled_bytes.get_or_create(&t).inc_by(pulled);
    }

    /// Bytes of proxied content answered.
    pub fn proxy_pushed(&self, r#type: &'static str, bytes: u64) {
        self.proxy_pushed_bytes
            .get_or_create(&TypeLabel { r#type })
            .inc_by(bytes);
    }

    /// Notes a request's arrival; the guard records it when its response is ready.
    pub fn request(
        &'static self,
        handler: &'static str,
        method: &'static str,
        size: u64,
    ) -> RequestTimer {
        let series = self.route_series(handler, method);
        series.in_flight.inc();
        if size > 0 {
            series.request_size.observe(size as f64);
        }
        RequestTimer {
            metrics: self,
            handler,
            method,
            series,
            start: Instant::now(),
        }
    }

    /// The series of one handler and method, resolved once per thread: a lookup in a
    /// labelled family (a hash of the labels and a lock) was most of what recording a
    /// request cost (benches/metrics-cost.sh).
    fn route_series(
        &self,
        handler: &'static str,
        method: &'static str,
    ) -> std::sync::Arc<RouteSeries> {
        let key = (handler.as_ptr() as usize, method.as_ptr() as usize, 0);
        ROUTES.with(|routes| {
            routes
                .borrow_mut()
                .entry(key)
                .or_insert_with(|| {
                    let labels = HandlerLabel { handler };
                    std::sync::Arc::new(RouteSeries {
                        in_flight: self.in_flight.get_or_create_owned(&labels),
                        request_size: self.request_size.get_or_create(&labels).clone(),
                        response_size: self.response_size.get_or_create(&labels).clone(),
                        duration: self
                            .request_duration
                            .get_or_create(&HandlerMethod { handler, method })
                            .clone(),
                    })
                })
                .clone()
        })
    }

    /// `registry_http_requests_total` of one handler, method and status, resolved once per
    /// thread.
    fn requests_counter(&self, handler: &'static str, method: &'static str, code: u16) -> Counter {
        let key = (handler.as_ptr() as usize, method.as_ptr() as usize, code);
        COUNTERS.with(|counters| {
            counters
                .borrow_mut()
                .entry(key)
                .or_insert_with(|| {
                    self.requests
                        .get_or_create(&RequestLabels {
                            handler,
                            code,
                            method,
                        })
                        .clone()
                })
                .clone()
        })
    }

    /// Notes an upload request receiving data, until the guard drops.
    pub fn upload(&'static self) -> Upload {
        self.uploads_in_progress.inc();
        Upload(self)
    }

    /// Records one storage action.
    pub fn storage(&self, driver: &'static str, action: &'static str, took: Duration) {
        self.storage_action
            .get_or_create(&StorageLabels { driver, action })
            .observe(took.as_secs_f64());
    }

    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Records a finished garbage collection.
    pub fn gc_finished(&self, blobs_removed: u64, bytes_freed: u64, took: Duration) {
        self.gc_runs.inc();
        self.gc_blobs_removed.inc_by(blobs_removed);
        self.gc_bytes_freed.inc_by(bytes_freed);
        self.gc_duration.observe(took.as_secs_f64());
    }
}

/// A request being served (see [`Metrics::request`]).
pub struct RequestTimer {
    metrics: &'static Metrics,
    handler: &'static str,
    method: &'static str,
    series: std::sync::Arc<RouteSeries>,
    start: Instant,
}

/// One handler's and method's series (see [`Metrics::route_series`]).
struct RouteSeries {
    in_flight: Gauge,
    request_size: Histogram,
    response_size: Histogram,
    duration: Histogram,
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        self.series.in_flight.dec();
    }
}

/// A hasher for keys that are already well spread (addresses and a status).
#[derive(Default)]
struct AddressHasher(u64);

impl std::hash::Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }
}

type ByAddress<V> =
    RefCell<HashMap<(usize, usize, u16), V, std::hash::BuildHasherDefault<AddressHasher>>>;

thread_local! {
    static ROUTES: ByAddress<std::sync::Arc<RouteSeries>> = RefCell::default();
    static COUNTERS: ByAddress<Counter> = RefCell::default();
}

impl RequestTimer {
    /// The response is ready: its status and body size.
    pub fn finish(self, code: u16, size: u64) {
        self.metrics
            .requests_counter(self.handler, self.method, code)
            .inc();
        self.series
            .duration
            .observe(self.start.elapsed().as_secs_f64());
        self.series.response_size.observe(size as f64);
        // `self` drops here: the request leaves the in-flight gauge.
    }
}

/// An upload request in progress (see [`Metrics::upload`]).
pub struct Upload(&'static Metrics);

impl Drop for Upload {
    fn drop(&mut self) {
        self.0.uploads_in_progress.dec();
    }
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// Switches metrics on for the life of the process.
pub fn enable() -> &'static Metrics {
    METRICS.get_or_init(Metrics::new)
}

/// The metrics, when they are on.
#[inline]
pub fn get() -> Option<&'static Metrics> {
    METRICS.get()
}

/// Every metric as OpenMetrics text (empty while metrics are off).
pub fn encode() -> String {
    let mut out = String::new();
    if let Some(m) = get() {
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &m.registry);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_registry_2_s() {
        let m = enable();
        m.request("manifest", "GET", 0).finish(200, 512);
        m.storage("filesystem", "GetContent", Duration::from_millis(1));
        let text = encode();
        for expected in [
            "registry_http_requests_total{handler=\"manifest\",code=\"200\",method=\"GET\"} 1",
            "registry_http_request_duration_seconds_bucket{le=\"0.0005\",handler=\"manifest\",method=\"GET\"} 1",
            "registry_http_response_size_bytes_sum{handler=\"manifest\"} 512.0",
            "registry_http_in_flight_requests{handler=\"manifest\"} 0",
            "registry_storage_action_seconds_count{driver=\"filesystem\",action=\"GetContent\"} 1",
            "# EOF",
        ] {
            assert!(text.contains(expected), "{expected} not in\n{text}");
        }
    }
}
