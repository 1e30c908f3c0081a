//! The architecture, checked on the source text (see docs/architecture.md, "Layers"):
//! - the use cases (`shared/src/usecases`) see ports and the domain, never an adapter, the
//!   adapters' schema names or a wire format;
//! - no import cycle between modules of `shared/src` (a module and its own sub-modules may
//!   refer to each other; modules on different branches may not go round in a circle).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, with its module path (`usecases::backflow::engine`).
fn modules(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(dir).unwrap_or(&path);
                let mut parts: Vec<String> = rel
                    .iter()
                    .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
                    .collect();
                if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                    parts.pop();
                }
                found.insert(parts.join("::"), path);
            }
        }
    }
    found
}

/// The code of a file without comments, string literals' contents and `#[cfg(test)]` modules
/// at the end (tests may reach anywhere).
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(at) => &text[..at],
        None => text,
    };
    let mut out = String::new();
    for line in text.lines() {
        let line = match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Expands `use a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim().trim_end_matches("::");
        let close = tree.rfind('}').filter(|c| *c > open).unwrap_or(tree.len());
        let inner = &tree[open + 1..close];
        let base = if head.is_empty() {
            prefix.to_string()
        } else if prefix.is_empty() {
            head.to_string()
        } else {
            format!("{prefix}::{head}")
        };
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&base, &inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&base, &inner[start..], out);
    } else if !tree.is_empty() {
        let item = tree.split(" as ").next().unwrap_or(tree).trim();
        out.push(if prefix.is_empty() {
            item.to_string()
        } else {
            format!("{prefix}::{item}")
        });
    }
}

/// Paths a module refers to: its `use` declarations and `crate::`/`super::` paths in code.
fn references(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut statement: Option<String> = None;
    for line in code.lines() {
        let trimmed = line.trim();
        if statement.is_none() {
            for start in ["use ", "pub use ", "pub(crate) use ", "pub(super) use "] {
                if let Some(rest) = trimmed.strip_prefix(start) {
                    statement = Some(rest.to_string());
                }
            }
        } else if let Some(s) = statement.as_mut() {
            s.push_str(trimmed);
        }
        if let Some(s) = statement.as_ref()
            && let Some(end) = s.find(';')
        {
            expand("", &s[..end], &mut paths);
            statement = None;
        }
    }
    for word in code.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')) {
        if word.starts_with("crate::") || word.starts_with("super::") {
            paths.push(word.trim_end_matches(':').to_string());
        }
    }
    paths
}

/// The module a path lands in: the longest known module prefix, after resolving `super`/`self`.
fn resolve(from: &str, path: &str, known: &BTreeSet<String>) -> Option<String> {
    let mut parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
    let mut base: Vec<&str> = from.split("::").filter(|p| !p.is_empty()).collect();
    // `super` is the parent module, whether the module is a file or a folder's `mod.rs`.
    base.pop();
    match parts.first().copied() {
        Some("crate") => {
            base.clear();
            parts.remove(0);
        }
        Some("super") => {
            parts.remove(0);
            while parts.first() == Some(&"super") {
                base.pop();
                parts.remove(0);
            }
        }
        Some("self") => {
            base = from.split("::").filter(|p| !p.is_empty()).collect();
            parts.remove(0);
        }
        _ => return None,
    }
    let mut full: Vec<&str> = base;
    full.extend(parts);
    (0..=full.len())
        .rev()
        .map(|n| full[..n].join("::"))
        .find(|m| known.contains(m) && !m.is_empty())
}

fn related(a: &str, b: &str) -> bool {
    a == b || a.starts_with(&format!("{b}::")) || b.starts_with(&format!("{a}::"))
}

#[test]
fn the_use_cases_see_ports_and_the_domain_but_no_adapter_schema_name_or_wire_format() {
    let forbidden = [
        "crate::adapters",
        "adapters::",
        "schema::",
        "DataverseCrm",
        "DataverseClient",
        "DataverseError",
        "CleverReachClient",
        "CleverReachError",
        "reqwest",
        "aws_",
        "lambda_",
        "json!(",
        "serde_json::Value",
        "serde_json::Map",
        "@odata",
    ];
    let mut found = Vec::new();
    for (module, path) in modules(&src()) {
        if !module.starts_with("usecases") || module.starts_with("usecases::tests") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let code = code(&text);
        for word in forbidden {
            if code.contains(word) {
                found.push(format!("{module}: {word}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the use cases reach past the ports: {found:#?}"
    );
}

#[test]
fn no_two_modules_of_shared_import_each_other_round_a_circle() {
    let files = modules(&src());
    let known: BTreeSet<String> = files.keys().cloned().collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, path) in &files {
        if module.contains("tests") {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for reference in references(&code(&text)) {
            if let Some(target) = resolve(module, &reference, &known)
                && !related(module, &target)
                && !target.contains("tests")
            {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    // Depth-first search for a back edge; report the circle.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut circle = stack[at..].to_vec();
            circle.push(node.to_string());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, edges, stack, done) {
                return Some(circle);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        let mut stack = Vec::new();
        if let Some(circle) = visit(node, &edges, &mut stack, &mut done) {
            panic!("import cycle: {}", circle.join(" → "));
        }
    }
    // The check sees the edges it should (it cannot pass by seeing nothing).
    assert!(
        edges
            .get("usecases::source")
            .is_some_and(|e| e.contains("usecases::people")),
        "the checker lost the edge usecases::source → usecases::people: {:?}",
        edges.get("usecases::source")
    );
}
