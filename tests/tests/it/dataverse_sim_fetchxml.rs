//! FetchXML on the Dataverse simulator: paging cookies as ref/dataverse.md §4.3 describes them,
//! list-member joins, the operators dynamic lists use, and clear refusals of what is outside
//! the subset.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// Test names start with `dataverse::` so that `cargo test -p sandbox dataverse` selects them.
mod dataverse {
    use reqwest::Method;
    use sandbox::dataverse::{DataverseSim, DataverseSimConfig, WebApi};
    use serde_json::{Value, json};
    use std::collections::HashSet;

    const ANNOTATIONS: (&str, &str) = ("Prefer", "odata.include-annotations=\"*\"");

    fn enc(s: &str) -> String {
        url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
    }

    fn dec(s: &str) -> String {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .unwrap()
            .into_owned()
    }

    fn xml_escape(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    }

    async fn fetch(
        api: &WebApi,
        set: &str,
        xml: &str,
        headers: &[(&str, &str)],
    ) -> sandbox::dataverse::Reply {
        api.send(
            Method::GET,
            &format!("{set}?fetchXml={}", enc(xml)),
            headers,
            None,
        )
        .await
        .unwrap()
    }

    /// The `pagingcookie` attribute of the annotation, decoded twice as the docs say.
    fn paging_cookie(annotation: &str) -> String {
        let start = annotation.find("pagingcookie=\"").unwrap() + "pagingcookie=\"".len();
        let end = start + annotation[start..].find('"').unwrap();
        dec(&dec(&annotation[start..end]))
    }

    #[tokio::test]
    async fn a_paging_cookie_round_trip_pages_through_every_row_once_in_order() {
        let sim = DataverseSim::spawn(DataverseSimConfig::default())
            .await
            .unwrap();
        let account = sim
            .seed(
                "accounts",
                vec![json!({"name": "Parent"}).as_object().unwrap().clone()],
            )
            .unwrap()
            .remove(0);
        let rows = (0..25)
            .map(|i| {
                json!({
                    "firstname": format!("P{:02}", (i * 7) % 25),
                    "lastname": "(sample)",
                    "parentcustomerid_account@odata.bind": format!("/accounts({account})"),
                })
                .as_object()
                .unwrap()
                .clone()
            })
            .chain([json!({"firstname": "Other", "lastname": "x"})
                .as_object()
                .unwrap()
                .clone()])
            .collect();
        sim.seed("contacts", rows).unwrap();
        let api = WebApi::connector(&sim).await.unwrap();

        let query = |page: u32, cookie: Option<&str>| {
            let cookie = cookie
                .map(|c| format!(" paging-cookie=\"{}\"", xml_escape(c)))
                .unwrap_or_default();
            format!(
                r#"<fetch page="{page}" count="10" mapping="logical" output-format="xml-platform" version="1.0" distinct="false"{cookie}>
  <entity name="contact">
    <attribute name="fullname" />
    <attribute name="jobtitle" />
    <order descending="true" attribute="fullname" />
    <filter type="and">
      <condition value="%(sample)%" attribute="fullname" operator="like" />
      <condition value="{account}" attribute="parentcustomerid" operator="eq" />
    </filter>
  </entity>
</fetch>"#
            )
        };

        let mut names = Vec::new();
        let mut cookie: Option<String> = None;
        let mut page = 1;
        loop {
            let r = fetch(
                &api,
                "contacts",
                &query(page, cookie.as_deref()),
                &[ANNOTATIONS],
            )
            .await;
            assert_eq!(r.status, 200, "{}", r.text);
            let values = r.body["value"].as_array().unwrap();
            for v in values {
                assert!(v.get("jobtitle").is_none(), "null attributes are left out");
                assert!(v["contactid"].is_string());
                assert!(v["@odata.etag"].is_string());
                names.push(v["fullname"].as_str().unwrap().to_string());
            }
            match r
                .body
                .get("@Microsoft.Dynamics.CRM.fetchxmlpagingcookie")
                .and_then(|v| v.as_str())
            {
                Some(annotation) => {
                    assert_eq!(r.body["@Microsoft.Dynamics.CRM.morerecords"], true);
                    assert!(annotation.starts_with(&format!("<cookie pagenumber=\"{}\" pagingcookie=\"%253ccookie%2520page%253d%2522{page}%2522%253e", page + 1)), "{annotation}");
                    assert!(annotation.ends_with("\" istracking=\"False\" />"));
                    let inner = paging_cookie(annotation);
                    assert!(
                        inner.starts_with(&format!("<cookie page=\"{page}\"><fullname last=\"")),
                        "{inner}"
                    );
                    assert!(inner.contains("<contactid last=\"{"), "{inner}");
                    cookie = Some(inner);
                    page += 1;
                    // A row inserted between pages before the cookie's position is not served again.
                    if page == 2 {
                        let admin = WebApi::admin(&sim).await.unwrap();
                        admin
                        .create("contacts", &json!({"firstname": "Z", "lastname": "(sample)", "parentcustomerid_account@odata.bind": format!("/accounts({account})")}))
                        .await
                        .unwrap();
                    }
                }
                None => {
                    assert!(r.body.get("@Microsoft.Dynamics.CRM.morerecords").is_none());
                    break;
                }
            }
        }
        assert_eq!(page, 3);
        assert_eq!(names.len(), 25);
        let unique: HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), 25);
        let mut sorted = names.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(names, sorted, "pages continue the order");

        // Without the annotation preference there is no cookie, even with more rows.
        let r = fetch(&api, "contacts", &query(1, None), &[]).await;
        assert!(
            r.body
                .get("@Microsoft.Dynamics.CRM.fetchxmlpagingcookie")
                .is_none()
        );
        // Simple paging by page number works too.
        let r = fetch(&api, "contacts", &query(3, None), &[]).await;
        assert_eq!(r.body["value"].as_array().unwrap().len(), 6);
    }

    #[tokio::test]
    async fn list_members_are_found_with_a_listmember_join_and_non_members_with_an_outer_join() {
        let sim = DataverseSim::spawn(DataverseSimConfig::default())
            .await
            .unwrap();
        let api = WebApi::admin(&sim).await.unwrap();
        let mut ids = Vec::new();
        for (first, state, bulk) in [
            ("In1", 0, false),
            ("In2", 0, true),
            ("In3", 1, false),
            ("Out", 0, false),
        ] {
            ids.push(
            api.create("contacts", &json!({"firstname": first, "lastname": "M", "statecode": state, "donotbulkemail": bulk, "emailaddress1": format!("{first}@x.de")}))
                .await
                .unwrap(),
        );
        }
        let list = api
            .create("lists", &json!({"listname": "L", "createdfromcode": 2}))
            .await
            .unwrap();
        let members: Vec<Value> = ids[..3]
            .iter()
            .map(|c| json!({"@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": c}))
            .collect();
        assert_eq!(
            api.post(
                "AddListMembersList",
                &json!({"List": {"listid": list}, "Members": members})
            )
            .await
            .unwrap()
            .status,
            204
        );

        let joined = format!(
            r#"<fetch><entity name="contact"><attribute name="firstname"/><order attribute="firstname"/>
        <filter><condition attribute="statecode" operator="eq" value="0"/><condition attribute="donotbulkemail" operator="ne" value="1"/><condition attribute="emailaddress1" operator="not-null"/></filter>
        <link-entity name="listmember" from="entityid" to="contactid" visible="false" intersect="true" alias="lm">
          <attribute name="listid"/>
          <filter type="and"><condition attribute="listid" operator="eq" value="{{{}}}"/></filter>
        </link-entity></entity></fetch>"#,
            list.to_uppercase()
        );
        let r = fetch(&api, "contacts", &joined, &[ANNOTATIONS]).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let v = r.body["value"].as_array().unwrap();
        assert_eq!(v.len(), 1, "{}", r.text);
        assert_eq!(v[0]["firstname"], "In1");
        assert_eq!(v[0]["lm.listid"], list.as_str());
        assert_eq!(
            v[0]["lm.listid@Microsoft.Dynamics.CRM.lookuplogicalname"],
            "list"
        );

        let outside = format!(
            r#"<fetch><entity name="contact"><attribute name="firstname"/>
        <link-entity name="listmember" from="entityid" to="contactid" link-type="outer" alias="lm">
          <filter><condition attribute="listid" operator="eq" value="{list}"/></filter>
        </link-entity>
        <filter><condition entityname="lm" attribute="listmemberid" operator="null"/></filter></entity></fetch>"#
        );
        let r = fetch(&api, "contacts", &outside, &[]).await;
        let names: Vec<&str> = r.body["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["firstname"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Out"]);

        let in_values = format!(
            r#"<fetch><entity name="contact"><attribute name="firstname"/><order attribute="firstname" descending="true"/>
        <filter type="or"><condition attribute="contactid" operator="in"><value>{}</value><value>{}</value></condition>
        <filter type="and"><condition attribute="firstname" operator="begins-with" value="ou"/><condition attribute="statecode" operator="le" value="0"/></filter></filter>
        </entity></fetch>"#,
            ids[0], ids[2]
        );
        let r = fetch(&api, "contacts", &in_values, &[]).await;
        let names: Vec<&str> = r.body["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["firstname"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Out", "In3", "In1"]);
    }

    #[tokio::test]
    async fn date_operators_select_rows_relative_to_today() {
        let sim = DataverseSim::spawn(DataverseSimConfig::default())
            .await
            .unwrap();
        let now = chrono::Utc::now();
        let at = |days: i64| {
            (now - chrono::Duration::days(days)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        };
        let rows = [("Today", at(0)), ("Recent", at(2)), ("Old", at(40))]
            .into_iter()
            .map(|(name, date)| {
                json!({"firstname": name, "birthdate": date})
                    .as_object()
                    .unwrap()
                    .clone()
            })
            .collect();
        sim.seed("contacts", rows).unwrap();
        let api = WebApi::connector(&sim).await.unwrap();
        let names = |xml: String| {
            let api = api.clone();
            async move {
                let r = fetch(&api, "contacts", &xml, &[]).await;
                assert_eq!(r.status, 200, "{}", r.text);
                let mut n: Vec<String> = r.body["value"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v["firstname"].as_str().unwrap().to_string())
                    .collect();
                n.sort();
                n
            }
        };
        let q = |condition: &str| {
            format!(
                r#"<fetch><entity name="contact"><attribute name="firstname"/><filter>{condition}</filter></entity></fetch>"#
            )
        };
        assert_eq!(
            names(q(
                r#"<condition attribute="birthdate" operator="last-x-days" value="7"/>"#
            ))
            .await,
            ["Recent", "Today"]
        );
        assert_eq!(
            names(q(
                r#"<condition attribute="birthdate" operator="olderthan-x-days" value="30"/>"#
            ))
            .await,
            ["Old"]
        );
        assert_eq!(
            names(q(r#"<condition attribute="birthdate" operator="today"/>"#)).await,
            ["Today"]
        );
        assert_eq!(
            names(q(&format!(
                r#"<condition attribute="birthdate" operator="on-or-after" value="{}"/>"#,
                &at(3)[..10]
            )))
            .await,
            ["Recent", "Today"]
        );
        assert_eq!(
            names(q(&format!(
                r#"<condition attribute="birthdate" operator="on" value="{}"/>"#,
                &at(40)[..10]
            )))
            .await,
            ["Old"]
        );
        let r = fetch(
            &api,
            "contacts",
            &q(r#"<condition attribute="firstname" operator="today"/>"#),
            &[],
        )
        .await;
        assert_eq!(r.status, 400);
    }

    #[tokio::test]
    async fn fetchxml_outside_the_subset_is_refused_with_a_message_naming_it() {
        let sim = DataverseSim::spawn(DataverseSimConfig::default())
            .await
            .unwrap();
        let api = WebApi::connector(&sim).await.unwrap();
        let cases = [
            (
                r#"<fetch aggregate="true"><entity name="contact"><attribute name="contactid" aggregate="count" alias="n"/></entity></fetch>"#,
                "aggregate",
            ),
            (
                r#"<fetch><entity name="contact"><filter><condition attribute="createdon" operator="this-fiscal-year"/></filter></entity></fetch>"#,
                "'this-fiscal-year'",
            ),
            (
                r#"<fetch><entity name="contact"><attribute name="nosuchcolumn"/></entity></fetch>"#,
                "'nosuchcolumn'",
            ),
            (
                r#"<fetch count="5001"><entity name="contact"/></fetch>"#,
                "5001",
            ),
            (r#"<fetch><entity name="account"/></fetch>"#, "'account'"),
            (
                r#"<fetch><entity name="contact"><link-entity name="listmember"/></entity></fetch>"#,
                "'from'",
            ),
            (
                r#"<fetch><entity name="contact"><group/></entity></fetch>"#,
                "<group>",
            ),
            (r#"<fetch><entity name="contact">"#, "not valid FetchXML"),
            (
                r#"<fetch top="5" page="1"><entity name="contact"/></fetch>"#,
                "'top'",
            ),
        ];
        for (xml, needle) in cases {
            let r = fetch(&api, "contacts", xml, &[]).await;
            assert_eq!(r.status, 400, "{xml}: {}", r.text);
            let message = r.body["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(needle), "{xml}: {message}");
            assert!(r.body["error"]["code"].as_str().unwrap().starts_with("0x"));
        }
    }
}
