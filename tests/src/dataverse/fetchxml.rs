//! The FetchXML subset of `GET <set>?fetchXml=…`: attributes, orders, nested and/or filters
//! with the common condition operators, link-entities (inner, outer, exists, not any) with their
//! own filters, `distinct`, `top`, and paging with `page`/`count` and paging cookies, answering
//! with the `fetchxmlpagingcookie`/`morerecords` annotations as ref/dataverse.md §4.3 describes.
//! Anything outside the subset is a 400 naming the element, attribute or operator.

use super::api::{self, ApiRequest, ApiResponse, Ctx, MAX_PAGE};
use super::catalog::Catalog;
use super::error::{ApiError, code};
use super::query::{
    self, FORMATTED, LOOKUPLOGICALNAME, MORERECORDS, OrderKey, PAGINGCOOKIE, Prefer, TOTALCOUNT,
    TOTALCOUNTEXCEEDED,
};
use super::schema::{Access, Column, Kind, Table};
use super::store::{Row, Store, Val, cmp_vals};
use super::xml::{self, Element};
use axum::http::StatusCode;
use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

fn err(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(code::FETCHXML, message)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Like,
    NotLike,
    In,
    NotIn,
    Null,
    NotNull,
    BeginsWith,
    NotBeginWith,
    EndsWith,
    NotEndWith,
    Between,
    NotBetween,
    EqUserId,
    NeUserId,
    /// Date operators: compare the UTC date, or a window relative to now.
    On,
    OnOrBefore,
    OnOrAfter,
    Today,
    Yesterday,
    LastXHours,
    LastXDays,
    NextXDays,
    OlderThanXDays,
}

fn op(name: &str) -> Result<Op, ApiError> {
    Ok(match name {
        "eq" => Op::Eq,
        "ne" | "neq" => Op::Ne,
        "gt" => Op::Gt,
        "ge" => Op::Ge,
        "lt" => Op::Lt,
        "le" => Op::Le,
        "like" => Op::Like,
        "not-like" => Op::NotLike,
        "in" => Op::In,
        "not-in" => Op::NotIn,
        "null" => Op::Null,
        "not-null" => Op::NotNull,
        "begins-with" => Op::BeginsWith,
        "not-begin-with" => Op::NotBeginWith,
        "ends-with" => Op::EndsWith,
        "not-end-with" => Op::NotEndWith,
        "between" => Op::Between,
        "not-between" => Op::NotBetween,
        "eq-userid" => Op::EqUserId,
        "ne-userid" => Op::NeUserId,
        "on" => Op::On,
        "on-or-before" => Op::OnOrBefore,
        "on-or-after" => Op::OnOrAfter,
        "today" => Op::Today,
        "yesterday" => Op::Yesterday,
        "last-x-hours" => Op::LastXHours,
        "last-x-days" => Op::LastXDays,
        "next-x-days" => Op::NextXDays,
        "olderthan-x-days" => Op::OlderThanXDays,
        other => {
            return Err(err(format!(
                "The condition operator '{other}' is not supported by the sandbox."
            )));
        }
    })
}

#[derive(Debug, Clone)]
enum Cond {
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Leaf {
        idx: usize,
        column: &'static Column,
        op: Op,
        values: Vec<Val>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkKind {
    Inner,
    Outer,
    Exists,
    NotAny,
}

#[derive(Debug, Clone)]
enum Attrs {
    All,
    List(Vec<(&'static Column, String)>),
}

#[derive(Debug, Clone)]
struct Node {
    idx: usize,
    table: &'static Table,
    alias: String,
    attrs: Attrs,
    filters: Vec<Cond>,
    links: Vec<Link>,
}

#[derive(Debug, Clone)]
struct Link {
    node: Node,
    from: &'static Column,
    to: &'static Column,
    kind: LinkKind,
}

#[derive(Debug)]
struct Fetch {
    root: Node,
    entities: usize,
    orders: Vec<OrderKey>,
    page: u32,
    count: usize,
    cookie: Option<String>,
    top: Option<usize>,
    distinct: bool,
    total_count: bool,
}

fn attribute(table: &Table, name: &str) -> Result<&'static Column, ApiError> {
    match table.column(name) {
        Some(c) if c.access != Access::WriteOnly => Ok(c),
        _ => Err(err(format!(
            "'{}' entity doesn't contain attribute with Name = '{name}' and NameMapping = 'Logical'.",
            capitalize(table.logical)
        ))),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn need<'e>(el: &'e Element, attr: &str) -> Result<&'e str, ApiError> {
    el.attr(attr).ok_or_else(|| {
        err(format!(
            "The <{}> element needs a '{attr}' attribute.",
            el.name
        ))
    })
}

/// Pass 1: numbers link-entities depth-first and records their aliases.
fn number_links(
    catalog: &Catalog,
    el: &Element,
    out: &mut Vec<(String, &'static Table)>,
) -> Result<(), ApiError> {
    for child in &el.children {
        if child.name == "link-entity" {
            let name = need(child, "name")?;
            let table = catalog.table(name).ok_or_else(|| {
                err(format!(
                    "The entity '{name}' in <link-entity> is not known to the sandbox."
                ))
            })?;
            let idx = out.len() + 1;
            let alias = child
                .attr("alias")
                .map(str::to_string)
                .unwrap_or_else(|| format!("{name}{idx}"));
            out.push((alias, table));
            number_links(catalog, child, out)?;
        }
    }
    Ok(())
}

struct Parser<'a> {
    /// Index → (alias, table); index 0 is the primary entity.
    entities: Vec<(String, &'static Table)>,
    next: usize,
    user: Uuid,
    _p: std::marker::PhantomData<&'a ()>,
}

impl Parser<'_> {
    fn node(&mut self, el: &Element, idx: usize) -> Result<(Node, Vec<OrderKey>), ApiError> {
        let (alias, table) = self.entities[idx].clone();
        let mut attrs: Option<Attrs> = None;
        let mut filters = Vec::new();
        let mut links = Vec::new();
        let mut orders = Vec::new();
        for child in &el.children {
            match child.name.as_str() {
                "all-attributes" => attrs = Some(Attrs::All),
                "attribute" => {
                    if child.attr("aggregate").is_some() || child.attr("groupby").is_some() {
                        return Err(err(
                            "Aggregate attributes (aggregate, groupby) are not supported by the sandbox.",
                        ));
                    }
                    let name = need(child, "name")?;
                    let column = attribute(table, name)?;
                    let out = child.attr("alias").unwrap_or(name).to_string();
                    match &mut attrs {
                        Some(Attrs::All) => {}
                        Some(Attrs::List(list)) => list.push((column, out)),
                        None => attrs = Some(Attrs::List(vec![(column, out)])),
                    }
                }
                "order" => {
                    if idx != 0 {
                        return Err(err(
                            "<order> inside <link-entity> is not supported by the sandbox.",
                        ));
                    }
                    if child.attr("alias").is_some() {
                        return Err(err("<order alias=…> is not supported by the sandbox."));
                    }
                    let name = need(child, "attribute")?;
                    let descending = matches!(child.attr("descending"), Some("true") | Some("1"));
                    orders.push(OrderKey {
                        column: attribute(table, name)?,
                        descending,
                    });
                }
                "filter" => filters.push(self.filter(child, idx)?),
                "link-entity" => {
                    self.next += 1;
                    let link_idx = self.next;
                    let (node, _) = self.node(child, link_idx)?;
                    let from = attribute(node.table, child.attr("from").ok_or_else(|| {
                        err("<link-entity> without 'from' is not supported by the sandbox; name the join columns.")
                    })?)?;
                    let to = attribute(
                        table,
                        child.attr("to").ok_or_else(|| {
                            err("<link-entity> without 'to' is not supported by the sandbox; name the join columns.")
                        })?,
                    )?;
                    let kind = match child.attr("link-type").unwrap_or("inner") {
                        "inner" => LinkKind::Inner,
                        "outer" => LinkKind::Outer,
                        "exists" | "in" | "any" | "matchfirstrowusingcrossapply" => {
                            LinkKind::Exists
                        }
                        "not any" => LinkKind::NotAny,
                        other => {
                            return Err(err(format!(
                                "The link-type '{other}' is not supported by the sandbox."
                            )));
                        }
                    };
                    links.push(Link {
                        node,
                        from,
                        to,
                        kind,
                    });
                }
                other => {
                    return Err(err(format!(
                        "The element <{other}> inside <{}> is not supported by the sandbox.",
                        el.name
                    )));
                }
            }
        }
        // The primary entity returns all attributes when none are listed; links none.
        let attrs = attrs.unwrap_or(if idx == 0 {
            Attrs::All
        } else {
            Attrs::List(Vec::new())
        });
        Ok((
            Node {
                idx,
                table,
                alias,
                attrs,
                filters,
                links,
            },
            orders,
        ))
    }

    fn filter(&self, el: &Element, idx: usize) -> Result<Cond, ApiError> {
        let mut parts = Vec::new();
        for child in &el.children {
            match child.name.as_str() {
                "condition" => parts.push(self.condition(child, idx)?),
                "filter" => parts.push(self.filter(child, idx)?),
                other => {
                    return Err(err(format!(
                        "The element <{other}> inside <filter> is not supported by the sandbox."
                    )));
                }
            }
        }
        match el.attr("type").unwrap_or("and") {
            "and" => Ok(Cond::And(parts)),
            "or" => Ok(Cond::Or(parts)),
            other => Err(err(format!(
                "The filter type '{other}' is not valid; use 'and' or 'or'."
            ))),
        }
    }

    fn condition(&self, el: &Element, idx: usize) -> Result<Cond, ApiError> {
        if el.attr("valueof").is_some() {
            return Err(err(
                "Column comparisons (valueof) are not supported by the sandbox.",
            ));
        }
        let idx = match el.attr("entityname") {
            None => idx,
            Some(name) => self
                .entities
                .iter()
                .position(|(alias, _)| alias == name)
                .ok_or_else(|| {
                    err(format!(
                        "The entityname '{name}' in a <condition> names no link-entity alias."
                    ))
                })?,
        };
        let table = self.entities[idx].1;
        let column = attribute(table, need(el, "attribute")?)?;
        let op = op(need(el, "operator")?)?;
        let mut texts: Vec<String> = el
            .children
            .iter()
            .filter(|c| c.name == "value")
            .map(|c| c.text.clone())
            .collect();
        if let Some(v) = el.attr("value") {
            texts.insert(0, v.to_string());
        }
        let arity_ok = match op {
            Op::Null | Op::NotNull | Op::EqUserId | Op::NeUserId | Op::Today | Op::Yesterday => {
                true
            }
            Op::In | Op::NotIn => !texts.is_empty(),
            Op::Between | Op::NotBetween => texts.len() == 2,
            _ => texts.len() == 1,
        };
        if !arity_ok {
            return Err(err(format!(
                "The condition on '{}' with operator '{}' has {} value(s), which does not fit the operator.",
                column.name,
                need(el, "operator")?,
                texts.len()
            )));
        }
        let textual = matches!(
            op,
            Op::Like
                | Op::NotLike
                | Op::BeginsWith
                | Op::NotBeginWith
                | Op::EndsWith
                | Op::NotEndWith
        );
        if textual && !matches!(column.kind, Kind::Str(_) | Kind::EntityName) {
            return Err(err(format!(
                "The operator '{}' needs a text attribute; '{}' is not one.",
                need(el, "operator")?,
                column.name
            )));
        }
        let dated = matches!(
            op,
            Op::On
                | Op::OnOrBefore
                | Op::OnOrAfter
                | Op::Today
                | Op::Yesterday
                | Op::LastXHours
                | Op::LastXDays
                | Op::NextXDays
                | Op::OlderThanXDays
        );
        if dated && !matches!(column.kind, Kind::DateTime) {
            return Err(err(format!(
                "The operator '{}' needs a date and time attribute; '{}' is not one.",
                need(el, "operator")?,
                column.name
            )));
        }
        let counted = matches!(
            op,
            Op::LastXHours | Op::LastXDays | Op::NextXDays | Op::OlderThanXDays
        );
        let mut values = Vec::new();
        if counted {
            for t in &texts {
                let n = t.trim().parse::<i64>().map_err(|_| {
                    err(format!(
                        "Invalid condition value: '{t}' is not a whole number."
                    ))
                })?;
                values.push(Val::Int(n));
            }
        } else if matches!(op, Op::EqUserId | Op::NeUserId) {
            values.push(Val::Guid(self.user));
        } else if !matches!(op, Op::Null | Op::NotNull) {
            for t in &texts {
                let v = if textual {
                    Val::Str(t.clone())
                } else {
                    Val::parse_text(column, t)
                        .map_err(|e| err(format!("Invalid condition value: {e}.")))?
                };
                values.push(v);
            }
        }
        Ok(Cond::Leaf {
            idx,
            column,
            op,
            values,
        })
    }
}

fn parse(
    catalog: &Catalog,
    root: &Element,
    table: &'static Table,
    user: Uuid,
    max_page: usize,
) -> Result<Fetch, ApiError> {
    if root.name != "fetch" {
        return Err(err(format!(
            "The FetchXML root element is <{}>, not <fetch>.",
            root.name
        )));
    }
    for (k, v) in &root.attrs {
        match k.as_str() {
            "version"
            | "mapping"
            | "output-format"
            | "no-lock"
            | "page"
            | "count"
            | "paging-cookie"
            | "distinct"
            | "top"
            | "returntotalrecordcount"
            | "latematerialize"
            | "useraworderby" => {}
            "aggregate" if v == "false" => {}
            other => {
                return Err(err(format!(
                    "The <fetch> attribute '{other}' is not supported by the sandbox."
                )));
            }
        }
    }
    let entity_el = match root.children.as_slice() {
        [e] if e.name == "entity" => e,
        _ => return Err(err("<fetch> must contain exactly one <entity>.")),
    };
    let name = need(entity_el, "name")?;
    if name != table.logical {
        return Err(err(format!(
            "The entity '{name}' in the FetchXML does not match the entity set '{}' of the request.",
            table.set
        )));
    }
    let mut entities = vec![(table.logical.to_string(), table)];
    number_links(catalog, entity_el, &mut entities)?;
    let mut parser = Parser {
        entities,
        next: 0,
        user,
        _p: std::marker::PhantomData,
    };
    let (root_node, orders) = parser.node(entity_el, 0)?;
    let number = |name: &str| -> Result<Option<usize>, ApiError> {
        root.attr(name)
            .map(|v| {
                v.trim().parse::<usize>().map_err(|_| {
                    err(format!(
                        "The <fetch> attribute {name}=\"{v}\" is not a number."
                    ))
                })
            })
            .transpose()
    };
    let count = number("count")?;
    let page = number("page")?;
    let top = number("top")?;
    if top.is_some() && (count.is_some() || page.is_some()) {
        return Err(err(
            "The 'top' attribute can't be used together with 'page' or 'count'.",
        ));
    }
    if let Some(c) = count
        && (c == 0 || c > max_page)
    {
        return Err(err(format!(
            "The 'count' attribute must be between 1 and {max_page}; it is {c}."
        )));
    }
    if let Some(t) = top
        && t > max_page
    {
        return Err(err(format!(
            "The 'top' attribute must not exceed {max_page}; it is {t}."
        )));
    }
    let page = page.unwrap_or(1);
    if page == 0 {
        return Err(err("The 'page' attribute must be 1 or more."));
    }
    Ok(Fetch {
        entities: parser.entities.len(),
        root: root_node,
        orders,
        page: u32::try_from(page).map_err(|_| err("The 'page' attribute is too large."))?,
        count: count.unwrap_or(max_page),
        cookie: root
            .attr("paging-cookie")
            .filter(|c| !c.trim().is_empty())
            .map(str::to_string),
        top,
        distinct: matches!(root.attr("distinct"), Some("true") | Some("1")),
        total_count: matches!(
            root.attr("returntotalrecordcount"),
            Some("true") | Some("1")
        ),
    })
}

// --- execution -----------------------------------------------------------------------------

type Tuple<'s> = Vec<Option<(&'s Uuid, &'s Row)>>;

fn join_key(v: &Val) -> String {
    match v.guid() {
        Some(g) => g.to_string(),
        None => v.to_text().to_lowercase(),
    }
}

fn like(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    // dp[j]: pattern[..i] matches text[..j]
    let mut dp = vec![false; t.len() + 1];
    dp[0] = true;
    for pc in &p {
        let mut next = vec![false; t.len() + 1];
        match pc {
            '%' => {
                let mut any = false;
                for j in 0..=t.len() {
                    any = any || dp[j];
                    next[j] = any;
                }
            }
            c => {
                for j in 1..=t.len() {
                    next[j] = dp[j - 1] && (*c == '_' || t[j - 1] == *c);
                }
            }
        }
        dp = next;
    }
    dp[t.len()]
}

fn eval(cond: &Cond, tuple: &Tuple<'_>) -> bool {
    match cond {
        Cond::And(parts) => parts.iter().all(|c| eval(c, tuple)),
        Cond::Or(parts) => parts.is_empty() || parts.iter().any(|c| eval(c, tuple)),
        Cond::Leaf {
            idx,
            column,
            op,
            values,
        } => {
            let v = tuple
                .get(*idx)
                .copied()
                .flatten()
                .and_then(|(_, r)| r.get(column.name));
            let eq = |x: &Val| v.is_some_and(|v| cmp_vals(v, x) == Ordering::Equal);
            let text = || v.and_then(|v| v.as_str()).unwrap_or_default().to_string();
            let first = values.first();
            let date = || match v {
                Some(Val::Date(d)) => Some(*d),
                _ => None,
            };
            let now = chrono::Utc::now();
            let day = |d: chrono::DateTime<chrono::Utc>| d.date_naive();
            let given_day = || match first {
                Some(Val::Date(d)) => Some(d.date_naive()),
                _ => None,
            };
            let count = first.and_then(|x| x.as_int()).unwrap_or(0);
            match op {
                Op::On => date().zip(given_day()).is_some_and(|(d, g)| day(d) == g),
                Op::OnOrBefore => date().zip(given_day()).is_some_and(|(d, g)| day(d) <= g),
                Op::OnOrAfter => date().zip(given_day()).is_some_and(|(d, g)| day(d) >= g),
                Op::Today => date().is_some_and(|d| day(d) == day(now)),
                Op::Yesterday => {
                    date().is_some_and(|d| day(d) == day(now - chrono::Duration::days(1)))
                }
                Op::LastXHours => {
                    date().is_some_and(|d| d <= now && d >= now - chrono::Duration::hours(count))
                }
                Op::LastXDays => date().is_some_and(|d| {
                    d <= now && day(d) >= day(now - chrono::Duration::days(count))
                }),
                Op::NextXDays => date().is_some_and(|d| {
                    d >= now && day(d) <= day(now + chrono::Duration::days(count))
                }),
                Op::OlderThanXDays => {
                    date().is_some_and(|d| d < now - chrono::Duration::days(count))
                }
                Op::Null => v.is_none(),
                Op::NotNull => v.is_some(),
                Op::Eq | Op::EqUserId => first.is_some_and(eq),
                Op::Ne | Op::NeUserId => v.is_some() && !first.is_some_and(eq),
                Op::Gt | Op::Ge | Op::Lt | Op::Le => match (v, first) {
                    (Some(v), Some(x)) => {
                        let o = cmp_vals(v, x);
                        match op {
                            Op::Gt => o == Ordering::Greater,
                            Op::Ge => o != Ordering::Less,
                            Op::Lt => o == Ordering::Less,
                            _ => o != Ordering::Greater,
                        }
                    }
                    _ => false,
                },
                Op::In => values.iter().any(eq),
                Op::NotIn => v.is_some() && !values.iter().any(eq),
                Op::Between | Op::NotBetween => match (v, values.first(), values.get(1)) {
                    (Some(v), Some(a), Some(b)) => {
                        let inside =
                            cmp_vals(v, a) != Ordering::Less && cmp_vals(v, b) != Ordering::Greater;
                        if *op == Op::Between { inside } else { !inside }
                    }
                    _ => false,
                },
                Op::Like
                | Op::NotLike
                | Op::BeginsWith
                | Op::NotBeginWith
                | Op::EndsWith
                | Op::NotEndWith => {
                    if v.is_none() {
                        return false;
                    }
                    let needle = first.and_then(|x| x.as_str()).unwrap_or_default();
                    let pattern = match op {
                        Op::BeginsWith | Op::NotBeginWith => format!("{needle}%"),
                        Op::EndsWith | Op::NotEndWith => format!("%{needle}"),
                        _ => needle.to_string(),
                    };
                    let m = like(&text(), &pattern);
                    if matches!(op, Op::Like | Op::BeginsWith | Op::EndsWith) {
                        m
                    } else {
                        !m
                    }
                }
            }
        }
    }
}

/// Applies a node's links to tuples whose `node.idx` entry is set.
fn apply_links<'s>(store: &'s Store, node: &Node, tuples: Vec<Tuple<'s>>) -> Vec<Tuple<'s>> {
    let mut tuples = tuples;
    for link in &node.links {
        // Index the linked rows that pass the link's own filters by their join value.
        let mut index: HashMap<String, Vec<(&'s Uuid, &'s Row)>> = HashMap::new();
        let width = tuples.first().map(|t| t.len()).unwrap_or(0);
        for (id, row) in store.table_rows(link.node.table.logical) {
            let mut probe: Tuple<'s> = vec![None; width];
            if let Some(slot) = probe.get_mut(link.node.idx) {
                *slot = Some((id, row));
            }
            if !link.node.filters.iter().all(|f| eval(f, &probe)) {
                continue;
            }
            if let Some(v) = row.get(link.from.name) {
                index.entry(join_key(v)).or_default().push((id, row));
            }
        }
        let mut out = Vec::new();
        for tuple in tuples {
            let parent = tuple.get(node.idx).copied().flatten();
            let matches: Vec<(&'s Uuid, &'s Row)> = parent
                .and_then(|(_, r)| r.get(link.to.name))
                .and_then(|v| index.get(&join_key(v)))
                .cloned()
                .unwrap_or_default();
            let candidates: Vec<Tuple<'s>> = matches
                .iter()
                .map(|m| {
                    let mut t = tuple.clone();
                    if let Some(slot) = t.get_mut(link.node.idx) {
                        *slot = Some(*m);
                    }
                    t
                })
                .collect();
            let joined = apply_links(store, &link.node, candidates);
            match link.kind {
                LinkKind::Inner => out.extend(joined),
                LinkKind::Outer => {
                    if joined.is_empty() {
                        out.push(tuple);
                    } else {
                        out.extend(joined);
                    }
                }
                LinkKind::Exists => {
                    if !joined.is_empty() {
                        out.push(tuple);
                    }
                }
                LinkKind::NotAny => {
                    if joined.is_empty() {
                        out.push(tuple);
                    }
                }
            }
        }
        tuples = out;
    }
    tuples
}

fn all_nodes<'n>(node: &'n Node, out: &mut Vec<&'n Node>) {
    out.push(node);
    for l in &node.links {
        all_nodes(&l.node, out);
    }
}

fn render(store: &Store, fetch: &Fetch, tuple: &Tuple<'_>, prefer: &Prefer) -> Map<String, Value> {
    let mut out = Map::new();
    let mut nodes = Vec::new();
    all_nodes(&fetch.root, &mut nodes);
    for node in nodes {
        let Some((_, row)) = tuple.get(node.idx).copied().flatten() else {
            continue;
        };
        let primary = node.idx == 0;
        if primary {
            out.insert("@odata.etag".into(), Value::String(api::etag(row)));
        }
        let mut columns: Vec<(&'static Column, String)> = match &node.attrs {
            Attrs::All => node
                .table
                .all_columns()
                .filter(|c| c.access != Access::WriteOnly)
                .map(|c| (c, c.name.to_string()))
                .collect(),
            Attrs::List(list) => list.clone(),
        };
        if primary
            && !columns.iter().any(|(c, _)| c.name == node.table.pk)
            && let Some(pk) = node.table.column(node.table.pk)
        {
            columns.push((pk, pk.name.to_string()));
        }
        for (column, name) in columns {
            let Some(v) = row.get(column.name) else {
                continue;
            };
            let key = if primary {
                if matches!(column.kind, Kind::Lookup(_)) && name == column.name {
                    format!("_{}_value", column.name)
                } else {
                    name
                }
            } else {
                format!("{}.{name}", node.alias)
            };
            if primary {
                api::put_value(
                    &mut out,
                    store,
                    node.table,
                    column,
                    &key,
                    Some(v),
                    prefer,
                    true,
                );
            } else {
                if prefer.wants(FORMATTED)
                    && let Some(f) = api::formatted(store, node.table, column, v)
                {
                    out.insert(format!("{key}@{FORMATTED}"), Value::String(f));
                }
                if let Val::Ref(t, _) = v
                    && prefer.wants(LOOKUPLOGICALNAME)
                {
                    out.insert(
                        format!("{key}@{LOOKUPLOGICALNAME}"),
                        Value::String(t.to_string()),
                    );
                }
                out.insert(key, v.to_json());
            }
        }
    }
    out
}

/// Runs a FetchXML query against an entity set.
pub fn execute(
    store: &Store,
    ctx: &Ctx,
    req: &ApiRequest,
    table: &'static Table,
    fetch_xml: &str,
    prefer: &Prefer,
) -> Result<ApiResponse, ApiError> {
    let root = xml::parse(fetch_xml).map_err(|e| {
        err(format!(
            "The fetchXml parameter is not valid FetchXML: {e}."
        ))
    })?;
    let fetch = parse(store.catalog(), &root, table, ctx.user, ctx.max_page)?;

    let width = fetch.entities;
    let start: Vec<Tuple<'_>> = store
        .table_rows(table.logical)
        .map(|(id, row)| {
            let mut t: Tuple<'_> = vec![None; width];
            t[0] = Some((id, row));
            t
        })
        .collect();
    let joined = apply_links(store, &fetch.root, start);
    let mut rows: Vec<(query::SortKey, Tuple<'_>)> = joined
        .into_iter()
        .filter(|t| fetch.root.filters.iter().all(|f| eval(f, t)))
        .filter_map(|t| {
            let (id, row) = t.first().copied().flatten()?;
            Some((query::sort_key(&fetch.orders, id, row), t))
        })
        .collect();
    rows.sort_by(|a, b| query::cmp_keys(&fetch.orders, &a.0, &b.0));
    if fetch.distinct {
        let mut seen = HashSet::new();
        rows.retain(|(_, t)| {
            seen.insert(Value::Object(render(store, &fetch, t, &Prefer::default())).to_string())
        });
    }
    let total = rows.len();

    let (page_rows, more) = match fetch.top {
        Some(top) => {
            rows.truncate(top);
            (rows, false)
        }
        None => {
            let cursor = match (&fetch.cookie, fetch.page) {
                (Some(c), p) if p > 1 => Some(
                    query::parse_inner_cookie(table, &fetch.orders, c)
                        .map_err(|e| err(format!("The paging-cookie is not valid: {e}.")))?,
                ),
                _ => None,
            };
            match cursor {
                Some(c) => rows.retain(|(k, _)| {
                    query::cmp_keys(&fetch.orders, k, &c.last) == Ordering::Greater
                }),
                None => {
                    let skip = (fetch.page as usize - 1).saturating_mul(fetch.count);
                    rows.drain(..skip.min(rows.len()));
                }
            }
            let more = rows.len() > fetch.count;
            rows.truncate(fetch.count);
            (rows, more)
        }
    };

    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        Value::String(format!("{}$metadata#{}", ctx.root(), table.set)),
    );
    if req.param("$count") == Some("true") {
        body.insert("@odata.count".into(), Value::from(total.min(MAX_PAGE)));
    }
    if (fetch.total_count || req.param("$count") == Some("true")) && prefer.wants(TOTALCOUNT) {
        body.insert(format!("@{TOTALCOUNT}"), Value::from(total.min(MAX_PAGE)));
    }
    if (fetch.total_count || req.param("$count") == Some("true"))
        && prefer.wants(TOTALCOUNTEXCEEDED)
    {
        body.insert(
            format!("@{TOTALCOUNTEXCEEDED}"),
            Value::Bool(total > MAX_PAGE),
        );
    }
    if more && let (Some(first), Some(last)) = (page_rows.first(), page_rows.last()) {
        if prefer.wants(PAGINGCOOKIE) {
            let inner = query::inner_cookie(table, &fetch.orders, fetch.page, &first.0, &last.0);
            body.insert(
                format!("@{PAGINGCOOKIE}"),
                Value::String(query::outer_cookie(fetch.page + 1, &inner, 2)),
            );
        }
        if prefer.wants(MORERECORDS) {
            body.insert(format!("@{MORERECORDS}"), Value::Bool(true));
        }
    }
    let values: Vec<Value> = page_rows
        .iter()
        .map(|(_, t)| Value::Object(render(store, &fetch, t, prefer)))
        .collect();
    body.insert("value".into(), Value::Array(values));
    let mut resp = ApiResponse::json(StatusCode::OK, Value::Object(body));
    if let Some(applied) = api::applied_preferences(prefer, None) {
        resp = resp.with_header("Preference-Applied", applied);
    }
    Ok(resp)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn like_handles_wildcards_case_insensitively() {
        assert!(like("James Glynn (sample)", "%(SAMPLE)%"));
        assert!(like("abc", "a_c"));
        assert!(!like("abc", "a_"));
        assert!(like("", "%"));
        assert!(!like("abc", "b%"));
    }
}
