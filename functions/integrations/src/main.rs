#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::front::run(integrations::App::new).await
}
