#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    edge::front::run(user_data::App::new).await
}
