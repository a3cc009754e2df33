use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let store = &boot::start().await.store;
    run(service_fn(move |event: LambdaEvent<Event>| async move {
        segment_purge::handle(store, &event.payload).await.map_err(Error::from)
    }))
    .await
}
