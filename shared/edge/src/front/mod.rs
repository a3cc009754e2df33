//! The one runner every HTTP function is served by. For each request, in this order:
//! 1. read it ([`RequestInfo`]) and find its route in the function's table ([`routes`]):
//!    `404`/`405` here;
//! 2. authenticate the caller once, as the route's [`Access`] says;
//! 3. check the route's scope: a caller who lacks it gets `403` (or Basic's `401`) before any
//!    rate-limit charge, idempotency replay or handler runs;
//! 4. run the protections ([`guard`]): rate limit, then a write's `Idempotency-Key`;
//! 5. hand the handler the route and a typed [`Principal`];
//!
//! then render any error once, in the route's [`Dialect`], and record the call's usage.
//! A function implements [`Service`] (its route table and one `handle`), and its `main` is
//! `edge::front::run(App::new)`.

pub mod guard;
pub mod routes;

use std::future::Future;

use lambda_http::{Body, Request, Response};
use tracing::Instrument;

pub use routes::{Access, Dialect, Miss, Params, Route};

use crate::http::error::render;
use crate::http::request::header;
use crate::http::{ApiError, ErrorCode, Reply, RequestInfo};
use auth::bearer::{CONSOLE_REQUEST_HEADER, console_authorization};
use auth::{AuthConfig, Authenticator, BearerError, Principal, WorkspaceAuthenticator};
use guard::{Claim, Guard};
use protect::usage::UsageReport;
use store::DynamoStore;

/// What a handler gets: the request, its route's path parameters, and who is calling.
pub struct Call<'a> {
    pub info: &'a RequestInfo,
    pub req: &'a Request,
    pub params: &'a Params,
    principal: Option<&'a Principal>,
}

impl Call<'_> {
    /// The authenticated caller. The front has checked the route's scope; a [`Access::Public`]
    /// route has no caller, and asking for one is answered `401`.
    pub fn principal(&self) -> Result<&Principal, ApiError> {
        self.principal.ok_or(ApiError::Auth(BearerError::Missing))
    }

    /// A path parameter of the route's template.
    pub fn param(&self, name: &str) -> &str {
        self.params.get(name)
    }
}

/// A Lambda function behind API Gateway: its routes, declared once, and its handler.
pub trait Service: Send + Sync {
    /// The function's own names for its routes.
    type Op: Copy + Send + Sync + 'static;
    const ROUTES: &'static [Route<Self::Op>];

    fn handle<'a>(
        &'a self,
        op: Self::Op,
        call: Call<'a>,
    ) -> impl Future<Output = Result<Reply, ApiError>> + Send + 'a;
}

/// What a function is built from: its clients and configuration, read once per cold start.
pub struct Env {
    pub store: DynamoStore,
    pub auth: AuthConfig,
    /// The AWS configuration, for the clients only some functions use (the import bucket's).
    pub sdk: aws_config::SdkConfig,
}

/// A service with the front that serves it: what a function's Lambda runtime runs.
pub struct Served<S> {
    front: Front,
    service: S,
}

impl<S: Service> Served<S> {
    pub fn new(env: &Env, service: S) -> Self {
        Self { front: Front::new(&env.store, &env.auth), service }
    }

    /// The same, with usage sums written every `every` (tests of the production setting).
    pub fn flushing_usage_every(mut self, every: std::time::Duration) -> Self {
        self.front.guard.flush_usage_every(every);
        self
    }

    /// Writes this instance's pending usage sums now.
    pub async fn flush_usage(&self) {
        self.front.guard.flush_usage().await;
    }
}

/// Authentication and protections, the same for every function.
struct Front {
    bearer: Authenticator,
    workspace: WorkspaceAuthenticator,
    guard: Guard,
}

impl Front {
    fn new(store: &DynamoStore, auth: &AuthConfig) -> Self {
        Self {
            bearer: Authenticator::new(store.clone(), auth),
            workspace: WorkspaceAuthenticator::new(store.clone()),
            guard: Guard::new(store.clone()),
        }
    }

    /// Steps 2 and 3: the caller, with the route's scope checked.
    async fn authenticate(
        &self,
        access: Access,
        info: &RequestInfo,
        req: &Request,
        params: &Params,
    ) -> Result<Option<Principal>, ApiError> {
        let authorization = header(req, "authorization");
        let principal = match access {
            Access::Public => return Ok(None),
            Access::Bearer(scope) => {
                let console = match authorization {
                    Some(_) => None,
                    None => console_authorization(header(req, "cookie"), header(req, CONSOLE_REQUEST_HEADER)),
                };
                let authorization = authorization.or(console.as_deref());
                self.bearer.authenticate(authorization, info.domain.as_deref(), scope).await?
            }
            Access::WorkspaceBasic(scope) => {
                self.workspace.authenticate(authorization, params.get("workspace_id"), scope).await?
            }
        };
        tracing::Span::current().record("account", principal.account.as_str());
        Ok(Some(principal))
    }
}

/// Serves one request with `service`: the whole path described in the module's doc.
pub async fn serve<S: Service>(served: &Served<S>, req: Request) -> Response<Body> {
    let info = RequestInfo::from_request(&req);
    let span = info.span();
    serve_in_span(served, &info, &req).instrument(span).await
}

async fn serve_in_span<S: Service>(served: &Served<S>, info: &RequestInfo, req: &Request) -> Response<Body> {
    let (front, service) = (&served.front, &served.service);
    let (route, params) = match routes::find(S::ROUTES, &info.method, &info.segments) {
        Ok(found) => found,
        Err(Miss::Method { allow, dialect }) => {
            let err = ApiError::MethodNotAllowed { method: info.method.clone(), allow };
            return render(err, dialect, &info.request_id);
        }
        Err(Miss::Path) => {
            let err = ApiError::RouteNotFound { method: info.method.clone(), path: info.segments.join("/") };
            return render(err, Dialect::Rest, &info.request_id);
        }
    };
    let fail = |e: ApiError| render(e, route.dialect, &info.request_id);
    let principal = match front.authenticate(route.access, info, req, &params).await {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let Some(principal) = principal else {
        let call = Call { info, req, params: &params, principal: None };
        return Box::pin(service.handle(route.op, call)).await.map(|r| r.response).unwrap_or_else(fail);
    };
    let account = &principal.account;
    if let Err(e) = front.guard.admit(account, route.cost, info).await {
        return fail(e);
    }
    let (response, usage, error) = protected(served, route, &params, &principal, info, req).await;
    front.guard.charge_work(account, route.cost, &usage);
    front.guard.record(account, &principal.client_id, &usage, error).await;
    response
}

/// Step 4's idempotency and step 5, for an admitted caller: a write's key is claimed before
/// the handler runs and settled with whatever the caller is answered, errors included.
async fn protected<S: Service>(
    served: &Served<S>,
    route: &'static Route<S::Op>,
    params: &Params,
    principal: &Principal,
    info: &RequestInfo,
    req: &Request,
) -> (Response<Body>, UsageReport, Option<ErrorCode>) {
    let fail = |e: ApiError| {
        let code = e.code();
        (render(e, route.dialect, &info.request_id), UsageReport::default(), Some(code))
    };
    let (guard, service) = (&served.front.guard, &served.service);
    let account = &principal.account;
    let claim = if route.write { guard.claim(account, info, req).await } else { Ok(Claim::None) };
    let key = match claim {
        Err(e) => return fail(e),
        Ok(Claim::Replay(response)) => return (response, UsageReport::default(), None),
        Ok(Claim::Fresh { key, seal }) => Some((key, seal)),
        Ok(Claim::None) => None,
    };
    let call = Call { info, req, params, principal: Some(principal) };
    let (response, usage, error) = match Box::pin(service.handle(route.op, call)).await {
        Ok(reply) => (reply.response, reply.usage, None),
        Err(e) => fail(e),
    };
    if let Some((key, seal)) = key {
        guard.settle(account, info, (&key, &seal), &response).await;
    }
    (response, usage, error)
}

/// A function's `main`: the one start-up ([`boot::start`]: telemetry, the AWS clients and
/// tables from the environment), then the Lambda runtime serving `make(env)` until the instance is reclaimed. With
/// `USAGE_FLUSH_ON_SHUTDOWN=1` (template.yaml), the usage sums an instance still holds are
/// written when Lambda shuts it down (an internal no-op extension makes Lambda send the runtime
/// SIGTERM first), so no call goes uncounted.
pub async fn run<S, F>(make: F) -> Result<(), lambda_http::Error>
where
    S: Service + 'static,
    F: FnOnce(&Env) -> S,
{
    let boot::Boot { sdk, store } = boot::start().await;
    let env = Env { store, auth: AuthConfig::from_env(), sdk };
    let served = std::sync::Arc::new(Served::new(&env, make(&env)));
    if std::env::var("USAGE_FLUSH_ON_SHUTDOWN").is_ok_and(|v| v == "1") {
        let on_shutdown = served.clone();
        lambda_runtime::spawn_graceful_shutdown_handler(
            move || async move { on_shutdown.flush_usage().await },
        )
        .await;
    }
    let served = &*served;
    lambda_http::run(lambda_http::service_fn(move |req: Request| async move {
        Ok::<_, lambda_http::Error>(serve(served, req).await)
    }))
    .await
}
