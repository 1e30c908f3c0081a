//! Mutated webhook bodies: whatever arrives, the parser answers with an event or an error, never
//! a panic, and what it accepts is normalised.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

// Grouped under `webhook` so that `cargo test -p shared webhook` selects these tests.
mod webhook {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::path::PathBuf;

    use fastrand::Rng;
    use serde_json::{Value, json};
    use shared::adapters::dataverse::webhook::parse_change_event;
    use shared::domain::change::ChangeEvent;

    /// Mutated bodies per run. Each iteration has its own seed (`SEED + iteration`), so a failure
    /// names the one body to replay.
    const ITERATIONS: u64 = 10_240;
    const SEED: u64 = 0x5EED_D47A_2024;

    struct Sample {
        /// The file as stored (pretty-printed, like the documentation's sample).
        pretty: Vec<u8>,
        /// Compact, as Dataverse sends it (and cheaper to parse in a debug build); the file
        /// itself when it is not JSON.
        compact: Vec<u8>,
        json: Option<Value>,
    }

    fn samples() -> Vec<Sample> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events/webhook-intake");
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|path| {
                let pretty = std::fs::read(path).unwrap();
                let json: Option<Value> = serde_json::from_slice(&pretty).ok();
                let compact = match &json {
                    Some(json) => serde_json::to_vec(json).unwrap(),
                    None => pretty.clone(),
                };
                Sample {
                    pretty,
                    compact,
                    json,
                }
            })
            .collect()
    }

    fn is_guid(text: &str) -> bool {
        text.len() == 36
            && text.char_indices().all(|(i, c)| {
                if [8, 13, 18, 23].contains(&i) {
                    c == '-'
                } else {
                    c.is_ascii_digit() || ('a'..='f').contains(&c)
                }
            })
    }

    /// What every accepted body must give: normalised ids, and nothing read from a cut body.
    fn check_accepted(event: &ChangeEvent, size_flag: bool) {
        assert!(is_guid(&event.record_id), "record id {:?}", event.record_id);
        // Dataverse's operation id, or one made from the change when the body had none.
        let content_id = event
            .operation_id
            .strip_prefix("content-")
            .is_some_and(|hex| {
                hex.len() == 48
                    && hex
                        .chars()
                        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
            });
        assert!(
            is_guid(&event.operation_id) || content_id,
            "operation id {:?}",
            event.operation_id
        );
        assert!(
            is_guid(&event.correlation_id),
            "correlation id {:?}",
            event.correlation_id
        );
        for id in [
            &event.user_id,
            &event.initiating_user_id,
            &event.organization_id,
        ] {
            assert!(id.is_empty() || is_guid(id), "user/org id {id:?}");
        }
        for related in &event.related {
            assert!(is_guid(&related.id), "related id {:?}", related.id);
        }
        if size_flag {
            assert!(event.size_exceeded);
        }
        if event.size_exceeded {
            assert!(event.target.is_empty() && event.related.is_empty());
            assert!(event.pre_image.is_none() && event.post_image.is_none());
        }
    }

    // ---- byte-level mutations -------------------------------------------------------------

    const INVALID_UTF8: &[&[u8]] = &[
        b"\xFF",
        b"\xC3",
        b"\x80",
        b"\xC3\x28",
        b"\xED\xA0\x80",
        b"\xF8\x88\x80\x80\x80",
        b"\xEF\xBB",
    ];
    const STRUCTURAL: &[u8] = b"{}[],:\"\\ 0-e.tnf/";

    fn mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>, other: &[u8]) {
        let at = |rng: &mut Rng, len: usize| rng.usize(..=len);
        match rng.u8(..9) {
            0 => {
                if !bytes.is_empty() {
                    let i = rng.usize(..bytes.len());
                    bytes[i] ^= 1 << rng.u8(..8);
                }
            }
            1 => {
                let i = at(rng, bytes.len());
                let extra: Vec<u8> = (0..rng.usize(1..=8)).map(|_| rng.u8(..)).collect();
                bytes.splice(i..i, extra);
            }
            2 => {
                let i = at(rng, bytes.len());
                let end = (i + rng.usize(1..=64)).min(bytes.len());
                bytes.drain(i..end);
            }
            3 => bytes.truncate(at(rng, bytes.len())),
            4 => {
                let cut = at(rng, bytes.len());
                let from = at(rng, other.len());
                bytes.truncate(cut);
                bytes.extend_from_slice(&other[from..]);
            }
            5 => {
                let i = at(rng, bytes.len());
                let bad = INVALID_UTF8[rng.usize(..INVALID_UTF8.len())];
                bytes.splice(i..i, bad.iter().copied());
            }
            6 => {
                if !bytes.is_empty() {
                    let i = rng.usize(..bytes.len());
                    bytes[i] = STRUCTURAL[rng.usize(..STRUCTURAL.len())];
                }
            }
            7 => {
                let start = at(rng, bytes.len());
                let end = (start + rng.usize(1..=200)).min(bytes.len());
                let chunk = bytes[start..end].to_vec();
                let i = at(rng, bytes.len());
                bytes.splice(i..i, chunk);
            }
            _ => {
                let mut with_bom = b"\xEF\xBB\xBF".to_vec();
                with_bom.append(bytes);
                *bytes = with_bom;
            }
        }
    }

    // ---- JSON-level mutations -------------------------------------------------------------

    const TOP_LEVEL: &[&str] = &[
        "MessageName",
        "PrimaryEntityName",
        "PrimaryEntityId",
        "OperationId",
        "CorrelationId",
        "UserId",
        "InitiatingUserId",
        "OrganizationId",
        "OrganizationName",
        "OperationCreatedOn",
        "Depth",
        "InputParameters",
        "PreEntityImages",
        "PostEntityImages",
        "SharedVariables",
        "ParentContext",
    ];
    const MESSAGES: &[&str] = &[
        "Create",
        "Update",
        "Delete",
        "AddMember",
        "AddListMembers",
        "RemoveMember",
        "AddItem",
        "RemoveItem",
        "Associate",
        "Disassociate",
        "SetState",
        "",
    ];
    const BAD_GUIDS: &[&str] = &[
        "",
        "xyz",
        "00000000-0000-0000-0000-000000000000",
        "6d81597f-0f9f-e711-8122-000d3aa2331",
        "6d81597f-0f9f-e711-8122-000d3aa2331cc",
        "{6D81597F-0F9F-E711-8122-000D3AA2331C}",
        "6d81597g-0f9f-e711-8122-000d3aa2331c",
        "6d81597f0f9fe7118122000d3aa2331c",
        "{6d81597f-0f9f-e711-8122-000d3aa2331c",
        "6d81597f-0f9f-e711-8122-000d3aa2331ü",
    ];
    const DATES: &[&str] = &[
        "/Date(99999999999999999999)/",
        "/Date(-9223372036854775808)/",
        "/Date(9223372036854775807+9999)/",
        "/Date()/",
        "/Date(-)/",
        "/Date(1+)/",
        "/Date(1506409448000-07)/",
        "\\/Date(1506409448000)\\/",
    ];

    fn huge_number(rng: &mut Rng) -> Value {
        match rng.u8(..6) {
            0 => json!(u64::MAX),
            1 => json!(i64::MIN),
            2 => json!(1e308),
            3 => json!(-1.7976931348623157e308),
            4 => json!(f64::MIN_POSITIVE),
            _ => json!(rng.i64(..)),
        }
    }

    fn deep_nesting(rng: &mut Rng) -> Value {
        // Built by hand: `json!` would copy the inner value at every level.
        let mut value = json!("bottom");
        for level in 0..rng.usize(10..=300) {
            value = if level % 2 == 0 {
                Value::Array(vec![value])
            } else {
                let mut object = serde_json::Map::new();
                object.insert(
                    "__type".into(),
                    json!("OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts"),
                );
                object.insert("Value".into(), value);
                Value::Object(object)
            };
        }
        value
    }

    fn any_value(rng: &mut Rng) -> Value {
        match rng.u8(..12) {
            0 => Value::Null,
            1 => json!(rng.bool()),
            2 => json!(rng.i64(-5..5)),
            3 => json!(2.5),
            4 => json!("text ü\u{0}\u{FFFF}😀"),
            5 => json!([]),
            6 => json!({}),
            7 => json!({"key": 5}),
            8 => json!([{"value": 1}, 7, null]),
            9 => {
                json!({"__type": "EntityReference:http://x", "Id": BAD_GUIDS[rng.usize(..BAD_GUIDS.len())], "LogicalName": 3})
            }
            10 => json!({"__type": "Money:http://x", "Value": "12"}),
            _ => json!({"__type": "Unknown:#Some.Namespace", "Whatever": [1, {"a": null}]}),
        }
    }

    /// A random node: descends into containers most of the time.
    fn random_node<'a>(value: &'a mut Value, rng: &mut Rng) -> &'a mut Value {
        let len = match value {
            Value::Object(map) => map.len(),
            Value::Array(items) => items.len(),
            _ => 0,
        };
        if len == 0 || rng.u8(..10) == 0 {
            return value;
        }
        let index = rng.usize(..len);
        match value {
            Value::Object(map) => random_node(map.values_mut().nth(index).unwrap(), rng),
            Value::Array(items) => random_node(&mut items[index], rng),
            _ => unreachable!("len > 0 only for containers"),
        }
    }

    /// Where the parser decodes values: parameters and images.
    const PAYLOAD: &[&str] = &["InputParameters", "PreEntityImages", "PostEntityImages"];

    fn mutate_json(rng: &mut Rng, root: &mut Value) {
        let payload = PAYLOAD[rng.usize(..PAYLOAD.len())];
        let node = if rng.bool() && root.get(payload).is_some() {
            random_node(&mut root[payload], rng)
        } else if rng.bool() {
            random_node(root, rng)
        } else {
            let key = TOP_LEVEL[rng.usize(..TOP_LEVEL.len())];
            if root.is_object() {
                root.as_object_mut()
                    .unwrap()
                    .entry(key)
                    .or_insert(Value::Null)
            } else {
                &mut *root
            }
        };
        match rng.u8(..9) {
            0 => match node {
                Value::Object(map) if !map.is_empty() => {
                    let key = map.keys().nth(rng.usize(..map.len())).unwrap().clone();
                    map.remove(&key);
                }
                Value::Array(items) if !items.is_empty() => {
                    items.remove(rng.usize(..items.len()));
                }
                other => *other = Value::Null,
            },
            1 => *node = any_value(rng),
            2 => *node = deep_nesting(rng),
            3 => *node = huge_number(rng),
            4 => *node = json!(BAD_GUIDS[rng.usize(..BAD_GUIDS.len())]),
            5 => *node = json!(DATES[rng.usize(..DATES.len())]),
            6 => {
                if let Some(object) = root.as_object_mut() {
                    object.insert(
                        "MessageName".into(),
                        json!(MESSAGES[rng.usize(..MESSAGES.len())]),
                    );
                }
            }
            7 => {
                if let Value::Array(items) = node
                    && let Some(first) = items.first().cloned()
                {
                    items.push(first);
                }
            }
            _ => {
                // Moves the sample's own values around: a GUID where a date belongs, etc.
                let replacement = random_node(root, rng).clone();
                *random_node(root, rng) = replacement;
            }
        }
    }

    fn mutated_body(rng: &mut Rng, samples: &[Sample]) -> Vec<u8> {
        let sample = &samples[rng.usize(..samples.len())];
        let json_level = sample.json.is_some() && rng.bool();
        if let (true, Some(json)) = (json_level, &sample.json) {
            let mut value = json.clone();
            for _ in 0..rng.usize(1..=3) {
                mutate_json(rng, &mut value);
            }
            serde_json::to_vec(&value).unwrap()
        } else {
            let mut bytes = if rng.u8(..4) == 0 {
                sample.pretty.clone()
            } else {
                sample.compact.clone()
            };
            let other = &samples[rng.usize(..samples.len())].compact;
            for _ in 0..rng.usize(1..=3) {
                mutate_bytes(rng, &mut bytes, other);
            }
            bytes
        }
    }

    #[test]
    fn mutated_bodies_are_parsed_or_refused_but_never_crash_the_parser() {
        let samples = samples();
        assert!(samples.len() >= 15, "samples missing");
        let (mut parsed, mut refused) = (0u64, 0u64);
        for iteration in 0..ITERATIONS {
            let mut rng = Rng::with_seed(SEED + iteration);
            let body = mutated_body(&mut rng, &samples);
            let size_flag = rng.u8(..8) == 0;
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                match parse_change_event(&body, size_flag) {
                    Ok(event) => {
                        check_accepted(&event, size_flag);
                        true
                    }
                    Err(err) => {
                        assert!(!err.to_string().is_empty());
                        false
                    }
                }
            }));
            match outcome {
                Ok(true) => parsed += 1,
                Ok(false) => refused += 1,
                Err(_) => panic!(
                    "iteration {iteration} (seed {}) failed on: {}",
                    SEED + iteration,
                    String::from_utf8_lossy(&body[..body.len().min(2000)])
                ),
            }
        }
        eprintln!("{ITERATIONS} mutated bodies: {parsed} parsed, {refused} refused");
        assert_eq!(parsed + refused, ITERATIONS);
        assert!(
            parsed > 0,
            "no mutated body parsed: the mutations are too coarse"
        );
        assert!(
            refused > 0,
            "no mutated body refused: the mutations do nothing"
        );
    }
}
