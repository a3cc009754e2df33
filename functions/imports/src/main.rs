#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    edge::front::run(imports::App::new).await
}
