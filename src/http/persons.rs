//! `POST /v1/persons/erase`.

use super::blocking;
use super::caller::Caller;
use super::error::ApiError;
use super::state::AppState;
use crate::access::Role;
use crate::envelope::Actor;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EraseBody {
    person_ref: String,
}

/// `POST /v1/persons/erase` `{"person_ref": "…"}`: crypto-shredding (admins only): records
/// `PersonErased` and destroys the person's key.
pub(super) async fn erase_person(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<EraseBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin], "erase a person")?;
    let Json(body) = body.map_err(|e| {
        let (status, code) = match e {
            axum::extract::rejection::JsonRejection::MissingJsonContentType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_json_content_type")
            }
            _ => (StatusCode::BAD_REQUEST, "bad_body"),
        };
        ApiError::new(
            status,
            code,
            format!("send {{\"person_ref\": \"…\"}} with Content-Type: application/json ({e})"),
        )
    })?;
    let actor = match &caller {
        Caller::Open => Actor {
            role: "admin".into(),
            directorate: None,
            agent_ref: Some("http".into()),
        },
        Caller::Token(p) => Actor {
            role: p.role.as_str().into(),
            directorate: None,
            agent_ref: Some(p.token_id.clone()),
        },
    };
    let ledger = state.ledger.clone();
    let done = blocking(move || Ok(ledger.erase_person(&body.person_ref, &actor)?)).await?;
    match done {
        Some(e) => Ok(Json(e).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_person",
            "the key store holds no key for this person_ref: never recorded, or erased already",
        )),
    }
}
