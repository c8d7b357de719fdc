//! The OpenAPI 3.1 document of the HTTP API, served at `/v1/openapi.json` and committed as
//! `schemas/openapi.json` (`campaign-ledger openapi > schemas/openapi.json` writes it; a test
//! fails when the two differ, and another calls every documented path on the router).

use serde_json::{json, Value};

/// The body of the person routes: the ref, never in a URL.
fn person_body() -> Value {
    json!({"required": true, "content": {"application/json": {"schema": {"type": "object",
        "required": ["person_ref"], "additionalProperties": false,
        "properties": {"person_ref": {"type": "string", "pattern": crate::domain::ID_PATTERN}}}}}})
}

fn error_response(description: &str) -> Value {
    json!({"description": description,
           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

/// One server-sent event as a client reads it (the fields of the SSE format; `data` is JSON
/// text: the event, the snapshot, or an error message for `event: error`).
fn sse_event() -> Value {
    json!({"type": "object", "description": "One server-sent event.",
           "properties": {"data": {"type": "string"}, "event": {"type": "string"},
                          "id": {"type": "string"}, "retry": {"type": "integer"}}})
}

/// A live endpoint's 503: the server follows as many live clients as it may.
fn live_limit_response() -> Value {
    json!({"description": "The server already follows as many live clients as it may (code too_many_live_clients; serve --max-live-clients): retry after the delay given.",
           "headers": {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer", "minimum": 1}}},
           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn json_response(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn hex64() -> Value {
    json!({"type": "string", "pattern": "^[0-9a-f]{64}$"})
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn auth_errors(mut responses: Value) -> Value {
    responses["401"] = error_response(
        "No token, an unknown or expired one (codes missing_token, malformed_token, unknown_token, expired_token).",
    );
    responses["403"] =
        error_response("The token's role or directorates do not allow this (code forbidden).");
    responses
}

/// The document.
pub fn document() -> Value {
    let mut doc = base();
    strict_queries(&mut doc);
    doc
}

/// Every operation refuses query parameters it does not list (`strict.rs`): says so in each.
fn strict_queries(doc: &mut Value) {
    const NOTE: &str = "A query parameter this route does not take (code unknown_query_parameter): the message names it and lists the accepted ones.";
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for item in paths.values_mut() {
        for op in item
            .as_object_mut()
            .into_iter()
            .flat_map(|o| o.values_mut())
        {
            let responses = &mut op["responses"];
            match responses["400"]["description"].as_str() {
                Some(d) => responses["400"]["description"] = format!("{d} {NOTE}").into(),
                None => responses["400"] = error_response(NOTE),
            }
        }
    }
}

fn base() -> Value {
    let mut paths = serde_json::Map::new();
    for group in [
        paths_commands_and_projections(),
        paths_events_and_audit(),
        paths_meta(),
    ] {
        if let Value::Object(m) = group {
            paths.extend(m);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "campaign-ledger HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "An event-sourced, hash-chained ledger of a vaccination campaign. Commands are checked by the rules and append events; projections fold them into counts. Without a token file the server acts with full rights and listens on loopback only; with one (`serve --auth FILE`) every /v1 and /metrics request needs `Authorization: Bearer TOKEN`. Errors are always {\"error\": {\"code\", \"message\"}}.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}
        },
        "servers": [{"url": "http://127.0.0.1:8080"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": components()
    })
}

/// Parameters several paths share, and the note on how reports are shaped per role.
fn common_params() -> (Value, Value, Value, Value, &'static str) {
    let name_param = json!({"name": "name", "in": "path", "required": true,
        "description": "A projection name (GET /v1/projections lists them).",
        "schema": {"type": "string", "examples": ["doses_by_directorate"]}});
    let as_of = json!({"name": "as_of", "in": "query", "required": false,
        "description": "Business date: events up to the end of this day in the campaign's time zone (Europe/Paris).",
        "schema": {"type": "string", "format": "date"}});
    let known_at = json!({"name": "known_at", "in": "query", "required": false,
        "description": "Only events recorded by this time (auditors only): what the ledger said then.",
        "schema": {"type": "string", "format": "date-time"}});
    let after = json!({"name": "after", "in": "query", "required": false,
        "description": "Events after this log position (default 0: from the start).",
        "schema": {"type": "integer", "minimum": 0, "maximum": i64::MAX}});
    let report_shaping = "Supervisors get the rows of their directorates only (totals summed over them) and are refused national projections (no directorate column). For every role but auditor, counts from 1 to 4 of a single site are the string \"<5\" and `suppressed` is true.";
    (name_param, as_of, known_at, after, report_shaping)
}

/// Paths: Writing commands; reading projections and findings.
fn paths_commands_and_projections() -> Value {
    let (name_param, as_of, known_at, _, report_shaping) = common_params();
    json!({
    "/v1/commands": {"post": {
        "operationId": "sendCommands",
        "summary": "Send one command or an array of up to 1,000 (the `submit` contract).",
        "description": "Rejections by the rules are outcomes (HTTP 200), one per command in request order. A request whose every command is invalid (not a command of this schema) is answered 422 with the same outcomes, each saying what was wrong; a mix of invalid and other outcomes is 200. Agents send commands for their directorates (not AuthoriseSite), partners RedeemTicket for their partner centres, admins AuthoriseSite; supervisors and auditors never write. A request with one command the token may not send is refused whole (403) and records nothing. The actor (role, directorate, token id) is recorded in every event's envelope.",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {
            "oneOf": [reference("Command"), {"type": "array", "maxItems": 1000, "items": reference("Command")}]}}}},
        "responses": auth_errors(json!({
            "200": json_response("One outcome, or an array of outcomes in request order.",
                json!({"oneOf": [reference("Outcome"), {"type": "array", "items": reference("Outcome")}]})),
            "400": error_response("The body is not JSON, or not an object or array, or an array of over 1,000 commands (codes malformed_json, not_a_command, too_many_commands)."),
            "422": json_response("Every command is invalid (outcome `invalid`, with the reason in `error`): nothing was recorded.",
                json!({"oneOf": [reference("Outcome"), {"type": "array", "items": reference("Outcome")}]})),
            "409": error_response("A concurrency conflict survived the retries; send the command again."),
            "413": error_response("A body over 1 MiB (code body_too_large)."),
            "415": error_response("The body is not sent as Content-Type: application/json (code not_json_content_type): a web page cannot forge a command."),
            "503": error_response("The store cannot be reached now; retry.")
        }))
    }},
    "/v1/projections": {"get": {
        "operationId": "listProjections",
        "summary": "The projections, with their checkpoint and state.",
        "responses": auth_errors(json!({
            "200": json_response("One entry per projection.", json!({"type": "array", "items": reference("ProjectionStatus")}))
        }))
    }},
    "/v1/projections/{name}": {"get": {
        "operationId": "readProjection",
        "summary": "A projection as of a business date (and, for auditors, as known at a time).",
        "description": report_shaping,
        "parameters": [name_param, as_of, known_at],
        "responses": auth_errors(json!({
            "200": json_response("The report.", reference("Report")),
            "400": error_response("A bad as_of or known_at (codes bad_as_of, bad_known_at)."),
            "404": error_response("No projection of that name (code unknown_projection).")
        }))
    }},
    "/v1/projections/{name}/live": {"get": {
        "operationId": "followProjection",
        "summary": "Server-sent events: a snapshot (event `snapshot`, id = log position, data = the report) at once and after every change, coalesced (at most ten a second).",
        "description": report_shaping,
        "parameters": [name_param, as_of],
        "responses": auth_errors(json!({
            "200": {"description": "An event stream.", "content": {"text/event-stream": {"schema": sse_event()}}},
            "400": error_response("A bad as_of (code bad_as_of), or a parameter this route does not take (code unknown_query_parameter: a live view follows the head, so it takes no known_at; read a past state with GET /v1/projections/{name}?known_at=)."),
            "404": error_response("No projection of that name."),
            "503": live_limit_response()
        }))
    }},
    "/v1/projections/{name}/rebuild": {"post": {
        "operationId": "rebuildProjection",
        "summary": "Replay the log into a new state beside the live one and swap it in (admins).",
        "parameters": [name_param],
        "responses": auth_errors(json!({
            "200": json_response("What the rebuild did.", reference("Rebuilt")),
            "404": error_response("No projection of that name.")
        }))
    }},
    "/v1/findings": {"get": {
        "operationId": "readFindings",
        "summary": "Open data-quality findings: people whose recorded series no longer holds after a correction (supervisors: their directorates; auditors and admins: all).",
        "description": "Derived from the log by the domain's fold (nothing is stored); a later entry that makes the series whole closes the finding. Each finding names the person by pseudonym only (never the ref) and lists the entries involved; the read is recorded in the access log.",
        "parameters": [{"name": "directorate", "in": "query", "required": false,
            "description": "Only this directorate's findings (a supervisor: one of its own); an id of the reference list (any other is refused with 400 unknown_directorate).",
            "schema": {"type": "string", "enum": crate::domain::Reference::builtin().directorates.keys().collect::<Vec<_>>(), "examples": ["paris"]}}, as_of, known_at],
        "responses": auth_errors(json!({
            "200": json_response("The findings.", reference("Findings")),
            "400": error_response("A bad as_of or known_at (codes bad_as_of, bad_known_at), or a directorate not in the reference list (code unknown_directorate).")
        }))
    }}
    })
}

/// Paths: Reading events; the audit endpoints; erasure.
fn paths_events_and_audit() -> Value {
    let (_, _, _, after, _) = common_params();
    json!({
    "/v1/streams/{id}": {"get": {
        "operationId": "readStream",
        "summary": "Every event of one stream, in version order (for a supervisor, those naming its directorates).",
        "parameters": [{"name": "id", "in": "path", "required": true,
            "description": "A stream id, for example `ticket/LYO-0001` (URL-encode the slash: ticket%2FLYO-0001).",
            "schema": {"type": "string"}}],
        "responses": auth_errors(json!({
            "200": json_response("The events.", json!({"type": "array", "items": reference("Event")})),
            "404": error_response("No stream of that id (code unknown_stream).")
        }))
    }},
    "/v1/events": {"get": {
        "operationId": "readEvents",
        "summary": "Events after a position, in order (at most 1,000; supervisors: those naming their directorates).",
        "parameters": [after, {"name": "limit", "in": "query", "required": false,
            "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}],
        "responses": auth_errors(json!({
            "200": {"description": "The events. The header Ledger-Next-After says where to continue.",
                "headers": {"Ledger-Next-After": {"description": "The last position looked at.", "schema": {"type": "integer"}}},
                "content": {"application/json": {"schema": {"type": "array", "items": reference("Event")}}}},
            "400": error_response("after or limit is not a whole number (code bad_query).")
        }))
    }},
    "/v1/events/live": {"get": {
        "operationId": "followEvents",
        "summary": "Server-sent events: every event after `after` (or the Last-Event-ID header), then each new one; id = position, event = `ledger-event`. No gap, no duplicate.",
        "parameters": [after, {"name": "Last-Event-ID", "in": "header", "required": false,
            "description": "Resume after this position (browsers send it when they reconnect); it wins over `after`, which is checked all the same.",
            "schema": {"type": "integer", "minimum": 0, "maximum": i64::MAX}}],
        "responses": auth_errors(json!({
            "200": {"description": "An event stream.", "content": {"text/event-stream": {"schema": sse_event()}}},
            "400": error_response("A bad after or Last-Event-ID."),
            "503": live_limit_response()
        }))
    }},
    "/v1/audit/digest": {"get": {
        "operationId": "readDigest",
        "summary": "The head of the log as JSON: a view of its signed checkpoint (the newest one the server's witnesses cosigned, when it states the head), for tools (auditors).",
        "responses": auth_errors(json!({"200": json_response("The digest.", reference("Digest"))}))
    }},
    "/v1/audit/checkpoint": {"get": {
        "operationId": "readCheckpoint",
        "summary": "The newest checkpoint of the log: a C2SP tlog-checkpoint signed note (origin campaign-ledger/<ledger id>, tree size, root, extension lines chain and access), with its witnesses' cosignatures (C2SP tlog-cosignature) (auditors).",
        "responses": auth_errors(json!({"200": {"description": "The signed note.", "content": {"text/plain": {"schema": {"type": "string"}}}},
            "404": error_response("The log holds no event yet (code empty_log), or the server has no signing key, so it signs no checkpoint (code no_signing_key).")}))
    }},
    "/v1/audit/access-log": {"get": {
        "operationId": "readAccessLog",
        "summary": "The disclosures of person-level data (who was shown what of whom, when, through what: reads, lookups, proofs, findings, refusals of commands about known people), oldest first (auditors).",
        "parameters": [{"name": "after", "in": "query", "required": false,
            "description": "Entries after this entry id (0 for the first).",
            "schema": {"type": "integer", "minimum": 0, "maximum": i64::MAX, "default": 0}},
            {"name": "limit", "in": "query", "required": false,
            "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
            {"name": "person", "in": "query", "required": false,
            "description": "Only the reads of this person_id (a pseudonym; a person_ref is refused with code person_ref_not_pseudonym: use POST /v1/persons/record).", "schema": {"type": "string"}}],
        "responses": auth_errors(json!({
            "200": json_response("The entries.", json!({"type": "array", "items": reference("AccessEntry")})),
            "400": error_response("A bad query (code bad_query), or a person_ref given as person (code person_ref_not_pseudonym).")
        }))
    }},
    "/v1/audit/changes": {"get": {
        "operationId": "readChanges",
        "summary": "What changed since a time: the entries recorded in a window of commit times that count on earlier business dates (late records, reversals), with a projection's figures for each date and directorate they touch, as known before and after the window (auditors).",
        "parameters": [{"name": "known_since", "in": "query", "required": true,
            "description": "The window's start (exclusive), RFC 3339 with an offset.", "schema": {"type": "string", "format": "date-time"}},
            {"name": "known_until", "in": "query", "required": false,
            "description": "The window's end (inclusive); default: everything recorded.", "schema": {"type": "string", "format": "date-time"}},
            {"name": "projection", "in": "query", "required": false,
            "description": "The projection compared.", "schema": {"type": "string", "default": "doses_by_directorate"}}],
        "responses": auth_errors(json!({
            "200": json_response("The entries and the figures.", reference("Changes")),
            "400": error_response("A missing or bad time (code bad_known_at or bad_query)."),
            "404": error_response("No projection of that name.")
        }))
    }},
    "/v1/audit/proofs/inclusion": {"get": {
        "operationId": "proveInclusion",
        "summary": "An RFC 9162 inclusion proof: the event at `position` is in the tree of `tree_size` events, with a digest of the log at that size (signed when the server has the ledger's key). Check it offline with `campaign-ledger audit check-proof` (auditors).",
        "parameters": [{"name": "position", "in": "query", "required": true,
            "description": "The event's position (its leaf is position - 1).", "schema": {"type": "integer", "minimum": 1, "maximum": i64::MAX}},
            {"name": "tree_size", "in": "query", "required": false,
            "description": "Events in the tree (default: the head).", "schema": {"type": "integer", "minimum": 1, "maximum": i64::MAX}}],
        "responses": auth_errors(json!({
            "200": json_response("The proof.", reference("InclusionProof")),
            "400": error_response("A position or tree size of 0 (code invalid), or a query that does not parse (code bad_query)."),
            "404": error_response("A tree size beyond the head, or a position after tree_size: the log has no such proof (code not_in_log).")
        }))
    }},
    "/v1/audit/proofs/consistency": {"get": {
        "operationId": "proveConsistency",
        "summary": "An RFC 9162 consistency proof: the tree of `second` events extends the tree of `first`, with digests of the log at both sizes (auditors).",
        "parameters": [{"name": "first", "in": "query", "required": true,
            "description": "Events in the older tree.", "schema": {"type": "integer", "minimum": 1, "maximum": i64::MAX}},
            {"name": "second", "in": "query", "required": false,
            "description": "Events in the newer tree (default: the head).", "schema": {"type": "integer", "minimum": 1, "maximum": i64::MAX}}],
        "responses": auth_errors(json!({
            "200": json_response("The proof.", reference("ConsistencyProof")),
            "400": error_response("A size of 0 (code invalid), or a query that does not parse (code bad_query)."),
            "404": error_response("A size beyond the head, or first larger than second: the log has no such proof (code not_in_log).")
        }))
    }},
    "/v1/persons/record": {"post": {
        "operationId": "lookUpPerson",
        "summary": "One person found by their ref (in the body, never in a URL): their pseudonym, their events and the access-log entries of disclosures of their data. The lookup is itself logged as a reveal (auditors). Not cached (Cache-Control: no-store).",
        "requestBody": person_body(),
        "responses": auth_errors(json!({
            "200": json_response("The person's record.", reference("PersonRecord")),
            "400": error_response("Not a JSON body with person_ref (code bad_body), or a ref that is not one (code bad_person_ref)."),
            "415": error_response("No Content-Type: application/json (code not_json_content_type)."),
            "404": error_response("No key for this ref: never recorded, or erased (code unknown_person); or no access log (code no_access_log).")
        }))
    }},
    "/v1/persons/proof": {"post": {
        "operationId": "provePerson",
        "summary": "One person's record provable alone: each of their events with its inclusion proof against one digest of the head, and nothing of anyone else. The ref is in the body; logged in the access log (auditors).",
        "requestBody": person_body(),
        "responses": auth_errors(json!({
            "200": json_response("The record and its proofs.", reference("PersonProof")),
            "400": error_response("Not a JSON body with person_ref (code bad_body), or a ref that is not one (code bad_person_ref)."),
            "415": error_response("No Content-Type: application/json (code not_json_content_type)."),
            "404": error_response("No key for this ref: never recorded, or erased (code unknown_person); or no access log (code no_access_log).")
        }))
    }},
    "/v1/persons/erase": {"post": {
        "operationId": "erasePerson",
        "summary": "Erase a person (admins): records PersonErased and destroys their key. The log, its chain and every count stay; reads of their events say erased.",
        "requestBody": person_body(),
        "responses": auth_errors(json!({
            "200": json_response("Erased.", json!({"type": "object", "required": ["person_id", "position"],
                "properties": {"person_id": {"type": "string"}, "position": {"type": "integer",
                "description": "The position of the PersonErased event."}}})),
            "400": error_response("Not a JSON body with person_ref (code bad_body), a ref that is not one (code bad_person_ref), or a person recorded before encryption."),
            "415": error_response("No Content-Type: application/json (code not_json_content_type)."),
            "404": error_response("No key for this person_ref: never recorded, or erased already (code unknown_person).")
        }))
    }}
    })
}

/// Paths: Who the caller is, reference data, this document, health, metrics, the dashboard.
fn paths_meta() -> Value {
    json!({
    "/v1/whoami": {"get": {
        "operationId": "whoAmI",
        "summary": "The token's id, role and scope.",
        "responses": auth_errors(json!({"200": json_response("The caller.", json!({"type": "object",
            "required": ["role", "auth"],
            "properties": {"token_id": {"type": "string"}, "role": {"type": "string"},
                "auth": {"type": "boolean"}, "suppressed": {"type": "boolean"},
                "directorates": {"type": "array", "items": {"type": "string"}},
                "partner_centres": {"type": "array", "items": {"type": "string"}}}}))}))
    }},
    "/v1/reference": {"get": {
        "operationId": "readReference",
        "summary": "The directorates (id, name, region), the partner centres (id, name, directorate, active dates), the campaign's time zone and the booster openings (any valid token).",
        "responses": auth_errors(json!({"200": json_response("The reference data.", json!({"type": "object",
            "properties": {"version": {"type": "string"}, "time_zone": {"type": "string"},
                "directorates": {"type": "array", "items": {"type": "object", "properties": {
                    "id": {"type": "string"}, "name": {"type": "string"}, "region": {"type": "string"}, "overseas": {"type": "boolean"}}}},
                "partner_centres_version": {"type": "string"},
                "partner_centres": {"type": "array", "description": "The partner centres (reference/partner_centres.toml): commands, events and partner tokens name them by id.", "items": {"type": "object",
                    "required": ["id", "name", "directorate", "active_from"], "properties": {
                    "id": {"type": "string"}, "name": {"type": "string"}, "directorate": {"type": "string"},
                    "active_from": {"type": "string", "format": "date"}, "active_until": {"type": "string", "format": "date"},
                    "former_names": {"type": "array", "items": {"type": "string"}}}}},
                "booster_openings": {"type": "array", "items": {"type": "object", "properties": {
                    "who": {"type": "string"}, "date": {"type": "string", "format": "date"}}}}}}))}))
    }},
    "/v1/openapi.json": {"get": {
        "operationId": "openApi", "security": [],
        "summary": "This document.",
        "responses": {"200": {"description": "OpenAPI 3.1.", "content": {"application/json": {}}}}
    }},
    "/metrics": {"get": {
        "operationId": "metrics",
        "summary": "Prometheus text: commands by outcome, append latency histogram, projection lag, relay lag (auditors and admins).",
        "responses": auth_errors(json!({"200": {"description": "Text format 0.0.4.", "content": {"text/plain": {"schema": {"type": "string"}}}}}))
    }},
    "/healthz": {"get": {
        "operationId": "healthz", "security": [],
        "summary": "The process answers.",
        "responses": {"200": {"description": "ok", "content": {"text/plain": {"schema": {"type": "string"}}}}}
    }},
    "/readyz": {"get": {
        "operationId": "readyz", "security": [],
        "summary": "The store answers and every background part the server runs (projection follower, relay, digest publisher) is running.",
        "responses": {
            "200": json_response("Ready.", json!({"type": "object", "required": ["ready", "position", "reasons"], "properties": {"ready": {"const": true}, "position": {"type": "integer"}, "reasons": {"type": "array", "maxItems": 0}}})),
            "503": json_response("Not ready: the store unreachable, or a part starting, failing or stopped; `reasons` says which and why.", json!({"type": "object", "required": ["ready", "reasons"], "properties": {"ready": {"const": false}, "position": {"type": "integer"}, "reasons": {"type": "array", "items": {"type": "string"}}}}))
        }
    }},
    "/dashboard/": {"get": {
        "operationId": "dashboard", "security": [],
        "summary": "The campaign dashboard (HTML; it asks for a token, or takes one from the URL fragment #token=…).",
        "description": "The page reads its query itself (the server ignores it): `as_of` (YYYY-MM-DD), `known_at` (RFC 3339, auditors) and `lang` (`fr`, the default, or `en`); it keeps them up to date as the user changes the view, so a view can be shared or reloaded.",
        "parameters": [
            {"name": "as_of", "in": "query", "required": false,
                "description": "A date (YYYY-MM-DD) the page shows; the page reads it and ignores what it cannot read (the server ignores it).",
                "schema": {"type": "string"}},
            {"name": "known_at", "in": "query", "required": false,
                "description": "A time (RFC 3339) the page shows to auditors; the page reads it and ignores what it cannot read (the server ignores it).",
                "schema": {"type": "string"}},
            {"name": "lang", "in": "query", "required": false,
                "description": "`fr` or `en`; the page reads it, and shows French for any other value (the server ignores it).",
                "schema": {"type": "string", "examples": ["fr", "en"], "default": "fr"}}],
        "responses": {"200": {"description": "The page.", "content": {"text/html": {}}}}
    }}
    })
}

/// The components: security schemes and the schemas the paths refer to.
fn components() -> Value {
    json!({
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
            "description": "A token from the server's token file (`campaign-ledger auth token`)."}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string", "description": "Stable snake_case code."},
                               "message": {"type": "string", "description": "What was wrong and what to do."}}}}},
            "Command": command_schema(),
            "Outcome": {"type": "object", "required": ["line", "command_id", "outcome"], "properties": {
                "line": {"type": "integer", "description": "The command's 1-based place in the request."},
                "command_id": {"type": ["string", "null"], "format": "uuid"},
                "outcome": {"enum": ["accepted", "duplicate", "rejected", "invalid"]},
                "error": {"type": "object", "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
            "Report": {"type": "object", "required": ["projection", "position", "columns", "rows", "totals"], "properties": {
                "projection": {"type": "string"},
                "as_of": {"type": ["string", "null"], "format": "date"},
                "known_at": {"type": ["string", "null"]},
                "position": {"type": "integer", "description": "The last log position folded in."},
                "columns": {"type": "array", "items": {"type": "string"}},
                "rows": {"type": "array", "items": {"type": "object", "additionalProperties": {"type": ["string", "integer", "null"]}}},
                "totals": {"type": "object", "additionalProperties": {"type": ["integer", "string"]}},
                "suppressed": {"type": "boolean", "description": "Counts from 1 to 4 of a single site are shown as \"<5\"."}}},
            "Findings": {"type": "object", "required": ["position", "findings"], "properties": {
                "directorate": {"type": ["string", "null"]},
                "as_of": {"type": ["string", "null"], "format": "date"},
                "known_at": {"type": ["string", "null"]},
                "position": {"type": "integer", "description": "The last log position read."},
                "findings": {"type": "array", "items": {"type": "object",
                    "required": ["directorate", "kind", "date", "person_id", "entries", "action"], "properties": {
                    "directorate": {"type": "string", "description": "The directorate that must act (`unassigned`: no OFII dose in the series)."},
                    "kind": {"enum": ["second_dose_without_first", "booster_without_primary_series", "dose_interval_too_short"]},
                    "date": {"type": "string", "format": "date", "description": "The date of the entry that no longer holds."},
                    "person_id": {"type": ["string", "null"], "description": "The person's pseudonym (null for a log written before the key store)."},
                    "entries": {"type": "array", "items": {"type": "object",
                        "required": ["command_id", "dose", "date", "ofii", "reversed"], "properties": {
                        "command_id": {"type": "string", "format": "uuid"},
                        "dose": {"enum": ["first", "second", "booster"]},
                        "date": {"type": "string", "format": "date"},
                        "ofii": {"type": "boolean", "description": "Given by the OFII (false: recorded as given elsewhere)."},
                        "reversed": {"type": "boolean"}}}},
                    "action": {"type": "string", "description": "What to do, in one sentence."}}}}}},
            "ProjectionStatus": {"type": "object", "properties": {
                "name": {"type": "string"}, "description": {"type": "string"}, "origin": {"type": "string"},
                "checkpoint": {"type": "integer"}, "head": {"type": "integer"}, "status": {"type": "string"}}},
            "Rebuilt": {"type": "object", "properties": {
                "name": {"type": "string"}, "events": {"type": "integer"}, "position": {"type": "integer"},
                "identical_to_live": {"type": ["boolean", "null"]}}},
            "Event": {"type": "object", "required": ["position", "event_id", "stream_id", "stream_version", "event_type",
                "schema_version", "occurred_at", "recorded_at", "command_id", "actor", "data", "prev_hash", "hash"], "properties": {
                "position": {"type": "integer"}, "event_id": {"type": "string", "format": "uuid"},
                "stream_id": {"type": "string"}, "stream_version": {"type": "integer"},
                "event_type": {"type": "string"}, "schema_version": {"type": "integer"},
                "occurred_at": {"type": "string", "format": "date-time"},
                "recorded_at": {"type": "string", "format": "date-time"},
                "command_id": {"type": "string", "format": "uuid"}, "correlation_id": {"type": ["string", "null"]},
                "actor": {"type": "object", "required": ["role"], "properties": {"role": {"type": "string"}, "directorate": {"type": "string"}, "agent_ref": {"type": "string"}},
                    "description": "Who recorded the event: role, directorate, agent_ref (the token id). Its stored canonical JSON, written as the object it is (on NATS the same bytes are the string attribute ledgeractor)."},
                "data": {"type": "object", "description": "The event's data: its stored canonical JSON written as the object it is, byte for byte, exactly as the CloudEvent's data on NATS. The hash covers these bytes."},
                "prev_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "hash": {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "SHA-256(prev_hash ‖ canonical bytes)."},
                "person": {"type": "object", "description": "For an event naming a person (its data holds person_ref sealed: enc2:<person_id>:…, or enc1: in events of older builds): what the reader may see. Every answer carrying it is recorded in the access log.",
                    "required": ["status"], "properties": {
                    "status": {"enum": ["revealed", "erased", "clear", "no_key"]},
                    "person_id": {"type": "string"}, "person_ref": {"type": "string"},
                    "erased_at": {"type": "string", "format": "date-time"}}}}},
            "AccessEntry": {"type": "object", "required": ["id", "at", "caller", "role", "route", "persons", "events", "revealed", "version"],
                "properties": {"id": {"type": "integer"}, "at": {"type": "string", "format": "date-time"},
                "caller": {"type": "string", "description": "The token id (- without tokens; the user on the command line)."},
                "role": {"type": "string"}, "route": {"type": "string", "description": "Through what: the HTTP method and path with query, or the command line's subcommand."},
                "persons": {"type": "array", "items": {"type": "string"}, "description": "person_ids (pseudonyms)."},
                "events": {"type": "integer"}, "revealed": {"type": "integer"},
                "version": {"type": "integer", "description": "1: written before entries had a kind; 2: with disclosed."},
                "disclosed": {"type": "string", "description": "What kind of fact: events, person_record, person_proof, event_proof, findings, or refusal:<code> (a refused command's message about a known person)."}}},
            "Digest": {"type": "object", "required": ["format", "position", "hash"],
                "description": "Format campaign-ledger-digest/2: a view of one signed checkpoint (member checkpoint, a C2SP signed note with its witnesses' cosignatures); verifiers check that every other member says what the checkpoint says, and trust only the note's signatures, against keys they bring. Format campaign-ledger-digest/1 (older files): signed JSON (store, recorded_at, signed_at, public_key, signature). `campaign-ledger audit verify --digest FILE` checks either and proves the log extends it.",
                "properties": {
                "format": {"enum": ["campaign-ledger-digest/2", "campaign-ledger-digest/1"]},
                "checkpoint": {"type": "string", "description": "The signed checkpoint (C2SP tlog-checkpoint note), with cosignatures; absent when the server has no signing key."},
                "store": {"type": "string", "description": "First format only."}, "position": {"type": "integer"},
                "hash": {"type": "string", "description": "The chain hash at that position (the checkpoint's chain line)."},
                "recorded_at": {"type": ["string", "null"], "description": "First format only."},
                "signed_at": {"type": "string", "format": "date-time", "description": "First format only."},
                "ledger": {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "The ledger's id: the hash of its first event (absent while the log is empty)."},
                "tree_size": {"type": "integer", "minimum": 0, "description": "Events in the Merkle tree (the position)."},
                "root_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "The RFC 9162 root of that tree."},
                "access_log_size": {"type": "integer", "minimum": 0, "description": "Entries in the access log (absent where there is none)."},
                "access_log_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "The access log's chain head at that entry."},
                "public_key": {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "First format only."},
                "signature": {"type": "string", "pattern": "^[0-9a-f]{128}$", "description": "First format only."}}},
            "InclusionProof": {"type": "object", "additionalProperties": false,
                "required": ["format", "tree_size", "leaf_index", "leaf_hash", "audit_path", "event", "digest"],
                "properties": {"format": {"const": "campaign-ledger-inclusion-proof/1"},
                "tree_size": {"type": "integer", "minimum": 1}, "leaf_index": {"type": "integer", "minimum": 0},
                "leaf_hash": hex64(), "audit_path": {"type": "array", "items": hex64(), "description": "Leaf to root (RFC 9162 order)."},
                "event": {"type": "string", "description": "The event's export line (a CloudEvent, as `campaign-ledger export` writes it)."},
                "digest": reference("Digest")}},
            "ConsistencyProof": {"type": "object", "additionalProperties": false,
                "required": ["format", "first", "second", "consistency_path", "from", "to"],
                "properties": {"format": {"const": "campaign-ledger-consistency-proof/1"},
                "first": {"type": "integer", "minimum": 1}, "second": {"type": "integer", "minimum": 1},
                "consistency_path": {"type": "array", "items": hex64()},
                "from": reference("Digest"), "to": reference("Digest")}},
            "PersonProof": {"type": "object", "additionalProperties": false,
                "required": ["format", "person", "tree_size", "events", "digest"],
                "properties": {"format": {"const": "campaign-ledger-person-proof/1"},
                "person": {"type": "string", "description": "The person's pseudonym."},
                "tree_size": {"type": "integer", "minimum": 1},
                "events": {"type": "array", "items": {"type": "object", "additionalProperties": false,
                    "required": ["leaf_index", "leaf_hash", "audit_path", "event"],
                    "properties": {"leaf_index": {"type": "integer", "minimum": 0}, "leaf_hash": hex64(),
                    "audit_path": {"type": "array", "items": hex64()}, "event": {"type": "string"}}}},
                "digest": reference("Digest")}},
            "Changes": {"type": "object", "required": ["known_since", "known_until", "projection", "entries", "figures"],
                "properties": {"known_since": {"type": "string"}, "known_until": {"type": ["string", "null"]},
                "projection": {"type": "string"},
                "entries": {"type": "array", "items": {"type": "object",
                    "required": ["position", "recorded_at", "event_type", "kind", "directorate", "business_date"],
                    "properties": {"position": {"type": "integer"}, "recorded_at": {"type": "string"},
                    "event_type": {"type": "string"}, "kind": {"enum": ["late_entry", "reversal"]},
                    "directorate": {"type": ["string", "null"]}, "business_date": {"type": "string", "format": "date"}}}},
                "figures": {"type": "array", "items": {"type": "object",
                    "required": ["as_of", "directorate", "before", "after"],
                    "properties": {"as_of": {"type": "string", "format": "date"}, "directorate": {"type": ["string", "null"]},
                    "before": {"type": ["object", "null"]}, "after": {"type": ["object", "null"]}}}}}},
            "PersonRecord": {"type": "object", "required": ["person_id", "events", "access_log"],
                "properties": {"person_id": {"type": "string"},
                "events": {"type": "array", "items": {"type": "object"}},
                "access_log": {"type": "array", "items": reference("AccessEntry")}}}
        }
    })
}

/// The document as committed in `schemas/openapi.json` (pretty, with a final newline).
pub fn document_text() -> String {
    serde_json::to_string_pretty(&document()).expect("json") + "\n"
}

/// One command: exactly one of the command documents `schemas/commands/*.json` (the same
/// schemas `submit` files follow), each closed to unknown fields, their `$defs` written in
/// place so that the OpenAPI document stands alone.
fn command_schema() -> Value {
    fn inline(v: &Value, defs: &serde_json::Map<String, Value>) -> Value {
        match v {
            Value::Object(o) => {
                if let Some(name) = o
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_prefix("#/$defs/"))
                {
                    if let Some(d) = defs.get(name) {
                        return inline(d, defs);
                    }
                }
                Value::Object(
                    o.iter()
                        .filter(|(k, _)| !matches!(k.as_str(), "$defs" | "$schema" | "$id"))
                        .map(|(k, v)| (k.clone(), inline(v, defs)))
                        .collect(),
                )
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| inline(x, defs)).collect()),
            other => other.clone(),
        }
    }
    let one_of: Vec<Value> = crate::domain::schema::documents()
        .into_iter()
        .filter(|(path, _)| path.starts_with("commands/"))
        .map(|(_, doc)| {
            let defs = doc
                .get("$defs")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            inline(&doc, &defs)
        })
        .collect();
    json!({"description": "One command, as in `submit` files: one of the command schemas (`schemas/commands/`), told apart by `type`.",
        "oneOf": one_of})
}
