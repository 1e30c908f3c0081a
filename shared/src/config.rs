//! Deployment configuration, read once at cold start from the environment (the SAM template
//! sets the variables one for one). This is the only module that reads the environment; each
//! function takes the sections it needs, so a function is never asked for a variable it does
//! not use. Secrets are not here, only the names of the secrets that hold them (one secret per
//! consumer, see `docs/security.md`).

use crate::domain::routing::QueueFamily;
use std::collections::BTreeMap;

/// A missing or unusable environment variable, named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is not valid: {problem}")]
    Invalid { name: &'static str, problem: String },
}

/// The process environment as captured at start (tests build one from pairs).
#[derive(Debug, Clone, Default)]
pub struct Env(BTreeMap<String, String>);

impl Env {
    /// Reads the process environment, once.
    pub fn capture() -> Env {
        Env(std::env::vars().collect())
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Env {
        Env(pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// A variable's value, trimmed; unset and blank are the same.
    pub fn get(&self, name: &str) -> Option<String> {
        self.0
            .get(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.get(name).ok_or(ConfigError::Missing(name))
    }

    fn url(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        match self.get(name) {
            Some(text) if text.starts_with("https://") || text.starts_with("http://") => {
                Ok(Some(text))
            }
            Some(text) => Err(ConfigError::Invalid {
                name,
                problem: format!("{text:?} is not an http(s) URL"),
            }),
            None => Ok(None),
        }
    }

    fn required_url(&self, name: &'static str) -> Result<String, ConfigError> {
        self.url(name)?.ok_or(ConfigError::Missing(name))
    }
}

/// Where the CRM is and how the connector signs in (Microsoft Entra ID client credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataverseSettings {
    /// `DATAVERSE_URL`: the environment, e.g. `https://contoso.crm4.dynamics.com`.
    pub url: String,
    /// `DATAVERSE_API_URL` (default `{DATAVERSE_URL}/api/data/v9.2/`).
    pub api_url: String,
    /// `DATAVERSE_TOKEN_URL` (default from `DATAVERSE_TENANT_ID`).
    pub token_url: String,
    /// `DATAVERSE_SCOPE` (default `{DATAVERSE_URL}/.default`).
    pub scope: String,
    /// `DATAVERSE_CLIENT_ID`: the app registration of the connector's application user.
    pub client_id: String,
    /// `DATAVERSE_CLIENT_SECRET_ID`: the secret holding that app registration's client secret.
    pub client_secret_id: String,
    /// `DATAVERSE_CONCURRENT_REQUESTS` (1–52, default 1): requests one invocation has under way
    /// at once. Dataverse allows 52 per user across every invocation of the deployment.
    pub concurrent_requests: usize,
}

impl DataverseSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let url = env
            .required_url("DATAVERSE_URL")?
            .trim_end_matches('/')
            .to_string();
        let token_url = match env.url("DATAVERSE_TOKEN_URL")? {
            Some(v) => v,
            None => {
                let tenant = env.required("DATAVERSE_TENANT_ID")?;
                format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token")
            }
        };
        Ok(DataverseSettings {
            api_url: env
                .url("DATAVERSE_API_URL")?
                .unwrap_or_else(|| format!("{url}/api/data/v9.2/")),
            token_url,
            scope: env
                .get("DATAVERSE_SCOPE")
                .unwrap_or_else(|| format!("{url}/.default")),
            client_id: env.required("DATAVERSE_CLIENT_ID")?,
            client_secret_id: env.required("DATAVERSE_CLIENT_SECRET_ID")?,
            concurrent_requests: match env.get("DATAVERSE_CONCURRENT_REQUESTS") {
                None => 1,
                Some(text) => match text.trim().parse::<usize>() {
                    Ok(n) if (1..=52).contains(&n) => n,
                    _ => {
                        return Err(ConfigError::Invalid {
                            name: "DATAVERSE_CONCURRENT_REQUESTS",
                            problem: format!("{text:?} is not a whole number from 1 to 52"),
                        });
                    }
                },
            },
            url,
        })
    }
}

/// The CRM organisation's name as receivers carry it (`source`): "Dynamics 365 (<host>)".
pub fn organisation_label(env: &Env) -> String {
    match env.get("DATAVERSE_URL") {
        Some(url) => {
            let host = url
                .trim_end_matches('/')
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .to_string();
            format!("Dynamics 365 ({host})")
        }
        None => "Dynamics 365".to_string(),
    }
}

/// Upserts a full reconcile keeps under way at once by default: enough to hide a real API's
/// latency (a batch of 250 takes 0.3–1.5 s), few enough to stay far from CleverReach's limits.
pub const DEFAULT_WRITES_IN_FLIGHT: usize = 4;

/// How to reach CleverReach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleverReachSettings {
    /// `CLEVERREACH_API_URL` (default `https://rest.cleverreach.com/`); must agree with the CRM
    /// setting `cleverreach:connectiondata:apiurl`.
    pub api_url: String,
    /// `CLEVERREACH_CLIENT_ID`: the OAuth app.
    pub client_id: String,
    /// `CLEVERREACH_CLIENT_SECRET_ID`: the secret holding the OAuth app's client secret.
    pub client_secret_id: String,
    /// `CLEVERREACH_TOKEN_SECRET_ID`: the secret holding the access and refresh tokens.
    pub token_secret_id: String,
    /// Names the CRM organisation on every receiver.
    pub source: String,
    /// `CLEVERREACH_WRITES_IN_FLIGHT` (1–16, default 4): upserts a full reconcile keeps under
    /// way at once.
    pub writes_in_flight: usize,
}

impl CleverReachSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(CleverReachSettings {
            api_url: env
                .url("CLEVERREACH_API_URL")?
                .unwrap_or_else(|| crate::domain::settings::DEFAULT_API_URL.to_string()),
            client_id: env.required("CLEVERREACH_CLIENT_ID")?,
            client_secret_id: env.required("CLEVERREACH_CLIENT_SECRET_ID")?,
            token_secret_id: env.required("CLEVERREACH_TOKEN_SECRET_ID")?,
            source: organisation_label(env),
            writes_in_flight: match env.get("CLEVERREACH_WRITES_IN_FLIGHT") {
                None => DEFAULT_WRITES_IN_FLIGHT,
                Some(text) => match text.trim().parse::<usize>() {
                    Ok(n) if (1..=16).contains(&n) => n,
                    _ => {
                        return Err(ConfigError::Invalid {
                            name: "CLEVERREACH_WRITES_IN_FLIGHT",
                            problem: format!("{text:?} is not a whole number from 1 to 16"),
                        });
                    }
                },
            },
        })
    }
}

/// The webhook intake's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeConfig {
    /// `WEBHOOK_KEY_SECRET_ID`: the secret holding the webhook key (the whole secret is the key).
    pub webhook_key_secret_id: String,
    /// `DATAVERSE_ORGANIZATION`: the expected `x-ms-dynamics-organization` (optional).
    pub expected_organization: Option<String>,
    /// `CONNECTOR_USER_ID`: the connector's application user (its own writes are not queued).
    pub connector_user_id: Option<String>,
}

impl IntakeConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(IntakeConfig {
            webhook_key_secret_id: env.required("WEBHOOK_KEY_SECRET_ID")?,
            expected_organization: env.get("DATAVERSE_ORGANIZATION"),
            connector_user_id: env.get("CONNECTOR_USER_ID").map(|v| v.to_ascii_lowercase()),
        })
    }
}

/// The connect page's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectConfig {
    /// `CONNECT_ADMIN_SECRET_ID`: the secret holding the administrator key.
    pub admin_secret_id: String,
    /// `CONNECT_SESSION_SECRET_ID`: the secret recording ended sessions and used OAuth states,
    /// so a sign-out holds across instances.
    pub session_secret_id: String,
    /// `CONNECT_PUBLIC_URL`: the page's address when the function URL sits behind another
    /// name; otherwise the request's host is used.
    pub public_url: Option<String>,
}

impl ConnectConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(ConnectConfig {
            admin_secret_id: env.required("CONNECT_ADMIN_SECRET_ID")?,
            session_secret_id: env.required("CONNECT_SESSION_SECRET_ID")?,
            public_url: env.url("CONNECT_PUBLIC_URL")?,
        })
    }
}

/// CleverReach's event hooks (optional: without them the scheduled back-flow alone brings
/// CleverReach's changes back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HooksConfig {
    /// `CLEVERREACH_HOOKS_SECRET_ID`: the secret holding the verify token and the call token of
    /// every registration.
    pub secret_id: String,
    /// `CLEVERREACH_EVENTS_URL`: the public HTTPS URL of the `cleverreach-events` function, as
    /// registered with CleverReach. Not needed by that function itself.
    pub events_url: Option<String>,
}

impl HooksConfig {
    /// `None` when `CLEVERREACH_HOOKS_SECRET_ID` is not set.
    pub fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let Some(secret_id) = env.get("CLEVERREACH_HOOKS_SECRET_ID") else {
            return Ok(None);
        };
        let events_url = env.url("CLEVERREACH_EVENTS_URL")?;
        if let Some(url) = &events_url
            && !url.starts_with("https://")
            && !url.starts_with("http://127.0.0.1")
            && !url.starts_with("http://localhost")
        {
            return Err(ConfigError::Invalid {
                name: "CLEVERREACH_EVENTS_URL",
                problem: format!("{url:?} must be an https URL (CleverReach calls only those)"),
            });
        }
        Ok(Some(HooksConfig {
            secret_id,
            events_url,
        }))
    }
}

/// The queue URL of each family this function sends to (`<FAMILY>_QUEUE_URL`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueUrls(BTreeMap<QueueFamily, String>);

impl QueueUrls {
    pub fn new() -> Self {
        QueueUrls::default()
    }

    pub fn with(mut self, family: QueueFamily, url: impl Into<String>) -> Self {
        self.0.insert(family, url.into());
        self
    }

    pub fn get(&self, family: QueueFamily) -> Option<&str> {
        self.0.get(&family).map(String::as_str)
    }

    pub fn families(&self) -> impl Iterator<Item = QueueFamily> + '_ {
        self.0.keys().copied()
    }

    /// Every family whose `<FAMILY>_QUEUE_URL` is set.
    pub fn from_env(env: &Env) -> Self {
        let mut urls = QueueUrls::new();
        for family in QueueFamily::ALL
            .into_iter()
            .chain(QueueFamily::RETROACTIVE)
            .chain([QueueFamily::CleverReachEvents])
        {
            if let Some(url) = env.get(&family.queue_url_variable()) {
                urls = urls.with(family, url);
            }
        }
        urls
    }

    /// Only these families; a missing one is an error naming its variable.
    pub fn require(&self, families: &[QueueFamily]) -> Result<QueueUrls, ConfigError> {
        let mut urls = QueueUrls::new();
        for family in families {
            let url = self.get(*family).ok_or_else(|| ConfigError::Invalid {
                name: "<FAMILY>_QUEUE_URL",
                problem: format!("{} is not set", family.queue_url_variable()),
            })?;
            urls = urls.with(*family, url);
        }
        Ok(urls)
    }

    /// Only those of these families that are set.
    pub fn only(&self, families: &[QueueFamily]) -> QueueUrls {
        QueueUrls(
            self.0
                .iter()
                .filter(|(f, _)| families.contains(f))
                .map(|(f, u)| (*f, u.clone()))
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `FAILURE_TABLE`: the DynamoDB table failed queue messages are written down in (optional;
/// without it nothing is recorded, as locally).
pub fn failure_table(env: &Env) -> Option<String> {
    env.get("FAILURE_TABLE")
}

/// What `crc-admin dlq` needs to find a deployment's queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationsConfig {
    /// `CRC_STACK_NAME`: the stack; its queues are named `<stack>-<family>.fifo` and
    /// `<stack>-<family>-dlq.fifo` (plus `<stack>-schedule-dlq`, `<stack>-failed-runs`).
    pub stack_name: String,
    /// `FAILURE_TABLE` (optional).
    pub failure_table: Option<String>,
}

impl OperationsConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let stack_name = env.required("CRC_STACK_NAME")?;
        if stack_name.contains(char::is_whitespace) || stack_name.contains('/') {
            return Err(ConfigError::Invalid {
                name: "CRC_STACK_NAME",
                problem: format!("{stack_name:?} is not a stack name"),
            });
        }
        Ok(OperationsConfig {
            stack_name,
            failure_table: failure_table(env),
        })
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
    pub fn from_env(env: &Env) -> Result<BackflowLimits, ConfigError> {
        fn number<T: std::str::FromStr>(
            env: &Env,
            name: &'static str,
            min: u64,
        ) -> Result<Option<T>, ConfigError> {
            let Some(text) = env.get(name) else {
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
        let page_size: Option<usize> = number(env, "BACKFLOW_PAGE_SIZE", 1)?;
        if let Some(size) = page_size.filter(|s| *s > 5000) {
            return Err(ConfigError::Invalid {
                name: "BACKFLOW_PAGE_SIZE",
                problem: format!("{size} is above CleverReach's page limit of 5000"),
            });
        }
        Ok(BackflowLimits {
            budget_secs: number(env, "BACKFLOW_BUDGET_SECS", 0)?,
            page_size,
            max_events: number(env, "BACKFLOW_MAX_EVENTS", 1)?,
            overlap_secs: number(env, "BACKFLOW_OVERLAP_SECS", 0)?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hooks_are_optional_and_their_url_must_be_https() {
        assert_eq!(HooksConfig::from_env(&Env::default()).unwrap(), None);
        let with = |url: &str| {
            HooksConfig::from_env(&Env::from_pairs([
                ("CLEVERREACH_HOOKS_SECRET_ID", "crc/hooks"),
                ("CLEVERREACH_EVENTS_URL", url),
            ]))
        };
        let ok = with("https://abc.lambda-url.eu-central-1.on.aws/")
            .unwrap()
            .unwrap();
        assert_eq!(ok.secret_id, "crc/hooks");
        let err = with("http://events.example.com/").unwrap_err().to_string();
        assert!(
            err.contains("CLEVERREACH_EVENTS_URL") && err.contains("https"),
            "{err}"
        );
    }

    const DATAVERSE: &[(&str, &str)] = &[
        ("DATAVERSE_URL", "https://contoso.crm4.dynamics.com/"),
        ("DATAVERSE_TENANT_ID", "tenant-1"),
        ("DATAVERSE_CLIENT_ID", "client-1"),
        ("DATAVERSE_CLIENT_SECRET_ID", "crc/dataverse-client-secret"),
    ];

    fn env_without(pairs: &[(&'static str, &'static str)], missing: &str) -> Env {
        Env::from_pairs(pairs.iter().copied().filter(|(k, _)| *k != missing))
    }

    #[test]
    fn a_minimal_environment_fills_in_the_defaults() {
        let dataverse = DataverseSettings::from_env(&Env::from_pairs(DATAVERSE.to_vec())).unwrap();
        assert_eq!(
            dataverse.api_url,
            "https://contoso.crm4.dynamics.com/api/data/v9.2/"
        );
        assert_eq!(
            dataverse.token_url,
            "https://login.microsoftonline.com/tenant-1/oauth2/v2.0/token"
        );
        assert_eq!(
            dataverse.scope,
            "https://contoso.crm4.dynamics.com/.default"
        );
        let cleverreach = CleverReachSettings::from_env(&Env::from_pairs([
            ("DATAVERSE_URL", "https://contoso.crm4.dynamics.com/"),
            ("CLEVERREACH_CLIENT_ID", "cr"),
            (
                "CLEVERREACH_CLIENT_SECRET_ID",
                "crc/cleverreach-client-secret",
            ),
            ("CLEVERREACH_TOKEN_SECRET_ID", "crc/cleverreach-tokens"),
        ]))
        .unwrap();
        assert_eq!(cleverreach.api_url, "https://rest.cleverreach.com/");
        assert_eq!(
            cleverreach.source,
            "Dynamics 365 (contoso.crm4.dynamics.com)"
        );
    }

    #[test]
    fn a_missing_variable_is_named() {
        for missing in [
            "DATAVERSE_URL",
            "DATAVERSE_CLIENT_ID",
            "DATAVERSE_CLIENT_SECRET_ID",
            "DATAVERSE_TENANT_ID",
        ] {
            let err = DataverseSettings::from_env(&env_without(DATAVERSE, missing)).unwrap_err();
            assert_eq!(err, ConfigError::Missing(missing));
            assert!(err.to_string().contains(missing));
        }
        let err = IntakeConfig::from_env(&Env::default()).unwrap_err();
        assert!(err.to_string().contains("WEBHOOK_KEY_SECRET_ID"), "{err}");
    }

    #[test]
    fn a_url_that_is_not_http_is_refused_by_name() {
        let mut pairs = DATAVERSE.to_vec();
        pairs[0] = ("DATAVERSE_URL", "contoso.crm4.dynamics.com");
        let err = DataverseSettings::from_env(&Env::from_pairs(pairs)).unwrap_err();
        assert!(err.to_string().contains("DATAVERSE_URL"), "{err}");
    }

    #[test]
    fn queue_urls_are_read_per_family_and_a_required_one_is_named_when_missing() {
        let env = Env::from_pairs([
            (
                "CONTACT_QUEUE_URL",
                "https://sqs.eu-central-1.amazonaws.com/1/contact.fifo",
            ),
            ("SUBLIST_QUEUE_URL", "https://sqs/1/sublist.fifo"),
        ]);
        let urls = QueueUrls::from_env(&env);
        assert_eq!(urls.families().count(), 2);
        assert!(
            urls.get(QueueFamily::Contact)
                .unwrap()
                .ends_with("contact.fifo")
        );
        let err = urls
            .require(&[QueueFamily::Sublist, QueueFamily::RetroactiveSync])
            .unwrap_err();
        assert!(
            err.to_string().contains("RETROACTIVE_SYNC_QUEUE_URL"),
            "{err}"
        );
        assert_eq!(urls.only(&[QueueFamily::Lead]), QueueUrls::new());
    }

    #[test]
    fn backflow_limits_are_optional_and_a_bad_one_is_named() {
        assert_eq!(
            BackflowLimits::from_env(&Env::default()),
            Ok(BackflowLimits::default())
        );
        let limits = BackflowLimits::from_env(&Env::from_pairs([("BACKFLOW_BUDGET_SECS", "120")]));
        assert_eq!(limits.map(|l| l.budget_secs), Ok(Some(120)));
        for (name, value) in [
            ("BACKFLOW_PAGE_SIZE", "0"),
            ("BACKFLOW_PAGE_SIZE", "6000"),
            ("BACKFLOW_MAX_EVENTS", "many"),
        ] {
            let err = BackflowLimits::from_env(&Env::from_pairs([(name, value)]))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(name), "{name}={value}: {err}");
        }
    }
}
