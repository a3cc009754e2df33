#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::front::run(console::App::new).await
}
