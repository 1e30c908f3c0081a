//! The CRM installer, in four phases:
//! 1. the schema (`schema`): publisher, unmanaged solution `CleverReachConnector`, the
//!    connector's tables, columns, lookups and keys, column security, security roles;
//! 2. the newsletter checklist (`forms_phase`): its web resources, its place on the main form
//!    of contact, lead, marketing list, campaign and campaign activity, published;
//! 3. the webhook service endpoint and every step the connector needs (`shared::install`);
//! 4. the `crc_setting` rows with their defaults (README "Settings").
//!
//! It reads everything first and lists what exists and what it would create; an existing
//! component the connector cannot use (a column of another type…) stops it before it changes
//! anything. Idempotent: what exists is left as it is. `--dry-run` prints the plan only.
//!
//! Secrets (the Dataverse client secret, the webhook key) come from environment variables only,
//! never from flags, so that they stay out of shell history and process lists.

use shared::adapters::dataverse::client::{
    DataverseClient, DataverseConfig, DataverseError, Query, filter,
};
use shared::adapters::dataverse::schema;
use shared::domain::deletion::DeletionPriority;
use shared::domain::settings::{Settings, canonical_key, keys};
use shared::install::{ENDPOINT_NAME, install_webhooks, steps};
use shared::secret::Secret;
use std::collections::BTreeMap;
use std::io::Write;
use url::Url;

pub mod forms_phase;
pub mod formxml;
pub mod schema_phase;
pub use forms_phase::{FormsPlan, apply_forms, plan_forms};
pub use schema_phase::{Conflict, SchemaPlan, apply_schema, plan_schema};

pub const USAGE: &str = "\
crc-install: installs the CleverReach connector in a Dynamics 365 org: its schema (publisher
cleverreach, unmanaged solution CleverReachConnector, tables, columns, lookups, keys, security
roles CleverReach Connector, CleverReach List Sync and CleverReach Checklist User), the
newsletter checklist (web resources crc_/checklist/*, placed on the main forms of contact,
lead, marketing list, campaign and campaign activity), the webhook endpoint and steps, and
the settings rows. Reads first; stops before changing anything when an existing component
conflicts. Idempotent; what exists is left as it is.

Usage: crc-install [--dry-run] [options]

Options (each falls back to the environment variable in brackets):
  --dataverse-url URL        the environment, e.g. https://contoso.crm4.dynamics.com [DATAVERSE_URL]
  --tenant-id ID             Entra tenant of the app registration [DATAVERSE_TENANT_ID]
  --client-id ID             app registration that installs (needs System Administrator or
                             the rights to register steps) [DATAVERSE_CLIENT_ID]
  --intake-url URL           the webhook-intake function URL (stack output WebhookIntakeUrl) [INTAKE_URL]
  --cleverreach-api-url URL  value of the apiurl setting row [CLEVERREACH_API_URL]
                             (default https://rest.cleverreach.com/)
  --setting KEY=VALUE        value for a new settings row instead of the default (repeatable)
  --app-user ID              systemuserid of the connector's application user: gets the role
                             CleverReach Connector and the field security profile
                             CleverReach List Sync [CONNECTOR_USER_ID]
  --token-url URL            token endpoint [DATAVERSE_TOKEN_URL] (default: from the tenant)
  --api-url URL              Web API root [DATAVERSE_API_URL] (default: <dataverse-url>/api/data/v9.2/)
  --scope SCOPE              [DATAVERSE_SCOPE] (default: <dataverse-url>/.default)
  --client-secret-env NAME   variable holding the client secret (default DATAVERSE_CLIENT_SECRET)
  --webhook-key-env NAME     variable holding the webhook key (default WEBHOOK_KEY); the key is
                             the value of the stack's secret <stack>/webhook-key
  --dry-run                  print what would be created; change nothing
  --help                     this text";

/// Why the installer stopped.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Bad or missing arguments; an empty text means `--help` was asked for.
    #[error("{0}")]
    Usage(String),
    #[error("Dataverse: {0}")]
    Dataverse(#[from] DataverseError),
    /// Existing components the connector cannot use; nothing was changed.
    #[error("{}", conflicts_text(.0))]
    Conflicts(Vec<Conflict>),
    /// A step Dataverse refused for lack of a privilege.
    #[error(
        "{what}: Dataverse refused: {error}\nThe identity running crc-install lacks the privilege {privilege}: give it the System Administrator role (System Customizer covers tables and columns, not roles) and run crc-install again; what was created so far stays and is reused."
    )]
    Privilege {
        what: String,
        privilege: String,
        error: Box<DataverseError>,
    },
    /// Another step that failed.
    #[error("{what}: {error}")]
    Step {
        what: String,
        error: Box<DataverseError>,
    },
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

fn conflicts_text(conflicts: &[Conflict]) -> String {
    let mut text = format!(
        "{} existing component(s) conflict with the connector's schema; nothing was changed:",
        conflicts.len()
    );
    for c in conflicts {
        text.push_str("\n  ");
        text.push_str(&c.to_string());
    }
    text.push_str(
        "\nRemove or rename them (they belong to another customization), or install into another org.",
    );
    text
}

/// What the installer was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub dry_run: bool,
    pub api_url: Url,
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: Secret,
    pub scope: String,
    pub intake_url: String,
    /// Needed to register the endpoint; a dry run does without.
    pub webhook_key: Option<Secret>,
    /// The settings rows to create where missing, in order.
    pub settings: Vec<(String, String)>,
    /// The connector's application user (`systemuserid`), to be given its role and profile.
    pub app_user: Option<String>,
}

fn usage(text: impl Into<String>) -> InstallError {
    InstallError::Usage(text.into())
}

fn parse_url(what: &str, text: &str) -> Result<Url, InstallError> {
    let url = Url::parse(text).map_err(|e| usage(format!("{what} {text:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err(usage(format!("{what} {text:?} must be an http(s) URL")));
    }
    Ok(url)
}

impl Options {
    /// Reads the flags, falling back to the environment through `env`.
    pub fn parse(
        args: &[String],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Options, InstallError> {
        let mut flags: BTreeMap<&str, String> = BTreeMap::new();
        let mut overrides: Vec<(String, String)> = Vec::new();
        let mut dry_run = false;
        let mut iter = args.iter();
        const VALUED: [&str; 12] = [
            "--app-user",
            "--dataverse-url",
            "--tenant-id",
            "--client-id",
            "--intake-url",
            "--cleverreach-api-url",
            "--token-url",
            "--api-url",
            "--scope",
            "--client-secret-env",
            "--webhook-key-env",
            "--setting",
        ];
        while let Some(arg) = iter.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
                _ => (arg.as_str(), None),
            };
            match name {
                "--help" | "-h" => return Err(usage("")),
                "--dry-run" => dry_run = true,
                _ => {
                    let Some(flag) = VALUED.iter().find(|f| **f == name) else {
                        return Err(usage(format!("unknown argument {arg:?}")));
                    };
                    let value = match inline {
                        Some(v) => v,
                        None => iter
                            .next()
                            .cloned()
                            .ok_or_else(|| usage(format!("{name} needs a value")))?,
                    };
                    if *flag == "--setting" {
                        let (key, value) = value.split_once('=').ok_or_else(|| {
                            usage(format!("--setting {value:?} must be KEY=VALUE"))
                        })?;
                        overrides.push((key.trim().to_string(), value.to_string()));
                    } else {
                        flags.insert(flag, value);
                    }
                }
            }
        }
        let get = |flag: &str, var: &str| -> Option<String> {
            flags
                .get(flag)
                .cloned()
                .or_else(|| env(var))
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let required = |flag: &str, var: &str| {
            get(flag, var).ok_or_else(|| usage(format!("{flag} (or {var}) is required")))
        };
        let dataverse_url = required("--dataverse-url", "DATAVERSE_URL")?;
        let dataverse = parse_url("--dataverse-url", &dataverse_url)?;
        let base = dataverse.as_str().trim_end_matches('/').to_string();
        let api_url = match get("--api-url", "DATAVERSE_API_URL") {
            Some(v) => parse_url("--api-url", &v)?,
            None => parse_url("--api-url", &format!("{base}/api/data/v9.2/"))?,
        };
        let token_url = match get("--token-url", "DATAVERSE_TOKEN_URL") {
            Some(v) => parse_url("--token-url", &v)?,
            None => {
                let tenant = required("--tenant-id", "DATAVERSE_TENANT_ID")?;
                parse_url(
                    "--tenant-id",
                    &format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"),
                )?
            }
        };
        let secret_var = get("--client-secret-env", "").unwrap_or("DATAVERSE_CLIENT_SECRET".into());
        let client_secret = env(&secret_var)
            .filter(|v| !v.trim().is_empty())
            .map(Secret::new)
            .ok_or_else(|| {
                usage(format!(
                    "the client secret is read from ${secret_var}, which is not set"
                ))
            })?;
        let key_var = get("--webhook-key-env", "").unwrap_or("WEBHOOK_KEY".into());
        let webhook_key = env(&key_var)
            .filter(|v| !v.trim().is_empty())
            .map(Secret::new);
        if webhook_key.is_none() && !dry_run {
            return Err(usage(format!(
                "the webhook key is read from ${key_var}, which is not set (it is the value of \
                 the stack's secret <stack>/webhook-key)"
            )));
        }
        let intake_url = required("--intake-url", "INTAKE_URL")?;
        let intake = parse_url("--intake-url", &intake_url)?;
        if intake.query_pairs().any(|(k, _)| k == "code") {
            return Err(usage(
                "--intake-url must not carry ?code=: Dataverse adds the webhook key itself",
            ));
        }
        let cleverreach_api_url = get("--cleverreach-api-url", "CLEVERREACH_API_URL")
            .unwrap_or_else(|| shared::domain::settings::DEFAULT_API_URL.to_string());
        let mut settings = default_settings(&cleverreach_api_url);
        for (key, value) in overrides {
            match settings
                .iter_mut()
                .find(|(k, _)| canonical_key(k) == canonical_key(&key))
            {
                Some(row) => row.1 = value,
                None => {
                    return Err(usage(format!(
                        "--setting: {key:?} is not a connector setting"
                    )));
                }
            }
        }
        let app_user = get("--app-user", "CONNECTOR_USER_ID")
            .map(|id| {
                filter::guid(&id).map_err(|_| {
                    usage(format!(
                        "--app-user {id:?} is not a systemuserid (a GUID like 00000000-0000-0000-0000-000000000000)"
                    ))
                })
            })
            .transpose()?;
        // The rows must read back as valid settings: refuse a bad override before writing.
        Settings::from_rows(settings.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|e| usage(format!("--setting: {e}")))?;
        Ok(Options {
            dry_run,
            scope: get("--scope", "DATAVERSE_SCOPE").unwrap_or_else(|| format!("{base}/.default")),
            api_url,
            token_url,
            client_id: required("--client-id", "DATAVERSE_CLIENT_ID")?,
            client_secret,
            intake_url,
            webhook_key,
            settings,
            app_user,
        })
    }

    /// The Dataverse client the installer works with.
    pub fn client(&self) -> Result<DataverseClient, DataverseError> {
        DataverseClient::new(DataverseConfig::new(
            self.api_url.clone(),
            self.token_url.clone(),
            self.client_id.clone(),
            self.client_secret.clone(),
            self.scope.clone(),
        ))
    }
}

/// Every DESIGN §6 setting with its default value, as rows of `crc_setting` (rendered from
/// `Settings::default()`, so the rows read back as exactly the defaults).
pub fn default_settings(cleverreach_api_url: &str) -> Vec<(String, String)> {
    let d = Settings::default();
    let flag = |on: bool| on.to_string();
    let types: Vec<serde_json::Value> = d
        .newsletter_types
        .iter()
        .map(|t| serde_json::json!({ "id": t.id.0, "description": t.description, "position": t.position }))
        .collect();
    let entities: Vec<&str> = d
        .transfer_entities
        .iter()
        .map(|k| k.logical_name())
        .collect();
    let priority = match d.deletion.priority {
        DeletionPriority::DeleteDespiteProtection => 0,
        DeletionPriority::NeverDeleteProtected => 1,
        DeletionPriority::DeleteProtectedOnlyWhenRecordDeleted => 2,
    };
    [
        (keys::API_URL, cleverreach_api_url.to_string()),
        (keys::DISABLE_CONTACT, flag(d.bounce.disable_contact)),
        (keys::DISABLE_LEAD, flag(d.bounce.disable_lead)),
        (keys::DELETE_CAMPAIGN, flag(d.deletion.delete_campaign)),
        (
            keys::DELETE_DISABLE_SYNCHRONIZATION,
            flag(d.deletion.delete_disable_synchronization),
        ),
        (keys::DELETE_PROTECTION, flag(d.deletion.delete_protection)),
        (keys::PRIORITY, priority.to_string()),
        (keys::GROUP_PREFIX, d.group_prefix.clone()),
        (keys::TYP_JSON, serde_json::Value::Array(types).to_string()),
        (keys::ENTITY, entities.join(",")),
        (keys::SUBLIST_COUNT, d.sublist_count.to_string()),
        (
            keys::UPDATE_REQUEST_COUNT,
            d.update_request_count.to_string(),
        ),
        (keys::SCHEDULE_MINUTES, d.schedule_minutes.to_string()),
        (
            keys::MAX_REMOVAL_PERCENT,
            d.brake.max_removal_percent.to_string(),
        ),
        (keys::MAX_REMOVALS, d.brake.max_removals.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// One thing the installer registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanItem {
    /// `publisher`, `solution`, `table`, `column`, `lookup`, `key`, `security`, `publish`,
    /// `role`, `privilege`, `profile`, `permission`, `assign`, `resource` (web resource), `form`,
    /// `endpoint`, `step` or `setting`.
    pub kind: &'static str,
    pub name: String,
    /// Already in the CRM (left as it is).
    pub exists: bool,
    /// Not there as needed, but something of the name is: it is changed, not created (a web
    /// resource of an older version, a form the control is added to).
    pub update: bool,
    /// Something an administrator should know (e.g. the endpoint points elsewhere).
    pub note: Option<String>,
}

/// Everything the installer registers, and what is already there.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub items: Vec<PlanItem>,
    /// The schema phase (its items are in `items` too).
    pub schema: SchemaPlan,
    /// The checklist's web resources and forms (its items are in `items` too).
    pub forms: FormsPlan,
}

impl Plan {
    /// What is missing: created or (`update`) changed when the plan is applied.
    pub fn to_create(&self) -> impl Iterator<Item = &PlanItem> {
        self.items.iter().filter(|i| !i.exists)
    }

    /// Every conflict of every phase.
    pub fn conflicts(&self) -> Vec<Conflict> {
        let mut all = self.schema.conflicts.clone();
        all.extend(self.forms.conflicts.iter().cloned());
        all
    }

    /// One line per item, then a count.
    pub fn write(&self, out: &mut impl Write, dry_run: bool) -> std::io::Result<()> {
        let (new, changed, old) = if dry_run {
            ("would create", "would change", "exists")
        } else {
            ("created", "changed", "exists")
        };
        for item in &self.items {
            let state = match (item.exists, item.update) {
                (true, _) => old,
                (false, true) => changed,
                (false, false) => new,
            };
            write!(out, "{state:<13} {:<10} {}", item.kind, item.name)?;
            if let Some(note) = &item.note {
                write!(out, "  ({note})")?;
            }
            writeln!(out)?;
        }
        let conflicts = self.conflicts();
        if !conflicts.is_empty() {
            writeln!(
                out,
                "conflicts (the installer changes nothing while there is one):"
            )?;
            for c in &conflicts {
                writeln!(out, "  {c}")?;
            }
        }
        writeln!(
            out,
            "change tracking of the tables the connector reads (reported only; the installer does not switch it on):"
        )?;
        for (table, on) in &self.schema.change_tracking {
            let state = match on {
                Some(true) => "on",
                Some(false) => "off",
                None => "off (the table is created by this install)",
            };
            writeln!(out, "  {table:<22} {state}")?;
        }
        let changes = self.to_create().filter(|i| i.update).count();
        let created = self.to_create().count() - changes;
        let kept = self.items.len() - created - changes;
        if created + changes == 0 {
            writeln!(out, "nothing to do: every component is already there")?;
        }
        if dry_run {
            writeln!(
                out,
                "dry run: {created} to create, {changes} to change, {kept} already there; nothing was changed"
            )
        } else {
            writeln!(
                out,
                "done: {created} created, {changes} changed, {kept} already there (left as they were)"
            )
        }
    }
}

async fn all_rows(
    client: &DataverseClient,
    set: &str,
    query: Query,
) -> Result<Vec<serde_json::Value>, DataverseError> {
    let mut pages = client.query::<serde_json::Value>(set, &query);
    let mut rows = Vec::new();
    while let Some(page) = pages.next_page().await? {
        rows.extend(page);
    }
    Ok(rows)
}

fn text<'a>(row: &'a serde_json::Value, column: &str) -> Option<&'a str> {
    row.get(column).and_then(serde_json::Value::as_str)
}

/// The keys of the settings rows already in the CRM, in canonical spelling.
async fn existing_setting_keys(client: &DataverseClient) -> Result<Vec<String>, DataverseError> {
    Ok(all_rows(
        client,
        schema::SETTINGS_SET,
        Query::new().select([schema::SETTING_KEY]),
    )
    .await?
    .iter()
    .filter_map(|row| text(row, schema::SETTING_KEY).map(canonical_key))
    .collect())
}

/// Reads the CRM and says what exists and what an install would create. Changes nothing.
pub async fn plan(client: &DataverseClient, options: &Options) -> Result<Plan, InstallError> {
    let schema = plan_schema(client, options.app_user.as_deref()).await?;
    let forms = plan_forms(client, schema.languages()).await?;
    let mut items = schema.items.clone();
    items.extend(forms.items.iter().cloned());
    let mut plan = Plan {
        items,
        schema,
        forms,
    };
    let endpoints = all_rows(
        client,
        "serviceendpoints",
        Query::new()
            .select(["serviceendpointid", "url"])
            .filter(format!("name eq {}", filter::string_literal(ENDPOINT_NAME))),
    )
    .await?;
    let note = endpoints
        .first()
        .and_then(|row| text(row, "url"))
        .filter(|url| url.trim_end_matches('/') != options.intake_url.trim_end_matches('/'))
        .map(|url| {
            format!(
                "registered for {url}; kept: delete the endpoint in the CRM to register {}",
                options.intake_url
            )
        });
    plan.items.push(PlanItem {
        update: false,
        kind: "endpoint",
        name: format!("{ENDPOINT_NAME} -> {}", options.intake_url),
        exists: !endpoints.is_empty(),
        note,
    });
    for step in steps() {
        let name = step.name();
        let found = shared::install::existing_step(client, &step).await?;
        let note = found.as_ref().and_then(|existing| {
            let differences = existing.differences(&step);
            (!differences.is_empty())
                .then(|| format!("will be updated: {}", differences.join(", ")))
        });
        plan.items.push(PlanItem {
            update: false,
            kind: "step",
            name,
            exists: found.is_some() && note.is_none(),
            note,
        });
    }
    // A new org has no settings table until the schema phase created it.
    let existing = if plan.schema.table_exists("crc_setting") {
        existing_setting_keys(client).await?
    } else {
        Vec::new()
    };
    for (key, value) in &options.settings {
        let exists = existing.contains(&canonical_key(key));
        plan.items.push(PlanItem {
            update: false,
            kind: "setting",
            name: format!("{key} = {value:?}"),
            exists,
            note: exists.then(|| "value kept".to_string()),
        });
    }
    Ok(plan)
}

/// The schema phase alone (tables, columns, roles…), as the sandbox provisions a new org:
/// plans, stops on conflicts, applies. Returns the plan it applied.
pub async fn install_schema(
    client: &DataverseClient,
    app_user: Option<&str>,
) -> Result<SchemaPlan, InstallError> {
    let plan = plan_schema(client, app_user).await?;
    apply_schema(client, &plan).await?;
    Ok(plan)
}

/// Registers what is missing and returns what was created and what was already there.
/// Nothing is changed when the plan has conflicts.
pub async fn install(client: &DataverseClient, options: &Options) -> Result<Plan, InstallError> {
    let before = plan(client, options).await?;
    apply(client, options, &before).await?;
    Ok(before)
}

/// The checklist phase alone (web resources and forms), as the sandbox provisions a simulated
/// org for the browser tests: plans, stops on conflicts, applies. Returns the plan it applied.
pub async fn install_forms(client: &DataverseClient) -> Result<FormsPlan, InstallError> {
    let schema = plan_schema(client, None).await?;
    let forms = plan_forms(client, schema.languages()).await?;
    apply_forms(client, &forms, forms_solution(&schema)).await?;
    Ok(forms)
}

/// The solution web resources and forms are recorded in: the connector's unmanaged one; none
/// when it was imported managed (the changes then land in the org's own layer).
fn forms_solution(schema: &SchemaPlan) -> Option<&'static str> {
    (!schema.is_managed()).then_some(schema::SOLUTION_UNIQUE_NAME)
}

/// Applies a plan made by [`plan`]: the schema, the checklist, the webhooks, the missing
/// settings rows.
pub async fn apply(
    client: &DataverseClient,
    options: &Options,
    plan: &Plan,
) -> Result<(), InstallError> {
    let conflicts = plan.conflicts();
    if !conflicts.is_empty() {
        return Err(InstallError::Conflicts(conflicts));
    }
    let key = options
        .webhook_key
        .as_ref()
        .ok_or_else(|| usage("the webhook key is needed to register the endpoint"))?;
    apply_schema(client, &plan.schema).await?;
    apply_forms(client, &plan.forms, forms_solution(&plan.schema)).await?;
    install_webhooks(client, &options.intake_url, key)
        .await
        .map_err(|error| InstallError::Step {
            what: "registering the webhooks".into(),
            error: Box::new(error),
        })?;
    let existing = existing_setting_keys(client).await?;
    for (key, value) in &options.settings {
        if existing.contains(&canonical_key(key)) {
            continue;
        }
        client
            .create(
                schema::SETTINGS_SET,
                &serde_json::json!({ schema::SETTING_KEY: key, schema::SETTING_VALUE: value }),
            )
            .await
            .map_err(|error| InstallError::Step {
                what: format!("creating the setting {key}"),
                error: Box::new(error),
            })?;
    }
    Ok(())
}

/// The command line: parse, plan or install, print.
pub async fn run(
    args: &[String],
    env: impl Fn(&str) -> Option<String>,
    out: &mut impl Write,
) -> Result<(), InstallError> {
    let options = Options::parse(args, env)?;
    let client = options.client()?;
    let started = std::time::Instant::now();
    if options.dry_run {
        writeln!(out, "dry run against {}", options.api_url)?;
    } else {
        writeln!(out, "installing into {}", options.api_url)?;
    }
    let plan = plan(&client, &options).await?;
    let conflicts = plan.conflicts();
    if options.dry_run || !conflicts.is_empty() {
        plan.write(out, true)?;
        if !conflicts.is_empty() {
            return Err(InstallError::Conflicts(conflicts));
        }
        return Ok(());
    }
    apply(&client, &options, &plan).await?;
    plan.write(out, false)?;
    writeln!(out, "took {:.1} s", started.elapsed().as_secs_f64())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    const ENV: &[(&str, &str)] = &[
        ("DATAVERSE_URL", "https://contoso.crm4.dynamics.com"),
        ("DATAVERSE_TENANT_ID", "tenant-1"),
        ("DATAVERSE_CLIENT_ID", "client-1"),
        ("DATAVERSE_CLIENT_SECRET", "s3cret"),
        ("WEBHOOK_KEY", "k3y"),
        ("INTAKE_URL", "https://abc.lambda-url.eu-central-1.on.aws/"),
    ];

    #[test]
    fn the_default_rows_read_back_as_the_default_settings() {
        let rows = default_settings("https://rest.cleverreach.com/");
        let loaded =
            Settings::from_rows(rows.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(loaded.settings, Settings::default());
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(rows.len(), 15, "every settings key has a row");
    }

    #[test]
    fn the_environment_fills_in_what_flags_do_not_give() {
        let options = Options::parse(&args(&[]), env(ENV)).unwrap();
        assert_eq!(
            options.api_url.as_str(),
            "https://contoso.crm4.dynamics.com/api/data/v9.2/"
        );
        assert_eq!(
            options.token_url.as_str(),
            "https://login.microsoftonline.com/tenant-1/oauth2/v2.0/token"
        );
        assert_eq!(options.scope, "https://contoso.crm4.dynamics.com/.default");
        assert!(!options.dry_run);
        let flagged = Options::parse(
            &args(&["--client-id", "other", "--dry-run", "--scope=x/.default"]),
            env(ENV),
        )
        .unwrap();
        assert_eq!(flagged.client_id, "other");
        assert_eq!(flagged.scope, "x/.default");
        assert!(flagged.dry_run);
    }

    #[test]
    fn a_missing_secret_or_value_is_named() {
        for (missing, named) in [
            ("DATAVERSE_CLIENT_SECRET", "DATAVERSE_CLIENT_SECRET"),
            ("WEBHOOK_KEY", "WEBHOOK_KEY"),
            ("INTAKE_URL", "--intake-url"),
            ("DATAVERSE_URL", "--dataverse-url"),
        ] {
            let pairs: Vec<(&str, &str)> =
                ENV.iter().copied().filter(|(k, _)| *k != missing).collect();
            let err = Options::parse(&args(&[]), env(&pairs)).unwrap_err();
            assert!(err.to_string().contains(named), "{missing}: {err}");
        }
    }

    #[test]
    fn a_dry_run_needs_no_webhook_key() {
        let pairs: Vec<(&str, &str)> = ENV
            .iter()
            .copied()
            .filter(|(k, _)| *k != "WEBHOOK_KEY")
            .collect();
        assert!(Options::parse(&args(&["--dry-run"]), env(&pairs)).is_ok());
    }

    #[test]
    fn a_setting_override_replaces_the_default_and_a_bad_one_is_refused() {
        let options = Options::parse(
            &args(&["--setting", "cleverreach:groupsettings:groupprefix=CRM - "]),
            env(ENV),
        )
        .unwrap();
        assert!(
            options
                .settings
                .contains(&(keys::GROUP_PREFIX.to_string(), "CRM - ".to_string()))
        );
        let err = Options::parse(
            &args(&["--setting", "cleverreach:synchronization:sublistcount=0"]),
            env(ENV),
        )
        .unwrap_err();
        assert!(err.to_string().contains("sublistcount"), "{err}");
        let err =
            Options::parse(&args(&["--setting", "cleverreach:nope=1"]), env(ENV)).unwrap_err();
        assert!(err.to_string().contains("cleverreach:nope"), "{err}");
    }

    #[test]
    fn a_key_in_the_intake_url_is_refused() {
        let err = Options::parse(
            &args(&["--intake-url", "https://x.on.aws/?code=abc"]),
            env(ENV),
        )
        .unwrap_err();
        assert!(err.to_string().contains("code"), "{err}");
    }

    #[test]
    fn the_seeds_misspelled_keys_count_as_the_proper_ones() {
        assert_eq!(
            canonical_key(" CleverReach:BounceStettings:DisableContact "),
            keys::DISABLE_CONTACT
        );
        assert_eq!(
            canonical_key("cleverreach:newslettersettings:typjson"),
            keys::TYP_JSON
        );
    }
}
