//! The Dataverse client against a small mock Web API on 127.0.0.1:0: tokens, paging, FetchXML
//! paging cookies, `$batch`, retries, idempotent creates, and that secrets stay secret.
//!
//! The mock is a hand-written HTTP/1.1 server on tokio (one request per connection) rather than
//! axum: adding axum to shared's dev-dependencies would change Cargo.lock, and a raw socket
//! also lets a test break a response off mid-body or drop the connection.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use serde_json::{Value, json};
use shared::adapters::dataverse::client::{
    BatchRequest, DataverseClient, DataverseConfig, DataverseError, Query, filter,
};
use shared::adapters::http::RetryPolicy;
use shared::domain::recipient::RecipientKind;
use shared::error::Retryable;
use shared::secret::Secret;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use url::Url;

mod mock {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    #[derive(Clone, Debug)]
    pub struct Request {
        pub method: String,
        /// Path and query exactly as sent.
        pub target: String,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Request {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        pub fn path(&self) -> &str {
            self.target.split('?').next().unwrap_or_default()
        }

        /// A query parameter, percent-decoded.
        pub fn param(&self, name: &str) -> Option<String> {
            let url = url::Url::parse(&format!("http://mock{}", self.target)).ok()?;
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        }

        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }

        pub fn is_token(&self) -> bool {
            self.path().ends_with("/oauth2/v2.0/token")
        }
    }

    pub enum Reply {
        Full {
            status: u16,
            headers: Vec<(String, String)>,
            body: Vec<u8>,
        },
        /// Status and headers announce `declared` bytes; only `partial` arrive, then the
        /// connection closes.
        BrokenBody {
            status: u16,
            partial: Vec<u8>,
            declared: usize,
        },
        /// The connection closes without any answer.
        Drop,
        Slow(Duration, Box<Reply>),
    }

    impl Reply {
        pub fn json(status: u16, value: serde_json::Value) -> Reply {
            Reply::Full {
                status,
                headers: vec![(
                    "Content-Type".into(),
                    "application/json; odata.metadata=minimal".into(),
                )],
                body: value.to_string().into_bytes(),
            }
        }

        pub fn empty(status: u16) -> Reply {
            Reply::Full {
                status,
                headers: Vec::new(),
                body: Vec::new(),
            }
        }

        pub fn with_header(self, name: &str, value: &str) -> Reply {
            match self {
                Reply::Full {
                    status,
                    mut headers,
                    body,
                } => {
                    headers.push((name.into(), value.into()));
                    Reply::Full {
                        status,
                        headers,
                        body,
                    }
                }
                other => other,
            }
        }
    }

    type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

    pub struct Server {
        pub base: String,
        log: Arc<Mutex<Vec<Request>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Server {
        pub async fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let log = Arc::new(Mutex::new(Vec::new()));
            let handler: Handler = Arc::new(handler);
            let task_log = log.clone();
            let task = tokio::spawn(async move {
                while let Ok((socket, _)) = listener.accept().await {
                    tokio::spawn(serve(socket, handler.clone(), task_log.clone()));
                }
            });
            Server { base, log, task }
        }

        pub fn requests(&self) -> Vec<Request> {
            self.log.lock().unwrap().clone()
        }

        pub fn api_requests(&self) -> Vec<Request> {
            self.requests()
                .into_iter()
                .filter(|r| !r.is_token())
                .collect()
        }

        pub fn token_requests(&self) -> usize {
            self.requests().iter().filter(|r| r.is_token()).count()
        }
    }

    fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).position(|w| w == needle)
    }

    async fn serve(mut socket: TcpStream, handler: Handler, log: Arc<Mutex<Vec<Request>>>) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(at) = find(&buf, b"\r\n\r\n") {
                break at;
            }
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or_default().split(' ');
        let method = request_line.next().unwrap_or_default().to_string();
        let target = request_line.next().unwrap_or_default().to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + 4 + length {
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let request = Request {
            method,
            target,
            headers,
            body: buf[head_end + 4..head_end + 4 + length].to_vec(),
        };
        log.lock().unwrap().push(request.clone());
        let mut reply = handler(&request);
        while let Reply::Slow(wait, inner) = reply {
            tokio::time::sleep(wait).await;
            reply = *inner;
        }
        match reply {
            Reply::Full {
                status,
                headers,
                body,
            } => {
                let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
                for (name, value) in headers {
                    out.push_str(&format!("{name}: {value}\r\n"));
                }
                out.push_str(&format!(
                    "Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                ));
                let mut bytes = out.into_bytes();
                bytes.extend_from_slice(&body);
                let _ = socket.write_all(&bytes).await;
                let _ = socket.shutdown().await;
            }
            Reply::BrokenBody {
                status,
                partial,
                declared,
            } => {
                let mut bytes = format!(
                    "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n",
                    reason(status)
                )
                .into_bytes();
                bytes.extend_from_slice(&partial);
                let _ = socket.write_all(&bytes).await;
                let _ = socket.flush().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Reply::Drop | Reply::Slow(..) => {}
        }
    }

    fn reason(status: u16) -> &'static str {
        match status {
            200 => "OK",
            201 => "Created",
            204 => "No Content",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            412 => "Precondition Failed",
            429 => "Too Many Requests",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "Status",
        }
    }
}

use mock::{Reply, Request, Server};

const SECRET: &str = "client-secret-Zm9vYmFy";

/// Answers token requests with `token-1`, `token-2`, … valid for `lifetime` seconds, and passes
/// every other request to `api`.
fn with_tokens(
    lifetime: u64,
    api: impl Fn(&Request) -> Reply + Send + Sync + 'static,
) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
    let issued = AtomicUsize::new(0);
    move |request| {
        if request.is_token() {
            let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
            Reply::Slow(
                Duration::from_millis(50),
                Box::new(Reply::json(
                    200,
                    json!({"token_type":"Bearer","expires_in":lifetime,"ext_expires_in":lifetime,"access_token":format!("token-{n}")}),
                )),
            )
        } else {
            api(request)
        }
    }
}

fn config(server: &Server) -> DataverseConfig {
    let mut config = DataverseConfig::new(
        Url::parse(&format!("{}/api/data/v9.2/", server.base)).unwrap(),
        Url::parse(&format!("{}/tenant-id/oauth2/v2.0/token", server.base)).unwrap(),
        "app-id",
        Secret::new(SECRET),
        "https://org.crm.dynamics.com/.default",
    );
    config.max_page_size = 2;
    config.request_timeout = Duration::from_secs(5);
    config.retry = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_secs(3),
        budget: Duration::from_secs(10),
        jitter: Arc::new(|| 0.0),
        ..RetryPolicy::default()
    };
    config.write_tag = Some("crc-connector".to_string());
    config
}

fn client(server: &Server) -> DataverseClient {
    DataverseClient::new(config(server)).unwrap()
}

fn whoami_body() -> Value {
    json!({
        "@odata.context": "https://org.crm.dynamics.com/api/data/v9.2/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
        "BusinessUnitId": "6f202e6c-e471-ec11-8f8f-000d3aa6e9b1",
        "UserId": "88057198-a9b1-ec11-9840-00224826f4c4",
        "OrganizationId": "e34c95a5-f34c-430c-a05e-a23437e5b9fa"
    })
}

fn contact_id(n: u32) -> String {
    format!("{n:08x}-643f-ed11-9db0-002248225e95")
}

/// The tests live in a `dataverse` module so that `cargo test -p shared dataverse` selects them.
mod dataverse {
    use super::*;

    /// Compiles only if the client and the futures of its calls can move between threads, as
    /// handlers on a multi-threaded runtime need; the futures are never polled.
    #[test]
    fn the_client_and_its_futures_can_move_between_threads() {
        fn send<T: Send + 'static>(_: T) {}
        fn sync_clone<T: Send + Sync + Clone>() {}
        sync_clone::<DataverseClient>();
        let config = DataverseConfig::new(
            Url::parse("https://org.crm.dynamics.com/api/data/v9.2/").unwrap(),
            Url::parse("https://login.microsoftonline.com/t/oauth2/v2.0/token").unwrap(),
            "app-id",
            Secret::new(SECRET),
            "https://org.crm.dynamics.com/.default",
        );
        let client = DataverseClient::new(config).unwrap();
        let c = client.clone();
        send(async move {
            c.query::<Value>("contacts", &Query::new())
                .next_page()
                .await
        });
        let c = client.clone();
        send(async move {
            c.fetch_xml::<Value>("contacts", "<fetch/>")
                .next_page()
                .await
        });
        let c = client.clone();
        send(async move { c.batch(Vec::new()).await });
        let c = client.clone();
        send(async move { c.create("leads", &json!({})).await });
        send(async move { client.retrieve::<Value>("leads", "x", &[]).await });
    }

    // ----- tokens --------------------------------------------------------------------------------

    #[tokio::test]
    async fn many_calls_share_one_token_request_with_the_documented_form_and_headers() {
        let server = Server::start(with_tokens(3600, |_| Reply::json(200, whoami_body()))).await;
        let client = client(&server);
        for _ in 0..5 {
            let me = client.clone().whoami().await.unwrap();
            assert_eq!(me.user_id, "88057198-a9b1-ec11-9840-00224826f4c4");
            assert_eq!(me.business_unit_id, "6f202e6c-e471-ec11-8f8f-000d3aa6e9b1");
            assert_eq!(me.organization_id, "e34c95a5-f34c-430c-a05e-a23437e5b9fa");
        }
        assert_eq!(server.token_requests(), 1);

        let token_request = server
            .requests()
            .into_iter()
            .find(|r| r.is_token())
            .unwrap();
        assert_eq!(token_request.method, "POST");
        assert_eq!(token_request.path(), "/tenant-id/oauth2/v2.0/token");
        let form: HashMap<String, String> = url::form_urlencoded::parse(&token_request.body)
            .into_owned()
            .collect();
        assert_eq!(form["grant_type"], "client_credentials");
        assert_eq!(form["client_id"], "app-id");
        assert_eq!(form["client_secret"], SECRET);
        assert_eq!(form["scope"], "https://org.crm.dynamics.com/.default");

        let api = server.api_requests();
        assert_eq!(api.len(), 5);
        for request in &api {
            assert_eq!(request.target, "/api/data/v9.2/WhoAmI");
            assert_eq!(request.header("authorization"), Some("Bearer token-1"));
            assert_eq!(request.header("accept"), Some("application/json"));
            assert_eq!(request.header("odata-maxversion"), Some("4.0"));
            assert_eq!(request.header("odata-version"), Some("4.0"));
            assert_eq!(request.header("if-none-match"), Some("null"));
        }
    }

    #[tokio::test]
    async fn concurrent_callers_wait_for_one_token_request() {
        let server = Server::start(with_tokens(3600, |_| Reply::json(200, whoami_body()))).await;
        let client = client(&server);
        let calls = (0..16).map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.whoami().await })
        });
        for call in futures::future::join_all(calls).await {
            assert!(call.unwrap().is_ok());
        }
        assert_eq!(server.token_requests(), 1);
        assert_eq!(server.api_requests().len(), 16);
    }

    #[tokio::test]
    async fn a_token_within_five_minutes_of_expiry_is_not_reused() {
        let server = Server::start(with_tokens(299, |_| Reply::json(200, whoami_body()))).await;
        let client = client(&server);
        client.whoami().await.unwrap();
        client.whoami().await.unwrap();
        assert_eq!(server.token_requests(), 2);
        let tokens: Vec<_> = server
            .api_requests()
            .iter()
            .map(|r| r.header("authorization").unwrap_or_default().to_string())
            .collect();
        assert_eq!(tokens, ["Bearer token-1", "Bearer token-2"]);
    }

    #[tokio::test]
    async fn a_401_fetches_a_new_token_once_and_repeats_the_request() {
        let server = Server::start(with_tokens(3600, |request| {
            if request.header("authorization") == Some("Bearer token-1") {
                Reply::json(401, json!({"error":{"code":"","message":"token expired"}}))
            } else {
                Reply::json(200, whoami_body())
            }
        }))
        .await;
        let client = client(&server);
        assert!(client.whoami().await.is_ok());
        assert!(client.whoami().await.is_ok());
        assert_eq!(server.token_requests(), 2);
        assert_eq!(server.api_requests().len(), 3);
    }

    #[tokio::test]
    async fn a_401_with_a_fresh_token_is_unauthorized_and_not_retried() {
        let server = Server::start(with_tokens(3600, |_| Reply::empty(401))).await;
        let client = client(&server);
        let err = client.whoami().await.unwrap_err();
        assert!(
            matches!(err, DataverseError::Unauthorized { .. }),
            "{err:?}"
        );
        assert!(!err.is_retryable());
        assert_eq!(server.token_requests(), 2);
        assert_eq!(server.api_requests().len(), 2);
    }

    // ----- reads ---------------------------------------------------------------------------------

    /// The shape of `@odata.nextLink` in PA-page: a `$skiptoken` holding an encoded paging cookie.
    const SKIPTOKEN: &str = "%3Ccookie%20pagenumber=%222%22%20pagingcookie=%22%253ccookie%2520page%253d%25221%2522%253e%253ccontactid%2520last%253d%2522%257bB3A57D15-6E39-ED11-9DB0-002248225E0E%257d%2522%2520first%253d%2522%257b01A57D15-6E39-ED11-9DB0-002248225E0E%257d%2522%2520%252f%253e%253c%252fcookie%253e%22%20istracking=%22False%22%20/%3E";

    #[tokio::test]
    async fn paging_follows_the_next_link_unchanged_and_keeps_the_page_size() {
        let base = Arc::new(Mutex::new(String::new()));
        let server = Server::start(with_tokens(3600, {
        let base = base.clone();
        move |request| {
            let base = base.lock().unwrap().clone();
            if request.param("$skiptoken").is_none() {
                Reply::json(
                    200,
                    json!({
                        "@odata.context": format!("{base}/api/data/v9.2/$metadata#contacts(fullname)"),
                        "value": [
                            {"@odata.etag":"W/\"1\"","fullname":"Susanna Stubberod (sample)","contactid":"01a57d15-6e39-ed11-9db0-002248225e0e"},
                            {"@odata.etag":"W/\"2\"","fullname":"Nancy Anderson (sample)","contactid":"b3a57d15-6e39-ed11-9db0-002248225e0e"}
                        ],
                        "@odata.nextLink": format!("{base}/api/data/v9.2/contacts?$select=fullname,contactid&$skiptoken={SKIPTOKEN}")
                    }),
                )
            } else {
                Reply::json(
                    200,
                    json!({"value":[{"fullname":"Maria Cambell (sample)","contactid":"28717e9c-643f-ed11-9db0-002248225e95"}]}),
                )
            }
        }
    }))
    .await;
        *base.lock().unwrap() = server.base.clone();
        let client = client(&server);

        #[derive(serde::Deserialize)]
        struct Contact {
            fullname: String,
        }
        let query = Query::new()
            .select(["fullname", "contactid"])
            .filter(format!(
                "statecode eq 0 and lastname eq {}",
                filter::string_literal("O'Brien & Söhne")
            ));
        let mut pages = client.query::<Contact>("contacts", &query);
        let mut names = Vec::new();
        while let Some(page) = pages.next_page().await.unwrap() {
            names.extend(page.into_iter().map(|c| c.fullname));
        }
        assert_eq!(
            names,
            [
                "Susanna Stubberod (sample)",
                "Nancy Anderson (sample)",
                "Maria Cambell (sample)"
            ]
        );
        assert_eq!(pages.requests(), 2);

        let api = server.api_requests();
        assert_eq!(api.len(), 2);
        assert_eq!(api[0].path(), "/api/data/v9.2/contacts");
        assert_eq!(
            api[0].param("$select").as_deref(),
            Some("fullname,contactid")
        );
        assert_eq!(
            api[0].param("$filter").as_deref(),
            Some("statecode eq 0 and lastname eq 'O''Brien & Söhne'")
        );
        assert_eq!(
            api[1].target,
            format!("/api/data/v9.2/contacts?$select=fullname,contactid&$skiptoken={SKIPTOKEN}")
        );
        for request in &api {
            assert_eq!(request.header("prefer"), Some("odata.maxpagesize=2"));
        }
    }

    #[tokio::test]
    async fn a_missing_row_is_none_and_a_present_row_is_read() {
        let present = contact_id(1);
        let server = Server::start(with_tokens(3600, {
        let present = present.clone();
        move |request| {
            if request.path().contains(&present) {
                Reply::json(200, json!({"contactid": present, "emailaddress1": "a@example.com"}))
            } else {
                Reply::json(404, json!({"error":{"code":"0x80040217","message":"contact With Id = … Does Not Exist"}}))
            }
        }
    }))
    .await;
        let client = client(&server);
        let row: Option<Value> = client
            .retrieve("contacts", &present.to_uppercase(), &["emailaddress1"])
            .await
            .unwrap();
        assert_eq!(row.unwrap()["emailaddress1"], "a@example.com");
        let missing: Option<Value> = client
            .retrieve("contacts", &contact_id(2), &["emailaddress1"])
            .await
            .unwrap();
        assert!(missing.is_none());
        let api = server.api_requests();
        assert_eq!(
            api[0].target,
            format!("/api/data/v9.2/contacts({present})?$select=emailaddress1")
        );
        assert_eq!(api.len(), 2, "a 404 is an answer, not a reason to retry");
    }

    #[tokio::test]
    async fn static_list_members_are_read_through_the_list_relationship() {
        let server = Server::start(with_tokens(3600, |_| {
            Reply::json(
                200,
                json!({"value":[{"leadid":"425195a4-7a75-e911-a97a-000d3a34a1bd"}]}),
            )
        }))
        .await;
        let client = client(&server);
        let list = "18717E9C-643F-ED11-9DB0-002248225E95";
        let mut pages = client.static_list_members::<serde_json::Value>(
            list,
            RecipientKind::Lead,
            &shared::adapters::dataverse::client::Query::new().select(["leadid", "emailaddress1"]),
        );
        let rows = pages.next_page().await.unwrap().unwrap();
        assert_eq!(rows.len(), 1);
        assert!(pages.next_page().await.unwrap().is_none());
        let api = server.api_requests();
        assert_eq!(
            api[0].target,
            "/api/data/v9.2/lists(18717e9c-643f-ed11-9db0-002248225e95)/listlead_association?$select=leadid,emailaddress1"
        );
        assert_eq!(api[0].header("prefer"), Some("odata.maxpagesize=2"));
    }

    // ----- FetchXML ------------------------------------------------------------------------------

    /// The first-page annotation of Microsoft's FetchXML paging example (PA-fetch).
    const COOKIE_ANNOTATION: &str = "<cookie pagenumber=\"2\" pagingcookie=\"%253ccookie%2520page%253d%25221%2522%253e%253cfullname%2520last%253d%2522Robert%2520Lyon%2520%2528sample%2529%2522%2520first%253d%2522Susanna%2520Stubberod%2520%2528sample%2529%2522%2520%252f%253e%253ccontactid%2520last%253d%2522%257b30717E9C-643F-ED11-9DB0-002248225E95%257d%2522%2520first%253d%2522%257b20717E9C-643F-ED11-9DB0-002248225E95%257d%2522%2520%252f%253e%253c%252fcookie%253e\" istracking=\"False\" />";
    const COOKIE_IN_XML: &str = "paging-cookie=\"&lt;cookie page=&quot;1&quot;&gt;&lt;fullname last=&quot;Robert Lyon (sample)&quot; first=&quot;Susanna Stubberod (sample)&quot; /&gt;&lt;contactid last=&quot;{30717E9C-643F-ED11-9DB0-002248225E95}&quot; first=&quot;{20717E9C-643F-ED11-9DB0-002248225E95}&quot; /&gt;&lt;/cookie&gt;\"";

    fn fetch_page_handler(request: &Request) -> Reply {
        let fetch = request.param("fetchXml").unwrap_or_default();
        if fetch.contains("page=\"1\"") {
            Reply::json(
                200,
                json!({
                    "@Microsoft.Dynamics.CRM.fetchxmlpagingcookie": COOKIE_ANNOTATION,
                    "@Microsoft.Dynamics.CRM.morerecords": true,
                    "value": [
                        {"fullname":"Susanna Stubberod (sample)","contactid":"20717e9c-643f-ed11-9db0-002248225e95"},
                        {"fullname":"Robert Lyon (sample)","contactid":"30717e9c-643f-ed11-9db0-002248225e95"}
                    ]
                }),
            )
        } else {
            Reply::json(
                200,
                json!({"value":[{"fullname":"Nancy Anderson (sample)","contactid":"24717e9c-643f-ed11-9db0-002248225e95"}]}),
            )
        }
    }

    #[tokio::test]
    async fn fetch_xml_pages_carry_the_twice_decoded_cookie_into_the_next_request() {
        let server = Server::start(with_tokens(3600, fetch_page_handler)).await;
        let client = client(&server);
        let query = "<fetch mapping='logical' page='7' count='5000'><entity name='contact'><attribute name='fullname'/><order attribute='fullname' descending='true'/></entity></fetch>";
        let mut pages = client.fetch_xml::<Value>("contacts", query);
        let mut rows = Vec::new();
        while let Some(page) = pages.next_page().await.unwrap() {
            rows.extend(page);
        }
        assert_eq!(rows.len(), 3);
        assert_eq!(pages.requests(), 2);

        let api = server.api_requests();
        assert_eq!(api.len(), 2);
        let first = api[0].param("fetchXml").unwrap();
        let second = api[1].param("fetchXml").unwrap();
        assert!(
            first.starts_with("<fetch mapping=\"logical\" page=\"1\" count=\"2\">"),
            "{first}"
        );
        assert!(!first.contains("paging-cookie"), "{first}");
        assert!(
            second.starts_with("<fetch mapping=\"logical\" page=\"2\" count=\"2\" "),
            "{second}"
        );
        assert!(second.contains(COOKIE_IN_XML), "{second}");
        for request in &api {
            assert_eq!(request.path(), "/api/data/v9.2/contacts");
            assert_eq!(
                request.header("prefer"),
                Some("odata.include-annotations=\"*\"")
            );
        }
    }

    #[tokio::test]
    async fn a_dynamic_list_query_is_paged_with_the_primary_key_added() {
        let server = Server::start(with_tokens(3600, fetch_page_handler)).await;
        let client = client(&server);
        let list_query = "<fetch version=\"1.0\" output-format=\"xml-platform\" mapping=\"logical\" distinct=\"false\"><entity name=\"contact\"><attribute name=\"fullname\" /><filter type=\"and\"><condition attribute=\"address1_city\" operator=\"eq\" value=\"Köln\" /></filter></entity></fetch>";
        let mut pages = client.dynamic_list_members::<serde_json::Value>(
            list_query,
            RecipientKind::Contact,
            &["emailaddress1"],
        );
        let mut count = 0;
        while let Some(page) = pages.next_page().await.unwrap() {
            count += page.len();
        }
        assert_eq!(count, 3);
        let sent = server.api_requests()[0].param("fetchXml").unwrap();
        assert!(sent.contains("<attribute name=\"contactid\"/><attribute name=\"emailaddress1\"/><order attribute=\"contactid\" descending=\"false\"/></entity>"), "{sent}");
        assert!(sent.contains("value=\"Köln\""), "{sent}");
    }

    #[tokio::test]
    async fn a_very_long_fetch_xml_is_sent_inside_a_batch() {
        let server = Server::start(with_tokens(3600, |request| {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path(), "/api/data/v9.2/$batch");
        let body = request.text();
        let boundary = body.lines().next().unwrap().trim_start_matches("--").to_string();
        assert!(body.contains("\r\nGET /api/data/v9.2/contacts?fetchXml=%3Cfetch"), "{}", &body[..300]);
        assert!(body.contains("\r\nPrefer: odata.include-annotations=\"*\"\r\n"));
        assert!(body.ends_with(&format!("--{boundary}--\r\n")));
        let answer = format!(
            "--batchresponse_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: application/json; odata.metadata=minimal\r\nOData-Version: 4.0\r\n\r\n{}\r\n--batchresponse_1--\r\n",
            json!({"value":[{"contactid":"24717e9c-643f-ed11-9db0-002248225e95"}]})
        );
        Reply::Full {
            status: 200,
            headers: vec![("Content-Type".into(), "multipart/mixed; boundary=batchresponse_1".into())],
            body: answer.into_bytes(),
        }
    }))
    .await;
        let client = client(&server);
        let conditions: String = (0..600)
            .map(|n| format!("<value>{}</value>", contact_id(n)))
            .collect();
        let query = format!(
            "<fetch><entity name='contact'><attribute name='contactid'/><filter><condition attribute='contactid' operator='in'>{conditions}</condition></filter></entity></fetch>"
        );
        let mut pages = client.fetch_xml::<Value>("contacts", &query);
        let rows = pages.next_page().await.unwrap().unwrap();
        assert_eq!(rows.len(), 1);
        assert!(pages.next_page().await.unwrap().is_none());
        assert_eq!(server.api_requests().len(), 1);
    }

    // ----- $batch --------------------------------------------------------------------------------

    /// PA-batch's continue-on-error answer: a 400 part with an error body, then a 204 part with
    /// `OData-EntityId`.
    const BATCH_ANSWER: &str = "--batchresponse_f44bd09d-573f-4a30-bca0-2e500ee7e139\r\n\
Content-Type: application/http\r\n\
Content-Transfer-Encoding: binary\r\n\
\r\n\
HTTP/1.1 400 Bad Request\r\n\
REQ_ID: de4c5227-4a28-4ebd-8ced-3392ece1697b\r\n\
Content-Type: application/json; odata.metadata=minimal\r\n\
OData-Version: 4.0\r\n\
\r\n\
{\"error\":{\"code\":\"0x80044331\",\"message\":\"A validation error occurred.  The length of the 'subject' attribute of the 'task' entity exceeded the maximum allowed length of '200'.\"}}\r\n\
--batchresponse_f44bd09d-573f-4a30-bca0-2e500ee7e139\r\n\
Content-Type: application/http\r\n\
Content-Transfer-Encoding: binary\r\n\
\r\n\
HTTP/1.1 204 No Content\r\n\
OData-Version: 4.0\r\n\
Location: https://org.crm.dynamics.com/api/data/v9.2/tasks(aed2ae8b-3c94-ed11-aad1-000d3a9933c9)\r\n\
OData-EntityId: https://org.crm.dynamics.com/api/data/v9.2/tasks(aed2ae8b-3c94-ed11-aad1-000d3a9933c9)\r\n\
\r\n\
\r\n\
--batchresponse_f44bd09d-573f-4a30-bca0-2e500ee7e139--\r\n";

    #[tokio::test]
    async fn a_batch_is_sent_as_multipart_and_its_answer_decoded_part_by_part() {
        let server = Server::start(with_tokens(3600, |_| Reply::Full {
            status: 200,
            headers: vec![(
                "Content-Type".into(),
                "multipart/mixed; boundary=batchresponse_f44bd09d-573f-4a30-bca0-2e500ee7e139"
                    .into(),
            )],
            body: BATCH_ANSWER.as_bytes().to_vec(),
        }))
        .await;
        let client = client(&server);
        let requests = vec![
            BatchRequest::update(
                "contacts",
                &contact_id(1),
                json!({"crc_checklist": "[{\"id\":0,\"state\":1}]"}),
            )
            .unwrap(),
            BatchRequest::delete("contacts", &contact_id(2)).unwrap(),
        ];
        let results = client.batch(requests).await.unwrap();

        assert_eq!(results.len(), 2);
        assert_eq!(results[0].status, 400);
        let error = results[0].error.as_ref().unwrap();
        assert_eq!(error.code, "0x80044331");
        assert!(error.message.starts_with("A validation error occurred."));
        assert!(!results[0].is_success());
        assert_eq!(results[1].status, 204);
        assert!(results[1].is_success());
        assert_eq!(results[1].body, None);
        assert_eq!(
            results[1].entity_id.as_deref(),
            Some("aed2ae8b-3c94-ed11-aad1-000d3a9933c9")
        );

        let api = server.api_requests();
        assert_eq!(api.len(), 1);
        let sent = &api[0];
        assert_eq!(sent.method, "POST");
        assert_eq!(sent.target, "/api/data/v9.2/$batch");
        assert_eq!(sent.header("prefer"), Some("odata.continue-on-error"));
        let content_type = sent.header("content-type").unwrap();
        let boundary = content_type
            .strip_prefix("multipart/mixed; boundary=\"")
            .and_then(|rest| rest.strip_suffix('"'))
            .unwrap();
        assert!(boundary.starts_with("batch_"));
        let expected = format!(
            "--{b}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n\
PATCH /api/data/v9.2/contacts({c1})?tag=crc-connector HTTP/1.1\r\nContent-Type: application/json\r\nIf-Match: *\r\n\r\n\
{{\"crc_checklist\":\"[{{\\\"id\\\":0,\\\"state\\\":1}}]\"}}\r\n\
--{b}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n\
DELETE /api/data/v9.2/contacts({c2})?tag=crc-connector HTTP/1.1\r\n\r\n\r\n\
--{b}--\r\n",
            b = boundary,
            c1 = contact_id(1),
            c2 = contact_id(2)
        );
        assert_eq!(sent.text(), expected);
    }

    #[tokio::test]
    async fn a_batch_of_more_than_1000_requests_is_refused_before_sending() {
        let server = Server::start(with_tokens(3600, |_| Reply::empty(200))).await;
        let client = client(&server);
        let requests: Vec<_> = (0..1001)
            .map(|n| {
                BatchRequest::update("contacts", &contact_id(n), json!({"firstname": "x"})).unwrap()
            })
            .collect();
        let err = client.batch(requests).await.unwrap_err();
        assert!(
            matches!(err, DataverseError::BatchTooLarge { parts: 1001 }),
            "{err:?}"
        );
        assert!(
            server.requests().is_empty(),
            "not even a token was requested"
        );
    }

    #[tokio::test]
    async fn a_batch_that_fails_as_a_whole_is_retried() {
        let calls = Arc::new(AtomicUsize::new(0));
        let server = Server::start(with_tokens(3600, {
        let calls = calls.clone();
        move |_| {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                Reply::json(503, json!({"error":{"code":"","message":"Service Unavailable"}}))
            } else {
                Reply::Full {
                    status: 200,
                    headers: vec![(
                        "Content-Type".into(),
                        "multipart/mixed; boundary=batchresponse_f44bd09d-573f-4a30-bca0-2e500ee7e139".into(),
                    )],
                    body: BATCH_ANSWER.as_bytes().to_vec(),
                }
            }
        }
    }))
    .await;
        let client = client(&server);
        let requests = vec![
            BatchRequest::update("contacts", &contact_id(1), json!({"firstname": "x"})).unwrap(),
            BatchRequest::update("contacts", &contact_id(2), json!({"firstname": "y"})).unwrap(),
        ];
        assert_eq!(client.batch(requests).await.unwrap().len(), 2);
        let api = server.api_requests();
        assert_eq!(api.len(), 2);
        assert_eq!(api[0].body, api[1].body);
    }

    // ----- retries -------------------------------------------------------------------------------

    fn flaky(failures: Vec<Reply>) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
        let failures = Mutex::new(failures.into_iter());
        move |_| {
            failures
                .lock()
                .unwrap()
                .next()
                .unwrap_or_else(|| Reply::json(200, whoami_body()))
        }
    }

    #[tokio::test]
    async fn a_429_waits_for_retry_after_and_then_succeeds() {
        let server = Server::start(with_tokens(
        3600,
        flaky(vec![Reply::json(
            429,
            json!({"error":{"code":"0x80072322","message":"Number of requests exceeded the limit of 6000 over time window of 300 seconds."}}),
        )
        .with_header("Retry-After", "1")]),
    ))
    .await;
        let client = client(&server);
        let started = Instant::now();
        assert!(client.whoami().await.is_ok());
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(server.api_requests().len(), 2);
    }

    #[tokio::test]
    async fn a_retry_after_longer_than_the_policy_allows_gives_up_with_the_wait() {
        let server = Server::start(with_tokens(
            3600,
            flaky(vec![Reply::empty(429).with_header("Retry-After", "60")]),
        ))
        .await;
        let client = client(&server);
        let err = client.whoami().await.unwrap_err();
        assert!(matches!(err, DataverseError::Throttled { .. }), "{err:?}");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(60)));
        assert_eq!(server.api_requests().len(), 1);
    }

    #[tokio::test]
    async fn a_500_is_retried_until_it_succeeds() {
        let server = Server::start(with_tokens(
        3600,
        flaky(vec![
            Reply::json(
                500,
                json!({"error":{"code":"0x80040216","message":"An unexpected error occurred."}}),
            ),
            Reply::json(
                500,
                json!({"error":{"code":"0x80040216","message":"An unexpected error occurred."}}),
            ),
        ]),
    ))
    .await;
        let client = client(&server);
        assert!(client.whoami().await.is_ok());
        assert_eq!(server.api_requests().len(), 3);
    }

    #[tokio::test]
    async fn a_400_is_not_retried_and_names_the_request_without_its_query() {
        let server = Server::start(with_tokens(3600, |_| {
        Reply::json(400, json!({"error":{"code":"0x80060888","message":"Could not find a property named 'emailadress1'."}}))
    }))
    .await;
        let client = client(&server);
        let query = Query::new().select(["contactid"]).filter(format!(
            "emailadress1 eq {}",
            filter::string_literal("max.mustermann@example.com")
        ));
        let err = client
            .query::<Value>("contacts", &query)
            .next_page()
            .await
            .unwrap_err();
        match &err {
            DataverseError::Client { status, code, .. } => {
                assert_eq!(*status, 400);
                assert_eq!(code, "0x80060888");
            }
            other => panic!("expected a client error, got {other:?}"),
        }
        assert!(!err.is_retryable());
        let text = err.to_string();
        assert!(text.starts_with("GET contacts:"), "{text}");
        assert!(
            !text.contains("mustermann"),
            "personal data in the error: {text}"
        );
        assert_eq!(server.api_requests().len(), 1);
    }

    #[tokio::test]
    async fn a_timeout_is_retried_and_reported_as_a_timeout_when_it_persists() {
        let server = Server::start(with_tokens(3600, |_| {
            Reply::Slow(
                Duration::from_millis(800),
                Box::new(Reply::json(200, whoami_body())),
            )
        }))
        .await;
        let mut config = config(&server);
        config.request_timeout = Duration::from_millis(300);
        config.retry.max_attempts = 2;
        let client = DataverseClient::new(config).unwrap();
        let err = client.whoami().await.unwrap_err();
        assert!(matches!(err, DataverseError::Timeout { .. }), "{err:?}");
        assert!(err.is_retryable());
        assert_eq!(server.api_requests().len(), 2);
    }

    #[tokio::test]
    async fn a_connection_dropped_before_the_answer_is_retried() {
        let server = Server::start(with_tokens(3600, flaky(vec![Reply::Drop]))).await;
        let client = client(&server);
        assert!(client.whoami().await.is_ok());
        assert_eq!(server.api_requests().len(), 2);
    }

    // ----- writes --------------------------------------------------------------------------------

    /// A table of rows that honours `If-None-Match: *` and `If-Match: *` like Dataverse.
    #[derive(Clone, Default)]
    struct Rows(Arc<Mutex<HashMap<String, Value>>>);

    impl Rows {
        fn patch(&self, request: &Request) -> Reply {
            let mut rows = self.0.lock().unwrap();
            let key = request.path().to_string();
            let exists = rows.contains_key(&key);
            if request.header("if-none-match") == Some("*") && exists {
                return Reply::json(
                    412,
                    json!({"error":{"code":"0x80040237","message":"A record with matching key values already exists."}}),
                );
            }
            if request.header("if-match") == Some("*") && !exists {
                return Reply::json(
                    404,
                    json!({"error":{"code":"0x80040217","message":"Does Not Exist"}}),
                );
            }
            rows.insert(
                key,
                serde_json::from_slice(&request.body).unwrap_or(Value::Null),
            );
            Reply::empty(204)
        }

        fn len(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    #[tokio::test]
    async fn a_create_whose_answer_breaks_off_after_it_was_applied_creates_exactly_one_row() {
        let rows = Rows::default();
        let first = Arc::new(AtomicUsize::new(0));
        let server = Server::start(with_tokens(3600, {
            let rows = rows.clone();
            move |request| {
                let reply = rows.patch(request);
                if first.fetch_add(1, Ordering::SeqCst) == 0 {
                    // Applied, but the answer breaks off mid-body.
                    Reply::BrokenBody {
                        status: 201,
                        partial: b"{\"leadid\":\"4251".to_vec(),
                        declared: 300,
                    }
                } else {
                    reply
                }
            }
        }))
        .await;
        let client = client(&server);
        let id = client
            .create(
                "leads",
                &json!({"emailaddress1": "new@example.com", "lastname": "New"}),
            )
            .await
            .unwrap();

        assert_eq!(rows.len(), 1);
        let api = server.api_requests();
        assert_eq!(api.len(), 2, "the ambiguous first attempt was retried once");
        for request in &api {
            assert_eq!(request.method, "PATCH");
            assert_eq!(
                request.target,
                format!("/api/data/v9.2/leads({id})?tag=crc-connector")
            );
            assert_eq!(request.header("if-none-match"), Some("*"));
            assert_eq!(request.header("content-type"), Some("application/json"));
        }
        assert!(
            rows.0
                .lock()
                .unwrap()
                .contains_key(&format!("/api/data/v9.2/leads({id})"))
        );
    }

    #[tokio::test]
    async fn a_create_that_conflicts_on_the_first_attempt_is_an_error() {
        let server = Server::start(with_tokens(3600, |_| {
        Reply::json(412, json!({"error":{"code":"0x80040237","message":"A record with matching key values already exists."}}))
    }))
    .await;
        let client = client(&server);
        let err = client
            .create_with_id("leads", &contact_id(9), &json!({"lastname": "Twice"}))
            .await
            .unwrap_err();
        assert!(matches!(err, DataverseError::Conflict { .. }), "{err:?}");
        assert!(!err.is_retryable());
        assert_eq!(server.api_requests().len(), 1);
    }

    #[tokio::test]
    async fn update_never_creates_and_delete_of_a_missing_row_is_false() {
        let rows = Rows::default();
        let server = Server::start(with_tokens(3600, {
            let rows = rows.clone();
            move |request| match request.method.as_str() {
                "PATCH" => rows.patch(request),
                "DELETE" => {
                    let removed = rows.0.lock().unwrap().remove(request.path());
                    if removed.is_some() {
                        Reply::empty(204)
                    } else {
                        Reply::empty(404)
                    }
                }
                _ => Reply::empty(405),
            }
        }))
        .await;
        let client = client(&server);
        let id = contact_id(3);
        let err = client
            .update("contacts", &id, &json!({"donotbulkemail": true}))
            .await
            .unwrap_err();
        assert!(matches!(err, DataverseError::NotFound { .. }), "{err:?}");
        assert_eq!(rows.len(), 0);

        client
            .upsert("contacts", &id, &json!({"lastname": "Upserted"}))
            .await
            .unwrap();
        client
            .update("contacts", &id, &json!({"donotbulkemail": true}))
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert!(client.delete("contacts", &id).await.unwrap());
        assert!(!client.delete("contacts", &id).await.unwrap());

        let api = server.api_requests();
        assert_eq!(api[0].header("if-match"), Some("*"));
        assert_eq!(api[1].header("if-match"), None);
        assert_eq!(api[1].header("if-none-match"), None);
        assert!(api.iter().all(|r| r.target.ends_with("?tag=crc-connector")));
    }

    #[tokio::test]
    async fn an_action_returns_its_json_or_null_for_no_content() {
        let server = Server::start(with_tokens(3600, |request| {
            if request.path().ends_with("AddMemberList") {
                Reply::json(
                    200,
                    json!({"@odata.context":"…","Id":"9f5c3a1e-7a75-e911-a97a-000d3a34a1bd"}),
                )
            } else {
                Reply::empty(204)
            }
        }))
        .await;
        let client = client(&server);
        let list = "18717e9c-643f-ed11-9db0-002248225e95";
        let added = client
            .execute_action(
                &format!("lists({list})/Microsoft.Dynamics.CRM.AddMemberList"),
                &json!({"EntityId": contact_id(1)}),
            )
            .await
            .unwrap();
        assert_eq!(added["Id"], "9f5c3a1e-7a75-e911-a97a-000d3a34a1bd");
        let none = client
        .execute_action(
            "AddListMembersList",
            &json!({"List": {"@odata.type":"Microsoft.Dynamics.CRM.list","listid":list}, "Members": []}),
        )
        .await
        .unwrap();
        assert_eq!(none, Value::Null);
        let api = server.api_requests();
        assert_eq!(
            api[0].target,
            format!(
                "/api/data/v9.2/lists({list})/Microsoft.Dynamics.CRM.AddMemberList?tag=crc-connector"
            )
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&api[0].body).unwrap()["EntityId"],
            contact_id(1)
        );
        assert!(
            client
                .execute_action("https://evil.example.com/x", &json!({}))
                .await
                .is_err()
        );
    }

    // ----- secrets -------------------------------------------------------------------------------

    mod capture {
        //! A tracing subscriber that writes every span and event field into one string.
        use std::fmt::Write;
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::{Arc, Mutex};
        use tracing::field::{Field, Visit};
        use tracing::span::{Attributes, Id, Record};
        use tracing::{Event, Metadata, Subscriber};

        #[derive(Clone, Default)]
        pub struct Capture {
            pub text: Arc<Mutex<String>>,
            next: Arc<AtomicU64>,
        }

        struct Writer<'a>(&'a mut String);

        impl Visit for Writer<'_> {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                let _ = write!(self.0, "{}={value:?} ", field.name());
            }
        }

        impl Subscriber for Capture {
            fn enabled(&self, _: &Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, span: &Attributes<'_>) -> Id {
                let mut text = self.text.lock().unwrap();
                let _ = write!(text, "\nspan {} ", span.metadata().name());
                span.record(&mut Writer(&mut text));
                Id::from_u64(self.next.fetch_add(1, Ordering::SeqCst) + 1)
            }
            fn record(&self, _: &Id, values: &Record<'_>) {
                values.record(&mut Writer(&mut self.text.lock().unwrap()));
            }
            fn record_follows_from(&self, _: &Id, _: &Id) {}
            fn event(&self, event: &Event<'_>) {
                let mut text = self.text.lock().unwrap();
                text.push_str("\nevent ");
                event.record(&mut Writer(&mut text));
            }
            fn enter(&self, _: &Id) {}
            fn exit(&self, _: &Id) {}
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_client_secret_and_tokens_never_reach_debug_errors_or_logs() {
        let capture = capture::Capture::default();
        // Other tests run in parallel threads without a subscriber. With a single registered
        // dispatcher tracing asks only the registering thread's one, so callsites first hit there
        // would be cached as uninteresting: a second (silent) dispatcher makes tracing ask all, and
        // the rebuild fixes callsites registered before this test started.
        let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
        let _guard = tracing::subscriber::set_default(capture.clone());
        tracing::callsite::rebuild_interest_cache();

        let refused = Arc::new(AtomicUsize::new(0));
        let server = Server::start({
        let refused = refused.clone();
        let tokens = with_tokens(3600, flaky(vec![Reply::empty(401), Reply::empty(500)]));
        move |request| {
            if request.is_token() && refused.fetch_add(1, Ordering::SeqCst) == 0 {
                Reply::json(401, json!({"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value.\r\nTrace ID: 1\r\nCorrelation ID: 2"}))
            } else {
                tokens(request)
            }
        }
    })
    .await;
        let config = config(&server);
        let client = DataverseClient::new(config.clone()).unwrap();

        // A refused secret, then a token that the API refuses once, then a 500, then success.
        let refused_err = client.whoami().await.unwrap_err();
        assert!(
            matches!(refused_err, DataverseError::Unauthorized { .. }),
            "{refused_err:?}"
        );
        assert!(
            refused_err.to_string().contains("invalid_client"),
            "{refused_err}"
        );
        client.whoami().await.unwrap();
        assert!(server.token_requests() >= 3);

        let logs = capture.text.lock().unwrap().clone();
        assert!(
            logs.contains("dataverse_request"),
            "spans are recorded: {logs}"
        );
        assert!(logs.contains("entity_set=\"WhoAmI\""), "{logs}");
        let printed = [
            logs,
            format!("{config:?}"),
            format!("{client:?}"),
            format!("{refused_err:?}"),
            refused_err.to_string(),
        ];
        for text in printed {
            assert!(!text.contains(SECRET), "secret printed: {text}");
            assert!(
                !text.contains("token-1") && !text.contains("token-2"),
                "token printed: {text}"
            );
        }
    }
}

/// Dataverse allows a user 52 concurrent requests across the deployment; each client keeps to
/// its share (docs/architecture.md §4 "Concurrency").
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_never_has_more_requests_under_way_than_it_is_allowed() {
    let under_way = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (now, max) = (under_way.clone(), most.clone());
    let server = Server::start(with_tokens(3600, move |_| {
        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
        max.fetch_max(n, Ordering::SeqCst);
        // The mock answers on the runtime's threads: hold one for a moment.
        std::thread::sleep(Duration::from_millis(100));
        now.fetch_sub(1, Ordering::SeqCst);
        Reply::json(200, whoami_body())
    }))
    .await;
    let client = DataverseClient::new(DataverseConfig {
        max_concurrent_requests: 2,
        ..config(&server)
    })
    .unwrap();
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.whoami().await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(server.api_requests().len(), 8);
    assert!(
        most.load(Ordering::SeqCst) <= 2,
        "at most two under way, saw {}",
        most.load(Ordering::SeqCst)
    );
}
