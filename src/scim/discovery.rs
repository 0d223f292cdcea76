//! `/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas` (read-only; writes answer 405).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::Value;

use super::auth::ScimClient;
use super::error::{ScimError, ScimResult};
use super::{base_url, list_response, respond, schema, ResourceId, MAX_PAGE};
use crate::startup::AppState;

pub async fn service_provider_config(state: web::Data<AppState>, _c: ScimClient) -> HttpResponse {
    let base = base_url(&state);
    respond(
        StatusCode::OK,
        &schema::service_provider_config(
            &base,
            MAX_PAGE as usize,
            state.settings.scim_max_body_bytes,
        ),
    )
}

pub async fn resource_types(state: web::Data<AppState>, _c: ScimClient) -> HttpResponse {
    let all = schema::resource_types(&base_url(&state));
    respond(StatusCode::OK, &list_response(all.len() as i64, 1, all))
}

pub async fn resource_type(
    state: web::Data<AppState>,
    _c: ScimClient,
    ResourceId(id): ResourceId,
) -> ScimResult<HttpResponse> {
    find(
        schema::resource_types(&base_url(&state)),
        &id,
        "ResourceType",
    )
}

pub async fn schemas(state: web::Data<AppState>, _c: ScimClient) -> HttpResponse {
    let all = schema::all_schemas(&base_url(&state));
    respond(StatusCode::OK, &list_response(all.len() as i64, 1, all))
}

pub async fn schema(
    state: web::Data<AppState>,
    _c: ScimClient,
    ResourceId(id): ResourceId,
) -> ScimResult<HttpResponse> {
    find(schema::all_schemas(&base_url(&state)), &id, "Schema")
}

fn find(all: Vec<Value>, id: &str, what: &str) -> ScimResult<HttpResponse> {
    all.into_iter()
        .find(|v| {
            v.get("id")
                .and_then(Value::as_str)
                .is_some_and(|i| i.eq_ignore_ascii_case(id))
        })
        .map(|v| respond(StatusCode::OK, &v))
        .ok_or_else(|| ScimError::not_found(what))
}
