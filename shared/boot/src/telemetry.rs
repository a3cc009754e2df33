//! Logging set-up for the functions and the admin tool.

use tracing_subscriber::fmt::MakeWriter;

/// JSON lines on stdout, which the Lambda `LoggingConfig: JSON` setting keeps as structured
/// records; each line carries the request's span (request id, route, account: see
/// `RequestInfo::span`). Filter with `RUST_LOG` (default `info`; `aws_sdk_dynamodb=debug`
/// adds the SDK's own span around every DynamoDB call, `DynamoDB.<Operation>`). Call once, at
/// cold start.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing::subscriber::set_global_default(subscriber(filter, std::io::stdout));
}

/// The subscriber `init` installs, writing to `writer` (tests capture it).
pub fn subscriber<W>(
    filter: tracing_subscriber::EnvFilter,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .with_writer(writer)
        .finish()
}
