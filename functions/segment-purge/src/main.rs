use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let store = &boot::start().await.store;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        segment_purge::handle(store, &event.payload).await.map_err(Error::from)
    }))
    .await
}
