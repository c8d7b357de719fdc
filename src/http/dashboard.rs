//! The campaign dashboard: one page, its script and style, embedded in the binary (no CDN,
//! nothing fetched from elsewhere). It reads the API with the token it is given (from the URL
//! fragment `#token=…`, or typed in, kept for the browser session) and follows
//! `/v1/events/live` to refresh within a second of a commit.

use super::{AppState, Caller};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{extract::State, Json, Router};

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/app.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// `GET /v1/reference`: the directorates, the campaign's time zone and the booster openings
/// (for the dashboard's labels and its curve's marker); any valid token may read it.
async fn reference(State(state): State<AppState>, _caller: Caller) -> Json<serde_json::Value> {
    let policy = state.ledger.policy();
    let reference = state.ledger.reference();
    Json(serde_json::json!({
        "version": reference.version,
        "time_zone": policy.time_zone.name(),
        "directorates": reference.directorates.values().map(|d| serde_json::json!({
            "id": d.id, "name": d.name, "region": d.region, "overseas": d.overseas,
        })).collect::<Vec<_>>(),
        "partner_centres_version": reference.partner_centres_version,
        "partner_centres": reference.partner_centres.values().collect::<Vec<_>>(),
        "booster_openings": [
            {"who": "65+", "date": policy.booster_open_65_plus},
            {"who": "adults", "date": policy.booster_open_adults},
        ],
    }))
}

/// The dashboard's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard/") }))
        .route("/dashboard", get(|| async { Redirect::to("/dashboard/") }))
        .route(
            "/dashboard/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/dashboard/app.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route("/v1/reference", get(reference))
}
