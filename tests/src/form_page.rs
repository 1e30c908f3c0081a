//! A stand-in for Dynamics 365's Unified Interface, enough to run the checklist control for
//! real in a browser: it opens a record's main form as the org has it **published**
//! (`systemforms.formxml`), renders its tabs, sections and fields, puts each web resource
//! control in a frame showing the **published** web resource, loads the form libraries and
//! runs the OnLoad handlers with an execution context, and saves changed columns through the
//! Web API. The form context offers the documented Client API the control uses (attributes:
//! `getValue`/`setValue`/`getIsDirty`/`setSubmitMode`/`getSubmitMode`/`addOnChange`/
//! `fireOnChange`; controls: `getDisabled`, `getContentWindow`; `ui.getFormType`;
//! `data.addOnLoad`), and `Xrm` offers `Utility.getGlobalContext().userSettings` and
//! `WebApi.retrieveMultipleRecords`. Every Web API request (the page's and `Xrm.WebApi`'s)
//! goes to the Dataverse simulator as one of its users.
//!
//! Pages: `/main.aspx?etn=<table>&id=<guid>` (also `&lang=1031` for the user's language,
//! `&disabled=<column>,…` for columns the user may not change, as column security makes
//! them); `/WebResources/<name>`; `/api/data/v9.2/…`. Like the real app, a deactivated record
//! opens read-only (form type 3). Tests read the form through `window.crcForm`.

use crate::dataverse::DataverseSim;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::Value;
use std::sync::Arc;

const HOST_HTML: &str = include_str!("form_page/host.html");
const HOST_JS: &str = include_str!("form_page/host.js");

/// Errors starting the page.
#[derive(Debug, thiserror::Error)]
pub enum FormPageError {
    #[error("binding the page: {0}")]
    Bind(#[from] std::io::Error),
    #[error("getting a token for the page's user: {0}")]
    Token(String),
}

struct AppState {
    http: reqwest::Client,
    /// `{base}/api/data/v9.2/` of the simulator.
    api_root: String,
    token: String,
}

/// A running page server (stopped on drop).
pub struct FormApp {
    pub url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FormApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FormApp {
    /// The URL that opens a record's main form.
    pub fn record(&self, table: &str, id: &str) -> String {
        format!("{}/main.aspx?etn={table}&id={id}", self.url)
    }
}

/// Serves the app for `sim`, signed in as the simulator's client `client_id`.
pub async fn serve(
    sim: &DataverseSim,
    client_id: &str,
    client_secret: &str,
) -> Result<FormApp, FormPageError> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| FormPageError::Token(e.to_string()))?;
    let token = token(&http, sim, client_id, client_secret).await?;
    let state = Arc::new(AppState {
        http,
        api_root: sim.api_url(),
        token,
    });
    let app = Router::new()
        .route("/main.aspx", get(|| async { html(HOST_HTML) }))
        .route(
            "/host.js",
            get(|| async {
                (
                    [("content-type", "text/javascript; charset=utf-8")],
                    HOST_JS,
                )
            }),
        )
        .route("/WebResources/{*name}", get(web_resource))
        .route("/api/data/v9.2/{*rest}", any(proxy))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(FormApp { url, server })
}

fn html(body: &'static str) -> Response {
    ([("content-type", "text/html; charset=utf-8")], body).into_response()
}

async fn token(
    http: &reqwest::Client,
    sim: &DataverseSim,
    client_id: &str,
    client_secret: &str,
) -> Result<String, FormPageError> {
    let scope = format!("{}/.default", sim.resource());
    let answer = http
        .post(sim.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", client_secret),
            ("scope", scope.as_str()),
        ])
        .send()
        .await
        .map_err(|e| FormPageError::Token(e.to_string()))?;
    let body: Value = answer
        .json()
        .await
        .map_err(|e| FormPageError::Token(e.to_string()))?;
    body["access_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| FormPageError::Token("no access_token in the answer".into()))
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY)
}

/// A published web resource by name, with the content type of its `webresourcetype`; 404
/// when it does not exist or was never published (as the app serves only published ones).
async fn web_resource(State(app): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    let filter = format!("name eq '{}'", name.replace('\'', "''"));
    let answer = app
        .http
        .get(format!("{}webresourceset", app.api_root))
        .query(&[
            ("$select", "content,webresourcetype,componentstate"),
            ("$filter", filter.as_str()),
        ])
        .bearer_auth(&app.token)
        .send()
        .await;
    let rows: Value = match answer {
        Ok(a) if a.status().is_success() => a.json().await.unwrap_or_default(),
        Ok(a) => {
            return (
                status(a.status().as_u16()),
                "the web resource cannot be read",
            )
                .into_response();
        }
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let Some(row) = rows["value"].as_array().and_then(|v| v.first()) else {
        return (StatusCode::NOT_FOUND, format!("no web resource {name}")).into_response();
    };
    if row["componentstate"] != 0 {
        return (
            StatusCode::NOT_FOUND,
            format!("the web resource {name} is not published"),
        )
            .into_response();
    }
    let Some(bytes) = row["content"]
        .as_str()
        .and_then(crate::browser::decode_base64)
    else {
        return (StatusCode::BAD_GATEWAY, "the content is not base64").into_response();
    };
    let content_type = match row["webresourcetype"].as_i64() {
        Some(1) => "text/html; charset=utf-8",
        Some(2) => "text/css; charset=utf-8",
        Some(3) => "text/javascript; charset=utf-8",
        Some(4) => "application/xml",
        Some(5) => "image/png",
        Some(6) => "image/jpeg",
        Some(7) => "image/gif",
        Some(10) => "image/x-icon",
        Some(11) => "image/svg+xml",
        _ => "application/octet-stream",
    };
    ([("content-type", content_type)], bytes).into_response()
}

/// Sends a Web API request on to the simulator as the page's user.
async fn proxy(
    State(app): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let rest = uri
        .path()
        .strip_prefix("/api/data/v9.2/")
        .unwrap_or_default();
    let mut url = format!("{}{rest}", app.api_root);
    if let Some(q) = uri.query() {
        url.push('?');
        url.push_str(q);
    }
    let Ok(method) = reqwest::Method::from_bytes(method.as_str().as_bytes()) else {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    };
    let mut request = app.http.request(method, url).bearer_auth(&app.token);
    for (name, value) in &headers {
        let n = name.as_str();
        let passed = matches!(
            n,
            "content-type" | "accept" | "prefer" | "if-match" | "if-none-match"
        ) || n.starts_with("odata-")
            || n.starts_with("mscrm.");
        if passed && let Ok(v) = value.to_str() {
            request = request.header(n, v);
        }
    }
    let answer = match request.body(body.to_vec()).send().await {
        Ok(a) => a,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let code = status(answer.status().as_u16());
    let mut kept = Vec::new();
    for name in [
        "content-type",
        "odata-entityid",
        "preference-applied",
        "odata-version",
    ] {
        if let Some(v) = answer.headers().get(name).and_then(|v| v.to_str().ok()) {
            kept.push((name, v.to_string()));
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    let mut response = (code, bytes).into_response();
    for (name, value) in kept {
        if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, v);
        }
    }
    response
}
