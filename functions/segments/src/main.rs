#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::front::run(segments::App::new).await
}
