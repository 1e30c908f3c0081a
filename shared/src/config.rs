//! Deployment configuration, read once at cold start from environment variables (the SAM
//! template sets them one for one). Secrets are not here: only the names of the secrets.

use std::collections::BTreeMap;

/// A missing or unusable environment variable, named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is not valid: {problem}")]
    Invalid { name: &'static str, problem: String },
}

/// Everything a function needs to build its adapters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `DATAVERSE_URL`: the environment, e.g. `https://contoso.crm4.dynamics.com`.
    pub dataverse_url: String,
    /// `DATAVERSE_API_URL` (default `{DATAVERSE_URL}/api/data/v9.2/`).
    pub dataverse_api_url: String,
    /// `DATAVERSE_TOKEN_URL` (default from `DATAVERSE_TENANT_ID`).
    pub dataverse_token_url: String,
    /// `DATAVERSE_SCOPE` (default `{DATAVERSE_URL}/.default`).
    pub dataverse_scope: String,
    /// `DATAVERSE_CLIENT_ID`: the app registration of the connector's application user.
    pub dataverse_client_id: String,
    /// `CONNECTOR_USER_ID`: that application user's systemuserid (its writes are not queued).
    pub connector_user_id: Option<String>,
    /// `DATAVERSE_ORGANIZATION`: the expected `x-ms-dynamics-organization` (optional).
    pub expected_organization: Option<String>,
    /// `CONNECTOR_SECRET_ID`: Secrets Manager secret with `dataverse_client_secret`,
    /// `cleverreach_client_secret` and `webhook_key`.
    pub connector_secret_id: String,
    /// `CLEVERREACH_TOKEN_SECRET_ID`: Secrets Manager secret holding the CleverReach tokens.
    pub cleverreach_token_secret_id: String,
    /// `CLEVERREACH_CLIENT_ID`.
    pub cleverreach_client_id: String,
    /// `CLEVERREACH_API_URL` (default `https://rest.cleverreach.com/`); must agree with the
    /// CRM setting `cleverreach:connectiondata:apiurl`.
    pub cleverreach_api_url: String,
    /// `<FAMILY>_QUEUE_URL` for each queue the function sends to.
    pub queue_urls: BTreeMap<String, String>,
}

/// Field names inside the connector secret.
pub mod secret_fields {
    pub const DATAVERSE_CLIENT_SECRET: &str = "dataverse_client_secret";
    pub const CLEVERREACH_CLIENT_SECRET: &str = "cleverreach_client_secret";
    pub const WEBHOOK_KEY: &str = "webhook_key";
    /// The key administrators sign in to the connect page with.
    pub const CONNECT_ADMIN_KEY: &str = "connect_admin_key";
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads variables through `get` (tests pass a map).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let value = |name: &'static str| {
            get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let required = |name: &'static str| value(name).ok_or(ConfigError::Missing(name));
        let url = |name: &'static str, text: String| -> Result<String, ConfigError> {
            if text.starts_with("https://") || text.starts_with("http://") {
                Ok(text)
            } else {
                Err(ConfigError::Invalid {
                    name,
                    problem: format!("{text:?} is not an http(s) URL"),
                })
            }
        };
        let dataverse_url = url("DATAVERSE_URL", required("DATAVERSE_URL")?)?
            .trim_end_matches('/')
            .to_string();
        let dataverse_api_url = match value("DATAVERSE_API_URL") {
            Some(v) => url("DATAVERSE_API_URL", v)?,
            None => format!("{dataverse_url}/api/data/v9.2/"),
        };
        let dataverse_token_url = match value("DATAVERSE_TOKEN_URL") {
            Some(v) => url("DATAVERSE_TOKEN_URL", v)?,
            None => {
                let tenant = value("DATAVERSE_TENANT_ID")
                    .ok_or(ConfigError::Missing("DATAVERSE_TENANT_ID"))?;
                format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token")
            }
        };
        let queue_urls = crate::domain::routing::QueueFamily::ALL
            .iter()
            .filter_map(|family| {
                let name = family.queue_url_variable();
                get(&name)
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .map(|v| (family.name().to_string(), v))
            })
            .collect();
        Ok(Config {
            dataverse_api_url,
            dataverse_token_url,
            dataverse_scope: value("DATAVERSE_SCOPE")
                .unwrap_or_else(|| format!("{dataverse_url}/.default")),
            dataverse_client_id: required("DATAVERSE_CLIENT_ID")?,
            connector_user_id: value("CONNECTOR_USER_ID").map(|v| v.to_ascii_lowercase()),
            expected_organization: value("DATAVERSE_ORGANIZATION"),
            connector_secret_id: required("CONNECTOR_SECRET_ID")?,
            cleverreach_token_secret_id: required("CLEVERREACH_TOKEN_SECRET_ID")?,
            cleverreach_client_id: required("CLEVERREACH_CLIENT_ID")?,
            cleverreach_api_url: match value("CLEVERREACH_API_URL") {
                Some(v) => url("CLEVERREACH_API_URL", v)?,
                None => crate::domain::settings::DEFAULT_API_URL.to_string(),
            },
            dataverse_url,
            queue_urls,
        })
    }
}

/// `<FAMILY>_QUEUE_URL` of one family from the process environment (the retroactive-sync
/// queues, which [`Config::queue_urls`] leaves out), when set.
pub fn queue_url(family: crate::domain::routing::QueueFamily) -> Option<String> {
    std::env::var(family.queue_url_variable())
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const MINIMAL: &[(&str, &str)] = &[
        ("DATAVERSE_URL", "https://contoso.crm4.dynamics.com/"),
        ("DATAVERSE_TENANT_ID", "tenant-1"),
        ("DATAVERSE_CLIENT_ID", "client-1"),
        ("CONNECTOR_SECRET_ID", "crc/connector"),
        ("CLEVERREACH_TOKEN_SECRET_ID", "crc/cleverreach-tokens"),
        ("CLEVERREACH_CLIENT_ID", "cr-client"),
    ];

    #[test]
    fn a_minimal_environment_fills_in_the_defaults() {
        let config = Config::from_vars(vars(MINIMAL)).unwrap();
        assert_eq!(
            config.dataverse_api_url,
            "https://contoso.crm4.dynamics.com/api/data/v9.2/"
        );
        assert_eq!(
            config.dataverse_token_url,
            "https://login.microsoftonline.com/tenant-1/oauth2/v2.0/token"
        );
        assert_eq!(
            config.dataverse_scope,
            "https://contoso.crm4.dynamics.com/.default"
        );
        assert_eq!(config.cleverreach_api_url, "https://rest.cleverreach.com/");
    }

    #[test]
    fn a_missing_variable_is_named() {
        for missing in [
            "DATAVERSE_URL",
            "DATAVERSE_CLIENT_ID",
            "CONNECTOR_SECRET_ID",
            "CLEVERREACH_CLIENT_ID",
        ] {
            let pairs: Vec<(&str, &str)> = MINIMAL
                .iter()
                .copied()
                .filter(|(k, _)| *k != missing)
                .collect();
            let err = Config::from_vars(vars(&pairs)).unwrap_err();
            assert_eq!(err, ConfigError::Missing(missing));
            assert!(err.to_string().contains(missing));
        }
    }

    #[test]
    fn a_url_that_is_not_http_is_refused_by_name() {
        let mut pairs = MINIMAL.to_vec();
        pairs[0] = ("DATAVERSE_URL", "contoso.crm4.dynamics.com");
        let err = Config::from_vars(vars(&pairs)).unwrap_err();
        assert!(err.to_string().contains("DATAVERSE_URL"), "{err}");
    }

    #[test]
    fn queue_urls_are_read_per_family() {
        let mut pairs = MINIMAL.to_vec();
        pairs.push((
            "CONTACT_QUEUE_URL",
            "https://sqs.eu-central-1.amazonaws.com/1/contact.fifo",
        ));
        let config = Config::from_vars(vars(&pairs)).unwrap();
        assert_eq!(config.queue_urls.len(), 1);
        assert!(config.queue_urls["contact"].ends_with("contact.fifo"));
    }
}

/// Limits of the scheduled back-flow jobs (`receiver-state-sync`, `lead-sync`), each optional:
/// `BACKFLOW_BUDGET_SECS` (time a run may take before it stops and saves its cursor; keep it
/// well under the function timeout), `BACKFLOW_PAGE_SIZE` (receivers per CleverReach page),
/// `BACKFLOW_MAX_EVENTS` (events per run), `BACKFLOW_OVERLAP_SECS` (how far a new pass reaches
/// back).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackflowLimits {
    pub budget_secs: Option<u64>,
    pub page_size: Option<usize>,
    pub max_events: Option<usize>,
    pub overlap_secs: Option<u64>,
}

impl BackflowLimits {
    pub fn from_env() -> Result<BackflowLimits, ConfigError> {
        BackflowLimits::from_vars(|name| std::env::var(name).ok())
    }

    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<BackflowLimits, ConfigError> {
        fn number<T: std::str::FromStr>(
            get: &impl Fn(&str) -> Option<String>,
            name: &'static str,
            min: u64,
        ) -> Result<Option<T>, ConfigError> {
            let Some(text) = get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
            else {
                return Ok(None);
            };
            match text.parse::<u64>() {
                Ok(n) if n >= min => {
                    text.parse::<T>()
                        .map(Some)
                        .map_err(|_| ConfigError::Invalid {
                            name,
                            problem: format!("{text:?} is too large"),
                        })
                }
                _ => Err(ConfigError::Invalid {
                    name,
                    problem: format!("{text:?} is not a whole number of at least {min}"),
                }),
            }
        }
        let page_size: Option<usize> = number(&get, "BACKFLOW_PAGE_SIZE", 1)?;
        if let Some(size) = page_size.filter(|s| *s > 5000) {
            return Err(ConfigError::Invalid {
                name: "BACKFLOW_PAGE_SIZE",
                problem: format!("{size} is above CleverReach's page limit of 5000"),
            });
        }
        Ok(BackflowLimits {
            budget_secs: number(&get, "BACKFLOW_BUDGET_SECS", 0)?,
            page_size,
            max_events: number(&get, "BACKFLOW_MAX_EVENTS", 1)?,
            overlap_secs: number(&get, "BACKFLOW_OVERLAP_SECS", 0)?,
        })
    }
}

#[cfg(test)]
mod backflow_limit_tests {
    use super::*;

    #[test]
    fn backflow_limits_are_optional_and_a_bad_one_is_named() {
        assert_eq!(
            BackflowLimits::from_vars(|_| None),
            Ok(BackflowLimits::default())
        );
        let limits =
            BackflowLimits::from_vars(|n| (n == "BACKFLOW_BUDGET_SECS").then(|| "120".to_string()));
        assert_eq!(limits.map(|l| l.budget_secs), Ok(Some(120)));
        for (name, value) in [
            ("BACKFLOW_PAGE_SIZE", "0"),
            ("BACKFLOW_PAGE_SIZE", "6000"),
            ("BACKFLOW_MAX_EVENTS", "many"),
        ] {
            let err = BackflowLimits::from_vars(|n| (n == name).then(|| value.to_string()))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(name), "{name}={value}: {err}");
        }
    }
}
