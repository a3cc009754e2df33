#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::front::run(user_data::App::new).await
}
