use std::time::{Duration, Instant};

use files::Files;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

/// Time kept back from the invocation's deadline (at most half of it): the last page, its
/// checkpoint and the hand-over to the next leg must fit in it.
const RESERVE: Duration = Duration::from_secs(90);

#[tokio::main]
async fn main() -> Result<(), Error> {
    let boot::Boot { sdk, store } = boot::start().await;
    let files = Files::from_env(&sdk);
    let callback = import_worker::callback::Sender::new(files::local_callbacks_allowed());
    let (store, files, callback) = (&store, &files, &callback);
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        let left = event.context.deadline().duration_since(std::time::SystemTime::now()).unwrap_or_default();
        let worker = import_worker::Worker {
            store: store.clone(),
            files: files.clone(),
            owner: event.context.request_id.clone(),
            stop_at: Instant::now() + left.saturating_sub(RESERVE.min(left / 2)),
            callback: callback.clone(),
            page_rows: import_worker::PAGE_ROWS,
        };
        Ok::<_, Error>(import_worker::handle(&worker, &event.payload).await)
    }))
    .await
}
