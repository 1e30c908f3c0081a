//! The connect page (`shared::handlers::connect`) served over HTTP on 127.0.0.1, as its
//! function URL serves it in Lambda: for the local run and the browser test.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use shared::adapters::cleverreach::TokenStore;
use shared::handlers::connect::{AdminAccess, ConnectDeps, PageRequest, handle};
use std::sync::Arc;

/// A running page: its base URL and the server task (aborted on drop).
pub struct ConnectPage {
    pub url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for ConnectPage {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Serves the page on `listener`. `deps.settings.public_url` should name the listener's
/// address, so that CleverReach sends the browser back here.
pub fn serve<S: TokenStore + 'static, A: AdminAccess + 'static>(
    listener: tokio::net::TcpListener,
    deps: Arc<ConnectDeps<S, A>>,
) -> std::io::Result<ConnectPage> {
    let url = format!("http://{}", listener.local_addr()?);
    let app = Router::new().fallback(page::<S, A>).with_state(deps);
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "connect page stopped");
        }
    });
    Ok(ConnectPage { url, server })
}

async fn page<S: TokenStore + 'static, A: AdminAccess + 'static>(
    State(deps): State<Arc<ConnectDeps<S, A>>>,
    method: Method,
    uri: Uri,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = PageRequest {
        method: method.as_str().to_string(),
        path: uri.path().to_string(),
        query,
        headers: headers
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().ok()?.to_string(),
                ))
            })
            .collect(),
        body: body.to_vec(),
    };
    let answer = handle(&request, &deps).await;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = if answer.json {
        "application/json"
    } else {
        "text/html; charset=utf-8"
    };
    let mut response = (status, [("content-type", content_type)], answer.body).into_response();
    for (name, value) in answer.headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::try_from(name),
            axum::http::HeaderValue::try_from(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}
