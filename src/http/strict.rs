//! Strict query strings: a parameter a route does not take is refused (400
//! `unknown_query_parameter`, naming it and listing the accepted ones) instead of being
//! ignored, so a misspelt `?aftr=5` never answers as if it were absent. The accepted names
//! come from the OpenAPI document itself (`in: query` parameters of the matched path and
//! method), so the document and the server cannot disagree. The dashboard's pages are left
//! alone (their query is the page's: `as_of`, `known_at`, `lang`).

use super::{openapi, ApiError};
use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::OnceLock;

type Accepted = HashMap<(String, String), Vec<String>>;

/// Whether a path is the API's (strict) rather than the dashboard's pages, whose query
/// (`as_of`, `known_at`, `lang`) is read by the page's script.
pub fn is_api(path: &str) -> bool {
    path.starts_with("/v1/") || ["/metrics", "/healthz", "/readyz"].contains(&path)
}

/// (method, path template) → the query parameters the document gives it.
fn accepted() -> &'static Accepted {
    static TABLE: OnceLock<Accepted> = OnceLock::new();
    TABLE.get_or_init(|| {
        let doc = openapi::document();
        let mut table = Accepted::new();
        let Some(paths) = doc["paths"].as_object() else {
            return table;
        };
        let query_names = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect()
        };
        for (path, item) in paths.iter().filter(|(p, _)| is_api(p)) {
            let shared = query_names(&item["parameters"]);
            for (method, op) in item.as_object().into_iter().flatten() {
                if method == "parameters" {
                    continue;
                }
                let mut names = shared.clone();
                names.extend(query_names(&op["parameters"]));
                table.insert((method.to_uppercase(), path.clone()), names);
            }
        }
        table
    })
}

/// Decodes `%XX` and `+` in a query parameter's name.
fn decode(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The names in a query string, in order, decoded.
pub fn names(query: &str) -> Vec<String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| decode(p.split_once('=').map_or(p, |(k, _)| k)))
        .collect()
}

/// The middleware (a `route_layer`, so the matched path is known).
pub async fn strict_query(req: Request, next: Next) -> Response {
    let (Some(path), Some(query)) = (req.extensions().get::<MatchedPath>(), req.uri().query())
    else {
        return next.run(req).await;
    };
    let key = (req.method().as_str().to_string(), path.as_str().to_string());
    let Some(allowed) = accepted().get(&key) else {
        return next.run(req).await;
    };
    if let Some(bad) = names(query).into_iter().find(|n| !allowed.contains(n)) {
        let takes = if allowed.is_empty() {
            "takes no query parameters".to_string()
        } else {
            format!("accepts only {}", allowed.join(", "))
        };
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_query_parameter",
            format!(
                "unknown query parameter {bad:?}: {} {} {takes} (see /v1/openapi.json)",
                key.0, key.1
            ),
        )
        .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_split_and_decoded() {
        assert_eq!(names("aftr=5&limit=2"), ["aftr", "limit"]);
        assert_eq!(names("a%5Fb=1&&flag"), ["a_b", "flag"]);
        assert_eq!(names("bad%zz=1&x%4"), ["bad%zz", "x%4"]);
        assert_eq!(names("%C3%A9t%C3=1&é%="), ["ét\u{fffd}", "é%"]);
    }

    #[test]
    fn the_table_comes_from_the_document() {
        let t = accepted();
        let events = &t[&("GET".to_string(), "/v1/events".to_string())];
        assert!(events.contains(&"after".to_string()) && events.contains(&"limit".to_string()));
        assert!(t[&("GET".to_string(), "/v1/whoami".to_string())].is_empty());
        assert!(!t.contains_key(&("GET".to_string(), "/dashboard/".to_string())));
    }
}
