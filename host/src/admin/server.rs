//! The admin API's HTTP server (axum, served by axum-server on a thread of
//! its own; over rustls when given a [`ServerTls`]).
//!
//! Endpoints:
//! - `GET /v1/status`: the run's [`Status`](super::Status) as JSON.
//! - `POST /v1/stop`: a graceful stop, as SIGTERM does (changing).
//! - `POST /v1/steps/{step}/swap`: a new component and/or config for a
//!   plugin step (changing; wire format in [`super::swap`]). The swap runs
//!   on a blocking thread, so the server keeps answering meanwhile.
//!
//! Authentication: a changing call needs `Authorization: Bearer <token>`
//! with the configured token (401 without it or with another one), and is
//! refused (403) when no token is configured. A read-only call needs the
//! token too when one is configured, and is open when none is (to the
//! local machine without TLS, where the server is on loopback; to whoever
//! reaches the address with TLS).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest as _, Multipart, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::swap::{self, SWAP_BODY_LIMIT, SwapAnswer};
use super::{AdminError, AdminUrl, ServerTls, StatusSource, TOKEN_ENV, Token};
use crate::runtime::control::RunControl;

/// What the server's handlers reach: where the status comes from, how to
/// stop the run, the control that swaps its steps, and the token that
/// guards it.
#[derive(Clone)]
pub struct AdminState {
    pub status: Arc<dyn StatusSource>,
    /// Stops the run gracefully (as SIGTERM does).
    pub stop: Arc<dyn Fn() + Send + Sync>,
    /// The run's control (the one in its [`crate::RunOptions::control`]).
    pub control: Arc<RunControl>,
    pub token: Option<Token>,
}

/// A running admin API; dropping it stops the server.
pub struct AdminServer {
    addr: SocketAddr,
    url: AdminUrl,
    handle: axum_server::Handle<SocketAddr>,
}

impl AdminServer {
    /// Serves the admin API on `addr` until dropped: over HTTPS with `tls`,
    /// else plain HTTP on a loopback address only (see
    /// [`super::parse_address`]).
    pub fn start(
        addr: SocketAddr,
        state: AdminState,
        tls: Option<ServerTls>,
    ) -> Result<AdminServer, AdminError> {
        if tls.is_none() && !addr.ip().is_loopback() {
            return Err(AdminError::NotLoopback(addr));
        }
        let bind = |cause| AdminError::Bind { addr, cause };
        let listener = std::net::TcpListener::bind(addr).map_err(bind)?;
        listener.set_nonblocking(true).map_err(bind)?;
        let local = listener.local_addr().map_err(bind)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(bind)?;
        let handle = axum_server::Handle::new();
        let server = {
            let _entered = rt.enter();
            axum_server::from_tcp(listener).map_err(bind)?
        };
        let url = AdminUrl::served(local, tls.is_some());
        let service = router(state).into_make_service();
        let serving = handle.clone();
        std::thread::Builder::new()
            .name("admin".into())
            .spawn(move || {
                rt.block_on(async move {
                    let server = server.handle(serving);
                    let served = match tls {
                        Some(tls) => {
                            let config = axum_server::tls_rustls::RustlsConfig::from_config(
                                tls.config.clone(),
                            );
                            server
                                .acceptor(axum_server::tls_rustls::RustlsAcceptor::new(config))
                                .serve(service)
                                .await
                        }
                        None => server.serve(service).await,
                    };
                    if let Err(e) = served {
                        tracing::warn!("the admin API stopped: {e}");
                    }
                });
            })
            .map_err(bind)?;
        tracing::info!("admin API on {local} ({url})");
        Ok(AdminServer {
            addr: local,
            url,
            handle,
        })
    }

    /// The address it serves on (with the port the OS chose).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How a client on this machine reaches it: its scheme, and loopback
    /// for an unspecified address.
    pub fn url(&self) -> &AdminUrl {
        &self.url
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        // Calls in flight get a moment to finish.
        self.handle
            .graceful_shutdown(Some(std::time::Duration::from_secs(1)));
    }
}

/// Read-only routes and changing routes, each group behind its guard: a
/// new changing endpoint goes into `changing` and is guarded with it.
fn router(state: AdminState) -> Router {
    let reading = Router::new()
        .route("/v1/status", get(status))
        .route_layer(middleware::from_fn_with_state(state.clone(), allow_read));
    let changing = Router::new()
        .route("/v1/stop", post(stop))
        .route(
            "/v1/steps/{step}/swap",
            post(swap).layer(DefaultBodyLimit::max(SWAP_BODY_LIMIT)),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), allow_change));
    reading.merge(changing).with_state(state)
}

async fn status(State(state): State<AdminState>) -> Response {
    axum::Json(state.status.status()).into_response()
}

async fn stop(State(state): State<AdminState>) -> Response {
    (state.stop)();
    (
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({ "stopping": true })),
    )
        .into_response()
}

/// `POST /v1/steps/{step}/swap`: the parts read (a body announced over
/// the limit is refused before any of it is read, so a client that sent
/// `Expect: 100-continue` uploads nothing), then the swap on a blocking
/// thread.
async fn swap(
    State(state): State<AdminState>,
    Path(step): Path<String>,
    request: Request,
) -> Response {
    let length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|n| n > SWAP_BODY_LIMIT as u64) {
        let (code, message) = swap::too_large(length);
        return error(code, &message);
    }
    let multipart = match Multipart::from_request(request, &()).await {
        Ok(m) => m,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "a swap is a multipart/form-data body with parts `{}` and/or `{}`: {}",
                    swap::COMPONENT_PART,
                    swap::CONFIG_PART,
                    rejection.body_text()
                ),
            );
        }
    };
    let parts = match swap::read_parts(multipart).await {
        Ok(parts) => parts,
        Err((code, message)) => return error(code, &message),
    };
    let control = state.control.clone();
    // Compiling a component takes a while; the server keeps answering.
    let swapped = tokio::task::spawn_blocking(move || {
        control.swap_with(
            &step,
            parts.component,
            parts.config,
            parts.options.unwrap_or_default(),
        )
    })
    .await;
    match swapped {
        Ok(Ok(report)) => axum::Json(SwapAnswer::from(&report)).into_response(),
        Ok(Err(e)) => {
            (swap::refusal_status(&e), axum::Json(swap::refusal_body(&e))).into_response()
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the swap did not complete: {e}"),
        ),
    }
}

/// A refusal that is not about authentication: `{"error": ...}`.
fn error(code: StatusCode, message: &str) -> Response {
    (code, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

async fn allow_read(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    match &state.token {
        None => next.run(request).await,
        Some(token) => match check(token, request.headers()) {
            Ok(()) => next.run(request).await,
            Err(why) => refuse(StatusCode::UNAUTHORIZED, why),
        },
    }
}

async fn allow_change(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let Some(token) = &state.token else {
        return refuse(
            StatusCode::FORBIDDEN,
            &format!(
                "changing calls are refused: no admin token is configured; start `weir run` \
                 with --admin-token-file FILE (readable by its owner only) or with {TOKEN_ENV} set"
            ),
        );
    };
    match check(token, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(why) => refuse(StatusCode::UNAUTHORIZED, why),
    }
}

/// `Ok` when the request carries `token` as its bearer token; otherwise
/// why not (answered with 401).
fn check(token: &Token, headers: &HeaderMap) -> Result<(), &'static str> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(presented) if token.matches(presented) => Ok(()),
        Some(_) => Err("wrong admin token"),
        None => Err("this call needs the admin token: send `Authorization: Bearer <token>`"),
    }
}

fn refuse(code: StatusCode, message: &str) -> Response {
    (
        code,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}
