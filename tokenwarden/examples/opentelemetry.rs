//! A token manager's spans and metrics, exported with the OpenTelemetry SDK to
//! stdout: its `tracing` spans (`tokenwarden.refresh`, with the reason) through
//! `tracing-opentelemetry`, and its metrics (see `tokenwarden::metrics`) through
//! the `metrics` facade and `metrics-exporter-opentelemetry`. Swap the stdout
//! exporters for OTLP ones to send both to a collector.
//!
//! ```text
//! cargo run -p tokenwarden --features metrics --example opentelemetry
//! ```

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::time::Duration;
use tokenwarden::{source::from_fn, Token, TokenManager};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Spans: the tracing subscriber hands tokenwarden's spans to OpenTelemetry.
    let spans = SdkTracerProvider::builder()
        .with_simple_exporter(opentelemetry_stdout::SpanExporter::default())
        .build();
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(spans.tracer("tokenwarden-example")))
        .with(tracing_subscriber::EnvFilter::new("tokenwarden=debug"))
        .init();

    // Metrics: the `metrics` facade's recorder, over an OpenTelemetry meter.
    let (meters, recorder) =
        metrics_exporter_opentelemetry::Recorder::builder("tokenwarden-example")
            .with_meter_provider(|provider| {
                provider.with_periodic_exporter(opentelemetry_stdout::MetricExporter::default())
            })
            .build();
    metrics::set_global_recorder(recorder)?;
    tokenwarden::metrics::describe();

    let manager = TokenManager::builder(from_fn("example-login", || async {
        Ok(Token::new("example-token").with_expires_in(Duration::from_secs(3600)))
    }))
    .build()?;
    manager.token().await?; // the first use: a refresh (span, request, attempt)
    for _ in 0..100 {
        manager.token().await?; // hits: counted by the manager, not per call
    }
    manager.force_refresh().await?; // a refresh for the reason `forced`
    tokenwarden::metrics::publish(); // hits and gauges, read now

    // Shutting down flushes both to stdout.
    meters.shutdown()?;
    spans.shutdown()?;
    Ok(())
}
