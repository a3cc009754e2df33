//! Logging set-up for the functions and the admin tool.

/// JSON lines on stdout, which the Lambda `LoggingConfig: JSON` setting keeps as structured
/// records; each line carries the request's span (request id, route, account: see
/// `RequestInfo::span`). Filter with `RUST_LOG` (default `info`). Call once, at cold start.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .try_init();
}
