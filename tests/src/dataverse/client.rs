//! A thin Web API client for tests that drive the simulator as a CRM user would (an
//! administrator changing data, registering webhooks). It is deliberately plain: raw status,
//! headers and JSON, so that tests can check the wire format.

use super::{
    ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, CONNECTOR_CLIENT_ID, CONNECTOR_CLIENT_SECRET,
    DataverseSim,
};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;
use shared::secret::Secret;

/// Errors of [`WebApi`].
#[derive(Debug, thiserror::Error)]
pub enum WebApiError {
    #[error("request failed: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("the token endpoint answered {status}: {body}")]
    Token { status: u16, body: String },
}

/// One answer: status, headers, the body as text and (when it is JSON) parsed.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    /// The JSON body, or `Null` when the body is empty or not JSON.
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The id at the end of `OData-EntityId: …/set(id)`.
    pub fn entity_id(&self) -> Option<String> {
        let url = self.header("OData-EntityId")?;
        let open = url.rfind('(')?;
        url.get(open + 1..)?.strip_suffix(')').map(str::to_string)
    }
}

/// A client with a Bearer token of one app registration.
#[derive(Debug, Clone)]
pub struct WebApi {
    http: reqwest::Client,
    api_url: String,
    token: Secret,
}

impl WebApi {
    /// Gets a token with client credentials and returns a client using it.
    pub async fn connect(
        sim: &DataverseSim,
        client_id: &str,
        secret: &str,
    ) -> Result<WebApi, WebApiError> {
        // The simulator is local; a proxy from the environment must not get in between.
        let http = reqwest::Client::builder().no_proxy().build()?;
        let scope = format!("{}/.default", sim.resource());
        let resp = http
            .post(sim.token_url())
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
                ("scope", scope.as_str()),
            ])
            .send()
            .await?;
        let status = resp.status().as_u16();
        let body = resp.text().await?;
        if status != 200 {
            return Err(WebApiError::Token { status, body });
        }
        let token = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["access_token"].as_str().map(str::to_string))
            .ok_or(WebApiError::Token { status, body })?;
        Ok(WebApi {
            http,
            api_url: sim.api_url(),
            token: Secret::new(token),
        })
    }

    /// The default "admin" client: a person changing CRM data.
    pub async fn admin(sim: &DataverseSim) -> Result<WebApi, WebApiError> {
        Self::connect(sim, ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET).await
    }

    /// The default "connector" client: the connector's application user.
    pub async fn connector(sim: &DataverseSim) -> Result<WebApi, WebApiError> {
        Self::connect(sim, CONNECTOR_CLIENT_ID, CONNECTOR_CLIENT_SECRET).await
    }

    /// The Bearer token (to build requests the helpers don't cover).
    pub fn token(&self) -> &str {
        self.token.expose()
    }

    /// Sends a request to `{api}{path}` (`path` may also be an absolute URL, e.g. a nextLink).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Reply, WebApiError> {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{}", self.api_url, path)
        };
        let mut req = self
            .http
            .request(method, url)
            .bearer_auth(self.token.expose())
            .header("Accept", "application/json")
            .header("OData-MaxVersion", "4.0")
            .header("OData-Version", "4.0");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            headers,
            text,
            body,
        })
    }

    /// Sends a raw body with a content type (for `$batch`).
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        content_type: &str,
        body: String,
    ) -> Result<Reply, WebApiError> {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.api_url, path))
            .bearer_auth(self.token.expose())
            .header("Content-Type", content_type)
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            headers,
            text,
            body,
        })
    }

    pub async fn get(&self, path: &str) -> Result<Reply, WebApiError> {
        self.send(Method::GET, path, &[], None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Reply, WebApiError> {
        self.send(Method::POST, path, &[], Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Result<Reply, WebApiError> {
        self.send(Method::PATCH, path, &[], Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Reply, WebApiError> {
        self.send(Method::DELETE, path, &[], None).await
    }

    /// Creates a row and returns its id (errors when the answer is not 204).
    pub async fn create(&self, set: &str, body: &Value) -> Result<String, CreateError> {
        let r = self.post(set, body).await?;
        match (r.status, r.entity_id()) {
            (204, Some(id)) => Ok(id),
            _ => Err(CreateError::Refused {
                status: r.status,
                body: r.text,
            }),
        }
    }
}

/// Errors of [`WebApi::create`].
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Api(#[from] WebApiError),
    #[error("create refused with {status}: {body}")]
    Refused { status: u16, body: String },
}
