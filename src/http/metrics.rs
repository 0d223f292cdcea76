//! Prometheus metrics. The registry lives in app data (no global); later modules register
//! their own counters on it.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    /// Expiry (Unix seconds) of each IdP signing certificate of each SAML connection.
    pub saml_cert_not_after: GaugeVec,
    /// SCIM requests refused for a missing or unknown bearer token.
    pub scim_unauthenticated: prometheus::IntCounter,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new_custom(Some("gatehouse".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route and method",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["route", "method"],
        )?;
        let saml_cert_not_after = GaugeVec::new(
            Opts::new(
                "saml_idp_certificate_not_after_seconds",
                "Expiry (Unix time) of each IdP signing certificate of each SAML connection",
            ),
            &["org", "connection", "sha256"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        let scim_unauthenticated = prometheus::IntCounter::new(
            "scim_unauthenticated_requests_total",
            "SCIM requests refused for a missing or unknown bearer token",
        )?;
        registry.register(Box::new(saml_cert_not_after.clone()))?;
        registry.register(Box::new(scim_unauthenticated.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            latency,
            saml_cert_not_after,
            scim_unauthenticated,
        })
    }

    pub fn observe(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.latency
            .with_label_values(&[route, method])
            .observe(elapsed.as_secs_f64());
    }

    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
}

/// `GET /metrics` on the public listener: request counts and latencies by route pattern,
/// nothing that names a tenant (no org slugs, connection ids or certificate fingerprints).
pub async fn public_metrics(metrics: web::Data<Metrics>) -> HttpResponse {
    let families: Vec<_> = metrics
        .registry
        .gather()
        .into_iter()
        .filter(|f| !PER_ORG.contains(&f.name()))
        .collect();
    encode(&families)
}

/// Metric families whose labels name orgs and connections: served only on the separate
/// metrics listener (`GATEHOUSE_METRICS_LISTEN`).
const PER_ORG: &[&str] = &["gatehouse_saml_idp_certificate_not_after_seconds"];

fn encode(families: &[prometheus::proto::MetricFamily]) -> HttpResponse {
    let mut buf = Vec::new();
    match TextEncoder::new().encode(families, &mut buf) {
        Ok(()) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(buf),
        Err(e) => {
            tracing::error!(error = %e, "metrics encoding failed");
            HttpResponse::InternalServerError().finish()
        }
    }
}

/// `GET /metrics` on the metrics listener: everything, per-org labels included (the
/// certificate gauges are refreshed from the database at each scrape).
pub async fn metrics(
    metrics: web::Data<Metrics>,
    state: Option<web::Data<crate::startup::AppState>>,
) -> HttpResponse {
    if let Some(state) = state {
        match state.db.run(crate::saml::certificates::expiries).await {
            Ok(rows) => {
                metrics.saml_cert_not_after.reset();
                for r in rows {
                    metrics
                        .saml_cert_not_after
                        .with_label_values(&[&r.org, &r.connection, &r.sha256])
                        .set(r.not_after as f64);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not read SAML certificate expiries"),
        }
    }
    match metrics.render() {
        Ok(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(text),
        Err(e) => {
            tracing::error!(error = %e, "metrics encoding failed");
            HttpResponse::InternalServerError().finish()
        }
    }
}
