use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let deps = import_worker::Deps::from_env().await;
    run(service_fn(|event: LambdaEvent<SqsEvent>| import_worker::serve(&deps, event))).await
}
