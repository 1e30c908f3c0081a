//! OData query options of the Web API: `Prefer` preferences, `$select`, the `$filter` subset,
//! `$orderby`, and the paging cookies behind `$skiptoken` and FetchXML paging.

use super::error::ApiError;
use super::schema::{Column, Kind, Table};
use super::store::{self, Row, Val, cmp_opt, parse_datetime, parse_guid};
use super::xml;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use std::cmp::Ordering;
use uuid::Uuid;

/// Decodes a query-string component (`+` is a space, as ASP.NET reads query strings).
pub fn decode_component(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_decode_str(&s).decode_utf8_lossy().into_owned()
}

/// Splits a raw query string into (raw key, raw value) pairs.
pub fn split_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (p.to_string(), String::new()),
        })
        .collect()
}

/// Percent-encodes like the paging cookie does: everything except letters, digits and `-_.`,
/// lower-case hex.
pub fn cookie_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

/// Characters escaped when a skiptoken goes into a URL.
const URL_VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'%')
    .add(b'#')
    .add(b'&')
    .add(b'+')
    .add(b'?')
    .add(b'{')
    .add(b'}');

pub fn url_encode_value(s: &str) -> String {
    utf8_percent_encode(s, URL_VALUE).to_string()
}

// --- Prefer ------------------------------------------------------------------------------

/// The `Prefer` request header.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prefer {
    pub return_representation: bool,
    /// The raw list of `odata.include-annotations`.
    pub annotations: Option<String>,
    pub maxpagesize: Option<usize>,
    pub continue_on_error: bool,
}

impl Prefer {
    pub fn parse<'a>(values: impl Iterator<Item = &'a str>) -> Prefer {
        let mut p = Prefer::default();
        for value in values {
            for item in split_outside_quotes(value, ',') {
                let item = item.trim();
                let (key, val) = match item.split_once('=') {
                    Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
                    None => (item, None),
                };
                match key.to_ascii_lowercase().as_str() {
                    "return" if val == Some("representation") => p.return_representation = true,
                    "odata.include-annotations" => p.annotations = val.map(str::to_string),
                    "odata.maxpagesize" => p.maxpagesize = val.and_then(|v| v.parse().ok()),
                    "odata.continue-on-error" => p.continue_on_error = true,
                    _ => {}
                }
            }
        }
        p
    }

    /// Whether an annotation (e.g. `OData.Community.Display.V1.FormattedValue`) was asked for.
    pub fn wants(&self, annotation: &str) -> bool {
        let Some(list) = &self.annotations else {
            return false;
        };
        let mut wanted = false;
        for pattern in list.split(',').map(str::trim) {
            if let Some(excluded) = pattern.strip_prefix('-') {
                if matches_pattern(excluded, annotation) {
                    return false;
                }
            } else if matches_pattern(pattern, annotation) {
                wanted = true;
            }
        }
        wanted
    }
}

fn matches_pattern(pattern: &str, annotation: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix(".*") {
        Some(prefix) => annotation
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.')),
        None => pattern.eq_ignore_ascii_case(annotation),
    }
}

/// Splits on `sep` except inside double quotes.
pub fn split_outside_quotes(s: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        if c == '"' {
            quoted = !quoted;
        }
        if c == sep && !quoted {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
}

pub const FORMATTED: &str = "OData.Community.Display.V1.FormattedValue";
pub const LOOKUPLOGICALNAME: &str = "Microsoft.Dynamics.CRM.lookuplogicalname";
pub const NAVPROPERTY: &str = "Microsoft.Dynamics.CRM.associatednavigationproperty";
pub const PAGINGCOOKIE: &str = "Microsoft.Dynamics.CRM.fetchxmlpagingcookie";
pub const MORERECORDS: &str = "Microsoft.Dynamics.CRM.morerecords";
pub const TOTALCOUNT: &str = "Microsoft.Dynamics.CRM.totalrecordcount";
pub const TOTALCOUNTEXCEEDED: &str = "Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded";

// --- properties ----------------------------------------------------------------------------

/// A property of a table as the Web API names it: a column, or `_x_value` of a lookup.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub column: &'static Column,
}

impl Field {
    /// The Web API property name.
    pub fn property(&self) -> String {
        match self.column.kind {
            Kind::Lookup(_) => format!("_{}_value", self.column.name),
            _ => self.column.name.to_string(),
        }
    }
}

fn no_property(table: &Table, name: &str) -> ApiError {
    ApiError::query(format!(
        "Could not find a property named '{name}' on type '{}'.",
        table.odata_type()
    ))
}

/// Resolves a Web API property name.
pub fn field(table: &Table, name: &str) -> Result<Field, ApiError> {
    if let Some(column) = table.lookup_value(name) {
        return Ok(Field { column });
    }
    match table.column(name) {
        Some(column)
            if !matches!(column.kind, Kind::Lookup(_))
                && column.access != super::schema::Access::WriteOnly =>
        {
            Ok(Field { column })
        }
        _ => Err(no_property(table, name)),
    }
}

/// `$select`: the listed properties, or `None` for all.
pub fn parse_select(table: &Table, select: Option<&str>) -> Result<Option<Vec<Field>>, ApiError> {
    let Some(select) = select else {
        return Ok(None);
    };
    let mut fields = Vec::new();
    for name in select.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if name == "*" {
            return Ok(None);
        }
        fields.push(field(table, name)?);
    }
    Ok(Some(fields))
}

// --- $orderby ------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
pub struct OrderKey {
    pub column: &'static Column,
    pub descending: bool,
}

pub fn parse_orderby(table: &Table, orderby: Option<&str>) -> Result<Vec<OrderKey>, ApiError> {
    let Some(orderby) = orderby else {
        return Ok(Vec::new());
    };
    let mut keys = Vec::new();
    for item in orderby.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let mut words = item.split_whitespace();
        let name = words.next().unwrap_or_default();
        let descending = match words.next().map(str::to_ascii_lowercase).as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(other) => {
                return Err(ApiError::query(format!(
                    "Syntax error at position {} in '{orderby}': unexpected '{other}'.",
                    orderby.find(other).unwrap_or(0)
                )));
            }
        };
        keys.push(OrderKey {
            column: field(table, name)?.column,
            descending,
        });
    }
    Ok(keys)
}

/// A row's position in an order: the order columns' values, then the primary key.
pub type SortKey = (Vec<Option<Val>>, Uuid);

/// The sort key of a row.
pub fn sort_key(keys: &[OrderKey], id: &Uuid, row: &Row) -> SortKey {
    (
        keys.iter()
            .map(|k| row.get(k.column.name).cloned())
            .collect(),
        *id,
    )
}

/// Compares two sort keys under the order (the primary key always ascending, last).
pub fn cmp_keys(keys: &[OrderKey], a: &SortKey, b: &SortKey) -> Ordering {
    for (i, k) in keys.iter().enumerate() {
        let o = cmp_opt(
            a.0.get(i).and_then(|v| v.as_ref()),
            b.0.get(i).and_then(|v| v.as_ref()),
        );
        let o = if k.descending { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.1.cmp(&b.1)
}

// --- paging cookies ------------------------------------------------------------------------

/// Where the previous page ended: the last row's sort key.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    pub page: u32,
    pub last: SortKey,
}

/// The inner paging cookie, as Dataverse writes it:
/// `<cookie page="1"><name last="…" first="…" /><contactid last="{…}" first="{…}" /></cookie>`.
pub fn inner_cookie(
    table: &Table,
    keys: &[OrderKey],
    page: u32,
    first: &SortKey,
    last: &SortKey,
) -> String {
    let mut s = format!("<cookie page=\"{page}\">");
    for (i, k) in keys.iter().enumerate() {
        s.push('<');
        s.push_str(k.column.name);
        for (which, key) in [("last", last), ("first", first)] {
            match key.0.get(i).and_then(|v| v.as_ref()) {
                Some(v) => s.push_str(&format!(" {which}=\"{}\"", xml::escape_attr(&v.to_text()))),
                None => s.push_str(&format!(" {which}null=\"1\"")),
            }
        }
        s.push_str(" />");
    }
    s.push_str(&format!(
        "<{} last=\"{}\" first=\"{}\" /></cookie>",
        table.pk,
        store::braced(&last.1),
        store::braced(&first.1)
    ));
    s
}

/// Reads an inner paging cookie back into a cursor for this order.
pub fn parse_inner_cookie(
    table: &Table,
    keys: &[OrderKey],
    cookie: &str,
) -> Result<Cursor, String> {
    let root = xml::parse(cookie)?;
    if root.name != "cookie" {
        return Err(format!(
            "the paging cookie's root is <{}>, not <cookie>",
            root.name
        ));
    }
    let page = root
        .attr("page")
        .and_then(|p| p.parse().ok())
        .ok_or("the paging cookie has no page number")?;
    let mut values = Vec::new();
    for k in keys {
        let el = root
            .children
            .iter()
            .find(|c| c.name == k.column.name)
            .ok_or_else(|| {
                format!(
                    "the paging cookie does not match the order ({} missing)",
                    k.column.name
                )
            })?;
        let v = match el.attr("last") {
            Some(text) if el.attr("lastnull").is_none() => Some(Val::parse_text(k.column, text)?),
            _ => None,
        };
        values.push(v);
    }
    let id = root
        .children
        .iter()
        .find(|c| c.name == table.pk)
        .and_then(|c| c.attr("last"))
        .and_then(parse_guid)
        .ok_or_else(|| format!("the paging cookie has no last {}", table.pk))?;
    Ok(Cursor {
        page,
        last: (values, id),
    })
}

/// The outer cookie: `<cookie pagenumber="2" pagingcookie="…" istracking="False" />` with the
/// inner cookie encoded `times` times.
pub fn outer_cookie(next_page: u32, inner: &str, times: usize) -> String {
    let mut encoded = inner.to_string();
    for _ in 0..times {
        encoded = cookie_encode(&encoded);
    }
    format!("<cookie pagenumber=\"{next_page}\" pagingcookie=\"{encoded}\" istracking=\"False\" />")
}

/// Reads a `$skiptoken` (the outer cookie, once URL-decoded) back into the inner cookie.
pub fn inner_from_skiptoken(token: &str) -> Result<String, String> {
    let outer = xml::parse(token)?;
    let encoded = outer
        .attr("pagingcookie")
        .ok_or("the skiptoken has no pagingcookie")?;
    Ok(percent_decode_str(encoded).decode_utf8_lossy().into_owned())
}

// --- $filter -------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFn {
    Contains,
    StartsWith,
    EndsWith,
}

/// A parsed `$filter`.
#[derive(Debug, Clone)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Cmp(&'static Column, CmpOp, Option<Val>),
    Text(&'static Column, TextFn, String),
}

impl Filter {
    pub fn matches(&self, row: &Row) -> bool {
        match self {
            Filter::And(a, b) => a.matches(row) && b.matches(row),
            Filter::Or(a, b) => a.matches(row) || b.matches(row),
            Filter::Not(a) => !a.matches(row),
            Filter::Cmp(column, op, lit) => compare(row.get(column.name), *op, lit.as_ref()),
            Filter::Text(column, f, needle) => {
                let Some(Val::Str(s)) = row.get(column.name) else {
                    return false;
                };
                let (s, n) = (s.to_lowercase(), needle.to_lowercase());
                match f {
                    TextFn::Contains => s.contains(&n),
                    TextFn::StartsWith => s.starts_with(&n),
                    TextFn::EndsWith => s.ends_with(&n),
                }
            }
        }
    }
}

/// SQL semantics: `eq null` matches nulls; an ordering comparison with a null is false.
pub fn compare(value: Option<&Val>, op: CmpOp, lit: Option<&Val>) -> bool {
    match (value, lit) {
        (None, None) => matches!(op, CmpOp::Eq | CmpOp::Ge | CmpOp::Le),
        (Some(_), None) | (None, Some(_)) => op == CmpOp::Ne,
        (Some(v), Some(l)) => {
            let o = store::cmp_vals(v, l);
            match op {
                CmpOp::Eq => o == Ordering::Equal,
                CmpOp::Ne => o != Ordering::Equal,
                CmpOp::Gt => o == Ordering::Greater,
                CmpOp::Ge => o != Ordering::Less,
                CmpOp::Lt => o == Ordering::Less,
                CmpOp::Le => o != Ordering::Greater,
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Open,
    Close,
    Comma,
}

#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Guid(Uuid),
    Date(chrono::DateTime<chrono::Utc>),
}

impl Lit {
    fn edm(&self) -> &'static str {
        match self {
            Lit::Null => "null",
            Lit::Bool(_) => "Edm.Boolean",
            Lit::Int(_) => "Edm.Int32",
            Lit::Float(_) => "Edm.Decimal",
            Lit::Str(_) => "Edm.String",
            Lit::Guid(_) => "Edm.Guid",
            Lit::Date(_) => "Edm.DateTimeOffset",
        }
    }
}

fn lex(s: &str) -> Result<Vec<Tok>, ApiError> {
    let mut toks = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                toks.push(Tok::Open);
                i += 1;
            }
            ')' => {
                toks.push(Tok::Close);
                i += 1;
            }
            ',' => {
                toks.push(Tok::Comma);
                i += 1;
            }
            '\'' => {
                let mut out = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(ApiError::query(format!(
                                "Syntax error: unterminated string literal in $filter '{s}'."
                            )));
                        }
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            out.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(c) => {
                            out.push(*c);
                            i += 1;
                        }
                    }
                }
                toks.push(Tok::Str(out));
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !matches!(chars[i], '(' | ')' | ',' | '\'')
                {
                    i += 1;
                }
                toks.push(Tok::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(toks)
}

struct FilterParser<'a> {
    table: &'a Table,
    toks: Vec<Tok>,
    pos: usize,
    text: &'a str,
}

/// Parses a `$filter` against a table: unknown properties, unsupported functions and type
/// mismatches are 400 errors naming them.
pub fn parse_filter(table: &Table, text: &str) -> Result<Filter, ApiError> {
    let mut p = FilterParser {
        table,
        toks: lex(text)?,
        pos: 0,
        text,
    };
    let f = p.or()?;
    if p.pos != p.toks.len() {
        return Err(p.syntax("unexpected token"));
    }
    Ok(f)
}

impl FilterParser<'_> {
    fn syntax(&self, what: &str) -> ApiError {
        let near = match self.toks.get(self.pos) {
            Some(Tok::Word(w)) => w.clone(),
            Some(Tok::Str(s)) => format!("'{s}'"),
            Some(Tok::Open) => "(".into(),
            Some(Tok::Close) => ")".into(),
            Some(Tok::Comma) => ",".into(),
            None => "end of input".into(),
        };
        ApiError::query(format!(
            "Syntax error in $filter '{}': {what} near {near}.",
            self.text
        ))
    }

    fn peek_word(&self) -> Option<String> {
        match self.toks.get(self.pos) {
            Some(Tok::Word(w)) => Some(w.to_ascii_lowercase()),
            _ => None,
        }
    }

    fn expect(&mut self, t: Tok) -> Result<(), ApiError> {
        if self.toks.get(self.pos) == Some(&t) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.syntax(&format!("expected {t:?}")))
        }
    }

    fn or(&mut self) -> Result<Filter, ApiError> {
        let mut left = self.and()?;
        while self.peek_word().as_deref() == Some("or") {
            self.pos += 1;
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, ApiError> {
        let mut left = self.unary()?;
        while self.peek_word().as_deref() == Some("and") {
            self.pos += 1;
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, ApiError> {
        if self.peek_word().as_deref() == Some("not") {
            self.pos += 1;
            return Ok(Filter::Not(Box::new(self.unary()?)));
        }
        if self.toks.get(self.pos) == Some(&Tok::Open) {
            self.pos += 1;
            let inner = self.or()?;
            self.expect(Tok::Close)?;
            return Ok(inner);
        }
        // A function call?
        if let (Some(Tok::Word(name)), Some(Tok::Open)) =
            (self.toks.get(self.pos), self.toks.get(self.pos + 1))
        {
            let name = name.clone();
            let f = match name.to_ascii_lowercase().as_str() {
                "contains" => TextFn::Contains,
                "startswith" => TextFn::StartsWith,
                "endswith" => TextFn::EndsWith,
                _ => {
                    return Err(ApiError::query(format!(
                        "The function '{name}' in $filter is not supported by the sandbox (supported: contains, startswith, endswith)."
                    )));
                }
            };
            self.pos += 2;
            let column = self.property()?;
            self.expect(Tok::Comma)?;
            let needle = match self.toks.get(self.pos) {
                Some(Tok::Str(s)) => s.clone(),
                _ => return Err(self.syntax("expected a string literal")),
            };
            self.pos += 1;
            self.expect(Tok::Close)?;
            if !matches!(column.kind, Kind::Str(_) | Kind::EntityName) {
                return Err(ApiError::query(format!(
                    "No function signature for the function with name '{name}' matches the specified arguments ('{}' is not a string).",
                    column.name
                )));
            }
            return Ok(Filter::Text(column, f, needle));
        }
        // operand op operand
        let left = self.operand()?;
        let op = match self.peek_word().as_deref() {
            Some("eq") => CmpOp::Eq,
            Some("ne") => CmpOp::Ne,
            Some("gt") => CmpOp::Gt,
            Some("ge") => CmpOp::Ge,
            Some("lt") => CmpOp::Lt,
            Some("le") => CmpOp::Le,
            Some(other) if ["has", "in", "add", "sub", "mul", "div", "mod"].contains(&other) => {
                return Err(ApiError::query(format!(
                    "The operator '{other}' in $filter is not supported by the sandbox."
                )));
            }
            _ => {
                // A bare boolean property.
                if let Operand::Prop(column) = left
                    && matches!(column.kind, Kind::Bool)
                {
                    return Ok(Filter::Cmp(column, CmpOp::Eq, Some(Val::Bool(true))));
                }
                return Err(self.syntax("expected a comparison operator"));
            }
        };
        self.pos += 1;
        let right = self.operand()?;
        let (column, lit, op) = match (left, right) {
            (Operand::Prop(c), Operand::Lit(l)) => (c, l, op),
            (Operand::Lit(l), Operand::Prop(c)) => (c, l, flip(op)),
            (Operand::Prop(_), Operand::Prop(_)) => {
                return Err(ApiError::query(
                    "Comparing two properties in $filter is not supported by the sandbox.",
                ));
            }
            (Operand::Lit(_), Operand::Lit(_)) => {
                return Err(self.syntax("a comparison needs a property"));
            }
        };
        let value = self.literal_for(column, op, lit)?;
        Ok(Filter::Cmp(column, op, value))
    }

    fn property(&mut self) -> Result<&'static Column, ApiError> {
        match self.toks.get(self.pos) {
            Some(Tok::Word(w)) => {
                let w = w.clone();
                self.pos += 1;
                if w.contains('/') {
                    return Err(ApiError::query(format!(
                        "The navigation path '{w}' in $filter is not supported by the sandbox."
                    )));
                }
                Ok(field(self.table, &w)?.column)
            }
            _ => Err(self.syntax("expected a property")),
        }
    }

    fn operand(&mut self) -> Result<Operand, ApiError> {
        let tok = self.toks.get(self.pos).cloned();
        match tok {
            Some(Tok::Str(s)) => {
                self.pos += 1;
                Ok(Operand::Lit(Lit::Str(s)))
            }
            Some(Tok::Word(w)) => {
                let lower = w.to_ascii_lowercase();
                let lit = if lower == "null" {
                    Some(Lit::Null)
                } else if lower == "true" {
                    Some(Lit::Bool(true))
                } else if lower == "false" {
                    Some(Lit::Bool(false))
                } else if let Some(g) = parse_guid(&w) {
                    Some(Lit::Guid(g))
                } else if let Ok(i) = w.parse::<i64>() {
                    Some(Lit::Int(i))
                } else if w.starts_with(|c: char| c.is_ascii_digit() || c == '-')
                    && let Some(d) = parse_datetime(&w)
                {
                    Some(Lit::Date(d))
                } else if let Ok(f) = w.trim_end_matches(['m', 'M', 'd', 'D']).parse::<f64>() {
                    Some(Lit::Float(f))
                } else {
                    None
                };
                match lit {
                    Some(l) => {
                        self.pos += 1;
                        Ok(Operand::Lit(l))
                    }
                    None => Ok(Operand::Prop(self.property()?)),
                }
            }
            _ => Err(self.syntax("expected a property or a literal")),
        }
    }

    fn literal_for(
        &self,
        column: &'static Column,
        op: CmpOp,
        lit: Lit,
    ) -> Result<Option<Val>, ApiError> {
        let mismatch = |lit: &Lit| {
            let col_edm = match column.kind {
                Kind::Str(_) | Kind::EntityName => "Edm.String",
                Kind::Int | Kind::Choice(_) | Kind::State | Kind::Status => "Edm.Int32",
                Kind::Bool => "Edm.Boolean",
                Kind::DateTime => "Edm.DateTimeOffset",
                Kind::Pk | Kind::Guid | Kind::Lookup(_) => "Edm.Guid",
            };
            ApiError::query(format!(
                "A binary operator with incompatible types was detected. Found operand types '{col_edm}' and '{}' for operator kind '{}'.",
                lit.edm(),
                match op {
                    CmpOp::Eq => "Equal",
                    CmpOp::Ne => "NotEqual",
                    CmpOp::Gt => "GreaterThan",
                    CmpOp::Ge => "GreaterThanOrEqual",
                    CmpOp::Lt => "LessThan",
                    CmpOp::Le => "LessThanOrEqual",
                }
            ))
        };
        let v = match (&column.kind, lit) {
            (_, Lit::Null) => None,
            (Kind::Str(_) | Kind::EntityName, Lit::Str(s)) => Some(Val::Str(s)),
            (Kind::Int | Kind::Choice(_) | Kind::State | Kind::Status, Lit::Int(i)) => {
                Some(Val::Int(i))
            }
            (Kind::Int, Lit::Float(f)) => Some(Val::Int(f as i64)),
            (Kind::Bool, Lit::Bool(b)) => Some(Val::Bool(b)),
            (Kind::DateTime, Lit::Date(d)) => Some(Val::Date(d)),
            (Kind::Pk | Kind::Guid | Kind::Lookup(_), Lit::Guid(g)) => Some(Val::Guid(g)),
            (_, other) => return Err(mismatch(&other)),
        };
        Ok(v)
    }
}

#[derive(Debug, Clone)]
enum Operand {
    Prop(&'static Column),
    Lit(Lit),
}

fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Ge => CmpOp::Le,
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Le => CmpOp::Ge,
        other => other,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::dataverse::schema;

    fn contact() -> &'static Table {
        schema::standard("contact").unwrap()
    }

    fn row(pairs: &[(&'static str, Val)]) -> Row {
        pairs.iter().cloned().collect()
    }

    #[test]
    fn a_filter_combines_comparisons_functions_and_null() {
        let f = parse_filter(
            contact(),
            "(statecode eq 0 and not contains(emailaddress1,'spam')) or lastname eq 'O''Neil' and emailaddress1 ne null",
        )
        .unwrap();
        assert!(f.matches(&row(&[
            ("statecode", Val::Int(0)),
            ("emailaddress1", Val::Str("a@b.de".into()))
        ])));
        assert!(!f.matches(&row(&[
            ("statecode", Val::Int(0)),
            ("emailaddress1", Val::Str("SPAM@b.de".into()))
        ])));
        assert!(f.matches(&row(&[
            ("statecode", Val::Int(1)),
            ("lastname", Val::Str("o'neil".into())),
            ("emailaddress1", Val::Str("x".into()))
        ])));
        assert!(!f.matches(&row(&[
            ("statecode", Val::Int(1)),
            ("lastname", Val::Str("O'Neil".into()))
        ])));
    }

    #[test]
    fn lookups_are_filtered_by_their_value_property() {
        let id = Uuid::new_v4();
        let f = parse_filter(contact(), &format!("_parentcustomerid_value eq {id}")).unwrap();
        assert!(f.matches(&row(&[("parentcustomerid", Val::Ref("account", id))])));
        let err = parse_filter(contact(), &format!("parentcustomerid eq {id}")).unwrap_err();
        assert!(
            err.message.contains("'parentcustomerid'"),
            "{}",
            err.message
        );
    }

    #[test]
    fn unknown_properties_and_type_mismatches_are_named() {
        let err = parse_filter(contact(), "nosuchcolumn eq 1").unwrap_err();
        assert_eq!(err.status, 400);
        assert!(err.message.contains("'nosuchcolumn'"));
        let err = parse_filter(contact(), "statecode eq 'x'").unwrap_err();
        assert!(
            err.message.contains("incompatible types"),
            "{}",
            err.message
        );
        assert!(parse_filter(contact(), "statecode eq").is_err());
        assert!(parse_filter(contact(), "startswith(firstname,'a'").is_err());
    }

    #[test]
    fn prefer_annotations_match_wildcards_and_lists() {
        let p = Prefer::parse(["odata.include-annotations=\"OData.Community.Display.V1.FormattedValue,Microsoft.Dynamics.CRM.*\", odata.maxpagesize=10"].into_iter());
        assert_eq!(p.maxpagesize, Some(10));
        assert!(p.wants(FORMATTED));
        assert!(p.wants(LOOKUPLOGICALNAME));
        assert!(!p.wants("Other.Thing"));
        assert!(Prefer::parse(["odata.include-annotations=\"*\""].into_iter()).wants(PAGINGCOOKIE));
        assert!(!Prefer::default().wants(FORMATTED));
    }

    #[test]
    fn a_paging_cookie_round_trips_with_nulls_and_text() {
        let t = contact();
        let keys = parse_orderby(t, Some("lastname desc,birthdate")).unwrap();
        let first = (
            vec![Some(Val::Str("Zed \"Q\" <x>".into())), None],
            Uuid::new_v4(),
        );
        let last = (
            vec![Some(Val::Str("Adams & co".into())), None],
            Uuid::new_v4(),
        );
        let inner = inner_cookie(t, &keys, 3, &first, &last);
        let c = parse_inner_cookie(t, &keys, &inner).unwrap();
        assert_eq!(c.page, 3);
        assert_eq!(c.last, last);
        let outer = outer_cookie(4, &inner, 1);
        assert_eq!(inner_from_skiptoken(&outer).unwrap(), inner);
    }
}
