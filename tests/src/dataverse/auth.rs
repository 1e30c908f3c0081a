//! Microsoft Entra ID client credentials, as far as Dataverse needs them: the token endpoint
//! (`POST /{tenant}/oauth2/v2.0/token`) with Entra's error shapes, and Bearer token checks on
//! every Web API call (the token's client decides the calling systemuser).

use super::Shared;
use super::error::ApiError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// An issued access token.
#[derive(Debug, Clone)]
pub struct Token {
    pub user: Uuid,
    pub expires: Instant,
}

fn entra_error(status: StatusCode, error: &str, code: u32, description: String) -> Response {
    let trace = Uuid::new_v4();
    let correlation = Uuid::new_v4();
    let now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ");
    (
        status,
        Json(json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {now}"),
            "error_codes": [code],
            "timestamp": now.to_string(),
            "trace_id": trace.to_string(),
            "correlation_id": correlation.to_string(),
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        })),
    )
        .into_response()
}

/// `POST /{tenant}/oauth2/v2.0/token` with a form body.
pub async fn token(
    State(sim): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let cfg = &sim.config;
    if tenant != cfg.tenant_id {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        );
    }
    match get("grant_type") {
        Some("client_credentials") => {}
        Some(other) => {
            return entra_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70003,
                format!("The app requested an unsupported grant type '{other}'."),
            );
        }
        None => {
            return entra_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.".into(),
            );
        }
    }
    let Some(client_id) = get("client_id") else {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.".into(),
        );
    };
    let Some(client) = cfg.clients.iter().find(|c| c.client_id == client_id) else {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant."
            ),
        );
    };
    let Some(secret) = get("client_secret") else {
        return entra_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000216,
            "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.".into(),
        );
    };
    if !constant_time_eq(secret.as_bytes(), client.client_secret.as_bytes()) {
        return entra_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        );
    }
    let Some(scope) = get("scope") else {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.".into(),
        );
    };
    // The org's URL as configured, and as this client reaches it (through a TLS front too).
    let resources = [
        sim.base_url.clone(),
        format!("https://{}", cfg.org_domain),
        super::api::origin(&sim, &headers),
    ];
    let resource = scope
        .strip_suffix("/.default")
        .map(|r| r.trim_end_matches('/'));
    match resource {
        Some(r) if resources.iter().any(|x| x == r) => {}
        Some(r) => {
            return entra_error(
                StatusCode::BAD_REQUEST,
                "invalid_resource",
                500011,
                format!(
                    "The resource principal named {r} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant."
                ),
            );
        }
        None => {
            return entra_error(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                1002012,
                format!(
                    "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                ),
            );
        }
    }
    let Some(user) = super::store::parse_guid(&client.user_id) else {
        return entra_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            50000,
            format!("The sandbox client '{}' has no valid user id.", client.name),
        );
    };
    let ttl = cfg.token_ttl_secs;
    let access_token = jwt(&sim, client_id, user, ttl);
    sim.tokens.lock().unwrap_or_else(|p| p.into_inner()).insert(
        access_token.clone(),
        Token {
            user,
            expires: Instant::now() + Duration::from_secs(ttl),
        },
    );
    sim.count_token();
    (
        StatusCode::OK,
        Json(json!({
            "token_type": "Bearer",
            "expires_in": ttl,
            "ext_expires_in": ttl,
            "access_token": access_token,
        })),
    )
        .into_response()
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`: the OpenID Connect discovery
/// document of the tenant, which MSAL (under azure-identity's `ClientSecretCredential`) reads
/// before it asks for a token
/// (<https://learn.microsoft.com/entra/identity-platform/v2-protocols-oidc#find-your-apps-openid-configuration-document-uri>).
/// The endpoints point at this simulator as the client reaches it; only the token endpoint
/// is served (client credentials), the others answer 404.
pub async fn openid_configuration(
    State(sim): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    if tenant != sim.config.tenant_id {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_tenant",
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        );
    }
    let base = format!("{}/{tenant}", super::api::origin(&sim, &headers));
    (
        StatusCode::OK,
        Json(json!({
            "token_endpoint": format!("{base}/oauth2/v2.0/token"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": format!("{base}/discovery/v2.0/keys"),
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": format!("https://login.microsoftonline.com/{tenant}/v2.0"),
            "request_uri_parameter_supported": false,
            "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
            "device_authorization_endpoint": format!("{base}/oauth2/v2.0/devicecode"),
            "end_session_endpoint": format!("{base}/oauth2/v2.0/logout"),
            "http_logout_supported": true,
            "frontchannel_logout_supported": true,
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
        })),
    )
        .into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A JWT-shaped token (not signed; the sandbox checks it by lookup).
fn jwt(sim: &Shared, client_id: &str, user: Uuid, ttl: u64) -> String {
    let now = chrono::Utc::now().timestamp();
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": "sandbox"});
    let claims = json!({
        "aud": sim.base_url,
        "iss": format!("https://sts.windows.net/{}/", sim.config.tenant_id),
        "iat": now,
        "nbf": now,
        "exp": now + ttl as i64,
        "appid": client_id,
        "oid": super::webhooks::aad_object_id(user).to_string(),
        "tid": sim.config.tenant_id,
        "jti": Uuid::new_v4().to_string(),
    });
    format!(
        "{}.{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes()),
        base64url(Uuid::new_v4().as_bytes())
    )
}

fn base64url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len() * 4 / 3 + 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The systemuser behind the request's Bearer token.
pub fn authenticate(sim: &Shared, headers: &HeaderMap) -> Result<Uuid, ApiError> {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(ApiError::unauthorized(
            "The request has no Authorization header with a Bearer token.",
        ));
    };
    let Some(token) = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
    else {
        return Err(ApiError::unauthorized(
            "The Authorization header is not a Bearer token.",
        ));
    };
    let tokens = sim.tokens.lock().unwrap_or_else(|p| p.into_inner());
    match tokens.get(token.trim()) {
        None => Err(ApiError::unauthorized(
            "The Bearer token is not valid for this organization.",
        )),
        Some(t) if Instant::now() >= t.expires => {
            Err(ApiError::unauthorized("The Bearer token has expired."))
        }
        Some(t) => Ok(t.user),
    }
}

/// Makes every issued token expire now.
pub fn expire_all(sim: &Shared) {
    let now = Instant::now();
    for t in sim
        .tokens
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values_mut()
    {
        t.expires = now;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_known_values() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }
}
