#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    edge::front::run(integrations::App::new).await
}
