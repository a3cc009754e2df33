#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::front::run(imports::App::new).await
}
