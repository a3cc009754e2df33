#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    edge::front::run(console::App::new).await
}
