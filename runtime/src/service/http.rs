//! The HTTP face of [`Service`]: axum handlers, one per operation, each described for OpenAPI by
//! the same attribute that routes it (so the document cannot drift from the router), and the
//! extractors that turn every malformed request into a typed 4xx body.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use futures_util::StreamExt;
use futures_util::stream::{self, Stream};
use serde::de::DeserializeOwned;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Service;
use super::api::{
    ApprovalView, CreateRun, CreateSession, Endorsement, ErrorBody, ErrorDetail, Reason, Reloaded,
    SessionView, StepRequest, StepResponse,
};
use super::auth::Caller;
use super::error::ApiError;

/// How many tasks a worker runs between checks for I/O readiness. Tokio's 61 lets a ready socket
/// wait behind a long run of tasks; at 2, `arbiter serve`'s p50 under 100 back-to-back clients
/// fell from 3.8 to 2.1 ms and its throughput rose 1.5x (the `serve` benchmark).
const EVENT_INTERVAL: u32 = 2;

/// The multi-threaded executor the HTTP service runs on (`arbiter serve`, and its benchmark).
pub fn executor() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .event_interval(EVENT_INTERVAL)
        .enable_all()
        .build()
}

/// Largest request body accepted (a tool output reported back can be large; 4 MiB).
pub const MAX_BODY: usize = 4 << 20;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
            },
        };
        (status, Json(body)).into_response()
    }
}

/// The caller, from `Authorization: Bearer <token>`.
pub struct Auth(pub Caller);

impl FromRequestParts<Service> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, service: &Service) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        service.authenticate(token).map(Auth)
    }
}

/// A JSON body whose every failure is a typed error naming what is wrong.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Service> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, service: &Service) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, service).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(JsonRejection::JsonSyntaxError(e)) => Err(ApiError::BadJson(e.body_text())),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::Invalid(e.body_text())),
            Err(JsonRejection::MissingJsonContentType(e)) => {
                Err(ApiError::UnsupportedMediaType(e.body_text()))
            }
            Err(JsonRejection::BytesRejection(e)) => {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Err(ApiError::TooLarge(format!(
                        "the body is larger than {MAX_BODY} bytes"
                    )))
                } else {
                    Err(ApiError::BadJson(e.body_text()))
                }
            }
            Err(other) => Err(ApiError::BadJson(other.body_text())),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Arbiter",
        description = "Every agent step authorized by Cedar policies, recorded and streamed."
    ),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

/// Every API route, each routed and documented by the same attribute.
fn api() -> OpenApiRouter<Service> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(create_session))
        .routes(routes!(create_run))
        .routes(routes!(get_session))
        .routes(routes!(propose_step))
        .routes(routes!(stream_events))
        .routes(routes!(list_approvals))
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(routes!(cancel))
        .routes(routes!(endorse))
        .routes(routes!(reload))
}

/// The router, with the OpenAPI document it was built with at `/openapi.json`.
pub fn router(service: Service) -> Router {
    let (router, doc) = api().split_for_parts();
    let doc_json = doc.to_pretty_json().unwrap_or_default();
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    doc_json,
                )
            }),
        )
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(service)
}

/// The OpenAPI document alone.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}

/// Open a session (idempotent on its id).
#[utoipa::path(post, path = "/v1/sessions", request_body = CreateSession,
    responses(
        (status = 201, description = "Created; the start decision is in `step`", body = Created),
        (status = 200, description = "It existed with this body", body = Created),
        (status = 409, description = "The id names a session opened with another body", body = ErrorBody),
        (status = 422, description = "A field is wrong, or the entities it names cannot open a session", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn create_session(
    State(service): State<Service>,
    Auth(caller): Auth,
    Body(req): Body<CreateSession>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let (created, session, step) = service.create(&caller, req).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(Created { session, step })))
}

/// Start a hosted run of a registered agent (idempotent on its id): Arbiter calls its model and
/// tools; follow it with `GET /v1/sessions/{id}` and its events, steer it with approvals and cancel.
#[utoipa::path(post, path = "/v1/runs", request_body = CreateRun,
    responses(
        (status = 201, description = "Started", body = SessionView),
        (status = 200, description = "It existed with this body", body = SessionView),
        (status = 404, description = "No such agent in the caller's tenant", body = ErrorBody),
        (status = 409, description = "The id names another session or run", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn create_run(
    State(service): State<Service>,
    Auth(caller): Auth,
    Body(req): Body<CreateRun>,
) -> Result<(StatusCode, Json<SessionView>), ApiError> {
    let (created, view) = service.run(&caller, req).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// A created (or existing) session and what its start came to.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Created {
    /// The session.
    pub session: SessionView,
    /// The start step (empty when the session existed).
    pub step: StepResponse,
}

/// A session's state.
#[utoipa::path(get, path = "/v1/sessions/{id}", params(("id" = String, Path)),
    responses((status = 200, body = SessionView), (status = 404, body = ErrorBody)))]
async fn get_session(
    State(service): State<Service>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<SessionView>, ApiError> {
    Ok(Json(service.get(&caller, &id).await?))
}

/// Propose a step and get the decision before acting, or report a result.
#[utoipa::path(post, path = "/v1/sessions/{id}/steps", params(("id" = String, Path)),
    request_body = StepRequest,
    responses(
        (status = 200, body = StepResponse),
        (status = 400, description = "Not JSON, or an intent with its own endpoint", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, description = "Not an intent", body = ErrorBody),
        (status = 503, description = "The store refused the step; the session is stopped", body = ErrorBody),
    ))]
async fn propose_step(
    State(service): State<Service>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    Body(req): Body<StepRequest>,
) -> Result<Json<StepResponse>, ApiError> {
    Ok(Json(
        service
            .step_when(&caller, &id, req.intent, req.when_busy)
            .await?,
    ))
}

/// The session's events as Server-Sent Events: `id` is the event's `seq`, `event` its kind, `data`
/// its JSON line. `Last-Event-ID` resumes after that `seq`. The stream ends when the session does.
#[utoipa::path(get, path = "/v1/sessions/{id}/events", params(("id" = String, Path),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this seq")),
    responses((status = 200, content_type = "text/event-stream", body = String),
        (status = 404, body = ErrorBody)))]
async fn stream_events(
    State(service): State<Service>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let after = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::BadJson("`Last-Event-ID` must be an event seq".into()))?,
        ),
    };
    // Check access now, so a foreign or unknown session is a 404, not an empty stream.
    let first = service.events_after(&caller, &id, after).await?;
    let events = stream::unfold(Some((service, caller, id, first)), |state| async move {
        let (service, caller, id, mut page) = state?;
        loop {
            if let Some(last) = page.events.last().map(|e| e.seq) {
                let batch: Vec<Result<SseEvent, Infallible>> =
                    page.events.iter().map(|e| Ok(sse(e))).collect();
                // Each page subscribes under the session's lock as it reads, so an event
                // appended after this read marks the next page's receiver changed.
                let next = service.events_after(&caller, &id, Some(last)).await.ok();
                return Some((stream::iter(batch), next.map(|p| (service, caller, id, p))));
            }
            if page.ended {
                return None;
            }
            let after = page.after;
            page.changes.changed().await.ok()?;
            page = service.events_after(&caller, &id, after).await.ok()?;
        }
    });
    Ok(Sse::new(events.flatten()).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn sse(e: &kernel::event::Event) -> SseEvent {
    SseEvent::default()
        .id(e.seq.to_string())
        .event(e.body.kind())
        .data(serde_json::to_string(e).unwrap_or_default())
}

/// Requests waiting for approval in the caller's tenant.
#[utoipa::path(get, path = "/v1/approvals",
    responses((status = 200, body = Vec<ApprovalView>)))]
async fn list_approvals(
    State(service): State<Service>,
    Auth(caller): Auth,
) -> Result<Json<Vec<ApprovalView>>, ApiError> {
    Ok(Json(service.approvals(&caller).await?))
}

/// Approve a waiting request, as the token's user (policies decide whether that user may).
#[utoipa::path(post, path = "/v1/sessions/{id}/approvals/{request_id}/approve",
    params(("id" = String, Path), ("request_id" = String, Path)),
    responses((status = 200, body = StepResponse), (status = 404, body = ErrorBody)))]
async fn approve(
    State(service): State<Service>,
    Auth(caller): Auth,
    Path((id, request_id)): Path<(String, String)>,
) -> Result<Json<StepResponse>, ApiError> {
    Ok(Json(service.approve(&caller, &id, &request_id).await?))
}

/// Reject a waiting request, as the token's user.
#[utoipa::path(post, path = "/v1/sessions/{id}/approvals/{request_id}/reject",
    params(("id" = String, Path), ("request_id" = String, Path)), request_body = Reason,
    responses((status = 200, body = StepResponse), (status = 404, body = ErrorBody)))]
async fn reject(
    State(service): State<Service>,
    Auth(caller): Auth,
    Path((id, request_id)): Path<(String, String)>,
    Body(reason): Body<Reason>,
) -> Result<Json<StepResponse>, ApiError> {
    Ok(Json(
        service
            .reject(&caller, &id, &request_id, reason.reason)
            .await?,
    ))
}

/// Cancel a session, as the token's user.
#[utoipa::path(post, path = "/v1/sessions/{id}/cancel", params(("id" = String, Path)),
    request_body = Reason,
    responses((status = 200, body = StepResponse), (status = 404, body = ErrorBody)))]
async fn cancel(
    State(service): State<Service>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    Body(reason): Body<Reason>,
) -> Result<Json<StepResponse>, ApiError> {
    Ok(Json(service.cancel(&caller, &id, reason.reason).await?))
}

/// Vouch for a value, as the token's user: it then counts as coming from the user.
#[utoipa::path(post, path = "/v1/sessions/{id}/endorsements", params(("id" = String, Path)),
    request_body = Endorsement,
    responses((status = 200, body = StepResponse), (status = 404, body = ErrorBody)))]
async fn endorse(
    State(service): State<Service>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    Body(e): Body<Endorsement>,
) -> Result<Json<StepResponse>, ApiError> {
    Ok(Json(service.endorse(&caller, &id, e.value).await?))
}

/// Reload the policies (admin tokens only): atomically, only if they load.
#[utoipa::path(post, path = "/v1/admin/reload",
    responses((status = 200, body = Reloaded), (status = 403, body = ErrorBody),
        (status = 422, description = "They do not load; the old set keeps serving", body = ErrorBody)))]
async fn reload(
    State(service): State<Service>,
    Auth(caller): Auth,
) -> Result<Json<Reloaded>, ApiError> {
    if !caller.admin {
        return Err(ApiError::Forbidden(
            "reloading policies needs an admin token".into(),
        ));
    }
    Ok(Json(service.reload()?))
}
