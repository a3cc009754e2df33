#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    edge::front::run(token::App::new).await
}
