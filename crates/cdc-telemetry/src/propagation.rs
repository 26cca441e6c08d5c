//! W3C trace context (`traceparent`, `tracestate`) in and out of a message's header list, so one
//! trace spans capture → masker → sink. Pure: `cdc-kafka` maps the list to Kafka headers.
//!
//! The trace of one change (every span carries `correlation_id`; none carries a cell value):
//!
//! - `capture.publish` (capture, root): keyspace, table, segment_id, segment_position, op,
//!   `messaging.destination.name`; open from the read of the change to its transaction's end.
//! - `masker.mask` (masker, child through the raw event's headers): table, policy_version,
//!   `messaging.source.name`, partition, offset; open until the masking transaction ends.
//! - `sink.write_batch` (each sink, child through the masked event's headers): destination,
//!   table, rows (the batch's size), `db.system.name`, `db.collection.name`, offset; open until
//!   the batch and its offsets are stored.
//!
//! Spans are created only while [`exporting`] (an OTLP endpoint is configured). Sampling is
//! decided once, at capture, by `telemetry.trace_sample_ratio`; the masker and the sinks create
//! spans only for changes whose parent is sampled ([`sampled_parent`]), so a low ratio keeps a
//! high event rate cheap. Spans leave through a batch exporter, flushed when the service shuts
//! down (the guard of [`crate::init`]).

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Header name carrying the W3C trace parent.
pub const TRACEPARENT: &str = "traceparent";
/// Header name carrying the W3C trace state.
pub const TRACESTATE: &str = "tracestate";

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// True once [`crate::init`] installed an OTLP exporter (`telemetry.otlp_endpoint`). Call sites
/// create their per-event spans only then, so a service without trace export pays nothing.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Turns [`exporting`] on or off; [`crate::init`] does it. For tests and programs installing
/// their own tracer.
pub fn set_exporting(on: bool) {
    EXPORTING.store(on, Ordering::Relaxed);
}

struct HeaderInjector<'a>(&'a mut Vec<(String, Vec<u8>)>);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // Replace, do not append: a re-produced message must not carry two parents.
        self.0.retain(|(k, _)| !k.eq_ignore_ascii_case(key));
        if value.is_empty() {
            // An empty `tracestate` carries nothing; do not spend a header on it.
            return;
        }
        self.0.push((key.to_owned(), value.into_bytes()));
    }
}

struct HeaderExtractor<'a, K, V>(&'a [(K, V)]);

impl<K: AsRef<str>, V: AsRef<[u8]>> Extractor for HeaderExtractor<'_, K, V> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.as_ref().eq_ignore_ascii_case(key))
            .and_then(|(_, v)| std::str::from_utf8(v.as_ref()).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

/// Writes the span context of `cx` into `headers` (no-op when `cx` has no valid span).
pub fn inject_context(cx: &Context, headers: &mut Vec<(String, Vec<u8>)>) {
    TraceContextPropagator::new().inject_context(cx, &mut HeaderInjector(headers));
}

/// Reads a remote span context from `headers`; an empty context when absent or malformed.
pub fn extract_context<K: AsRef<str>, V: AsRef<[u8]>>(headers: &[(K, V)]) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Writes the trace context of a `tracing` span (e.g. `Span::current()`) into `headers`.
pub fn inject_span(span: &tracing::Span, headers: &mut Vec<(String, Vec<u8>)>) {
    inject_context(&span.context(), headers);
}

/// Makes the trace context in `headers` the parent of `span`. Returns false when the headers carry
/// no valid context (the span then starts a new trace).
pub fn set_span_parent<K: AsRef<str>, V: AsRef<[u8]>>(
    span: &tracing::Span,
    headers: &[(K, V)],
) -> bool {
    let cx = extract_context(headers);
    if !cx.span().span_context().is_valid() {
        return false;
    }
    span.set_parent(cx).is_ok()
}

/// The remote context in `headers` when it is valid and sampled upstream; `None` otherwise, so a
/// stage skips the span of a change whose trace is not recorded (sampling is decided once, at
/// capture, by `telemetry.trace_sample_ratio`).
pub fn sampled_parent<K: AsRef<str>, V: AsRef<[u8]>>(headers: &[(K, V)]) -> Option<Context> {
    let cx = extract_context(headers);
    let sc = cx.span().span_context().clone();
    (sc.is_valid() && sc.is_sampled()).then_some(cx)
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceFlags, TraceId, TraceState, TracerProvider as _,
    };
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";

    fn remote_context() -> Context {
        let sc = SpanContext::new(
            TraceId::from_hex(TRACE).expect("trace id"),
            SpanId::from_hex(SPAN).expect("span id"),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        Context::new().with_remote_span_context(sc)
    }

    #[test]
    fn inject_then_extract_round_trips() {
        let mut headers = vec![
            ("traceparent".to_owned(), b"stale".to_vec()),
            ("other".to_owned(), b"x".to_vec()),
        ];
        inject_context(&remote_context(), &mut headers);
        let parents: Vec<_> = headers.iter().filter(|(k, _)| k == TRACEPARENT).collect();
        assert_eq!(parents.len(), 1, "{headers:?}");
        assert_eq!(parents[0].1, format!("00-{TRACE}-{SPAN}-01").into_bytes());
        assert!(headers.iter().any(|(k, _)| k == "other"));

        let cx = extract_context(&headers);
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid() && sc.is_remote() && sc.is_sampled());
        assert_eq!(sc.trace_id().to_string(), TRACE);
        assert_eq!(sc.span_id().to_string(), SPAN);
    }

    #[test]
    fn missing_or_malformed_headers_give_an_empty_context() {
        let none: Vec<(String, Vec<u8>)> = Vec::new();
        assert!(!extract_context(&none).span().span_context().is_valid());
        let bad = [("traceparent", b"00-zz-yy-01".as_slice())];
        assert!(!extract_context(&bad).span().span_context().is_valid());
        let not_utf8 = [("traceparent", [0xff_u8, 0xfe].as_slice())];
        assert!(!extract_context(&not_utf8).span().span_context().is_valid());
        let mut headers = Vec::new();
        inject_context(&Context::new(), &mut headers);
        assert!(headers.is_empty());
    }

    #[test]
    fn tracing_spans_continue_the_remote_trace() {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let incoming = [(
                "TraceParent".to_owned(),
                format!("00-{TRACE}-{SPAN}-01").into_bytes(),
            )];
            let span = tracing::info_span!("mask_batch");
            assert!(set_span_parent(&span, &incoming));
            let mut outgoing = Vec::new();
            inject_span(&span, &mut outgoing);
            let value = String::from_utf8(outgoing[0].1.clone()).expect("utf8");
            // Same trace, new span id.
            assert!(value.starts_with(&format!("00-{TRACE}-")), "{value}");
            assert!(!value.contains(SPAN), "{value}");

            let orphan = tracing::info_span!("orphan");
            assert!(!set_span_parent(&orphan, &[("x", b"y".as_slice())]));
        });
    }

    #[test]
    fn only_sampled_parents_are_continued() {
        let sampled = [("traceparent", format!("00-{TRACE}-{SPAN}-01").into_bytes())];
        let cx = sampled_parent(&sampled).expect("sampled parent");
        assert_eq!(cx.span().span_context().trace_id().to_string(), TRACE);
        let unsampled = [("traceparent", format!("00-{TRACE}-{SPAN}-00").into_bytes())];
        assert!(sampled_parent(&unsampled).is_none());
        assert!(sampled_parent::<&str, &[u8]>(&[]).is_none());
    }

    #[test]
    fn ratio_applies_to_new_traces_and_parents_decide_for_continued_ones() {
        let provider = SdkTracerProvider::builder()
            .with_sampler(crate::logging::sampler(0.0))
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            // A new trace (capture) under ratio 0: not sampled, and the flag travels downstream.
            let root = tracing::info_span!(parent: None, "capture.publish");
            let mut headers = Vec::new();
            inject_span(&root, &mut headers);
            let value = String::from_utf8(headers[0].1.clone()).expect("utf8");
            assert!(value.ends_with("-00"), "{value}");
            assert!(sampled_parent(&headers).is_none());

            // A continued trace sampled upstream stays sampled whatever the local ratio.
            let incoming = [("traceparent", format!("00-{TRACE}-{SPAN}-01").into_bytes())];
            let child = tracing::info_span!("masker.mask");
            assert!(set_span_parent(&child, &incoming));
            let mut out = Vec::new();
            inject_span(&child, &mut out);
            let value = String::from_utf8(out[0].1.clone()).expect("utf8");
            assert!(value.ends_with("-01"), "{value}");
        });
    }
}
