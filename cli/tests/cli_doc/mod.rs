//! `docs/cli.md` read as a schema: its record tables and its exit codes.
//!
//! Shared by the CLI's unit tests (which check one record of every type the
//! code defines) and the end-to-end tests (which check every record the
//! real `tern` prints), so code and document cannot drift apart.
//!
//! The document's conventions, which this module relies on:
//!
//! - every record or nested object has a `### `name`` heading followed by a
//!   table whose header is `| field | type | meaning |` and whose rows start
//!   with `` | `field` | type | ``;
//! - a record's table has a `type` row; a nested object's table has none;
//! - a type is `string`, `integer`, `boolean`, `array of T` or an object's
//!   name, optionally followed by `or null`;
//! - the `## Exit codes` section has a `| code | meaning |` table.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// What a field may hold.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    String,
    Integer,
    Boolean,
    Array(Box<Kind>),
    /// A nested object documented under its own heading.
    Object(String),
}

/// A field's documented JSON type.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FieldType {
    kind: Kind,
    nullable: bool,
}

/// The record and object tables and the exit codes of `docs/cli.md`.
#[derive(Debug)]
pub struct CliDoc {
    /// Every documented object (records and nested ones): field → type.
    objects: BTreeMap<String, BTreeMap<String, FieldType>>,
    /// `(code, meaning)` in document order.
    exit_codes: Vec<(u8, String)>,
}

impl CliDoc {
    /// Reads and parses `docs/cli.md` of this workspace.
    pub fn load() -> Result<Self, String> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/cli.md");
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        Self::parse(&text).map_err(|e| format!("{path}: {e}"))
    }

    /// Parses the document's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut objects = BTreeMap::new();
        let mut exit_codes = Vec::new();
        let mut heading: Option<String> = None;
        let mut in_exit_codes = false;
        let mut lines = text.lines().zip(1..).peekable();
        while let Some((line, number)) = lines.next() {
            if line.starts_with("## ") {
                in_exit_codes = line.trim() == "## Exit codes";
                heading = None;
            } else if let Some(title) = line.strip_prefix("### ") {
                heading = between_backticks(title).map(str::to_owned);
            }
            let Some(header) = table_cells(line) else {
                continue;
            };
            // A table: its header, the separator row, then its rows.
            lines.next();
            let mut rows = Vec::new();
            while let Some(row) = lines
                .peek()
                .and_then(|(l, n)| table_cells(l).map(|cells| (*n, cells)))
            {
                rows.push(row);
                lines.next();
            }
            if header == ["field", "type", "meaning"] {
                let name = heading.take().ok_or_else(|| {
                    format!("line {number}: a field table without a ### `name` heading")
                })?;
                let mut fields = BTreeMap::new();
                for (row, cells) in rows {
                    let field = between_backticks(&cells[0]).ok_or_else(|| {
                        format!("line {row}: field {:?} is not in backticks", cells[0])
                    })?;
                    let ty = parse_type(cells.get(1).map_or("", String::as_str))
                        .map_err(|e| format!("line {row}: {e}"))?;
                    if fields.insert(field.to_owned(), ty).is_some() {
                        return Err(format!("line {row}: `{name}` documents `{field}` twice"));
                    }
                }
                if objects.insert(name.clone(), fields).is_some() {
                    return Err(format!("line {number}: `{name}` is documented twice"));
                }
            } else if in_exit_codes && header == ["code", "meaning"] {
                for (row, cells) in rows {
                    let code = cells[0]
                        .parse()
                        .map_err(|e| format!("line {row}: exit code {:?}: {e}", cells[0]))?;
                    let meaning = cells.get(1).cloned().unwrap_or_default();
                    exit_codes.push((code, meaning));
                }
            }
        }
        let doc = Self {
            objects,
            exit_codes,
        };
        doc.check_references()?;
        Ok(doc)
    }

    /// Every object type a field refers to is documented.
    fn check_references(&self) -> Result<(), String> {
        for (name, fields) in &self.objects {
            for (field, ty) in fields {
                let mut kind = &ty.kind;
                while let Kind::Array(inner) = kind {
                    kind = inner;
                }
                if let Kind::Object(object) = kind {
                    if !self.objects.contains_key(object) {
                        return Err(format!(
                            "`{name}.{field}` refers to undocumented `{object}`"
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The documented record types (objects with a `type` field).
    pub fn record_types(&self) -> BTreeSet<&str> {
        self.objects
            .iter()
            .filter(|(_, fields)| fields.contains_key("type"))
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// The documented exit codes with their meanings, in document order.
    pub fn exit_codes(&self) -> &[(u8, String)] {
        &self.exit_codes
    }

    /// Checks that `record` is a documented record: its `type` names one,
    /// and it has exactly that record's fields, each of its documented type.
    pub fn check(&self, record: &Value) -> Result<(), String> {
        let tag = record
            .get("type")
            .and_then(Value::as_str)
            .ok_or("a record without a string `type`")?;
        if !self.record_types().contains(tag) {
            return Err(format!(
                "record type {tag:?} is not documented (documented: {:?})",
                self.record_types()
            ));
        }
        self.check_object(tag, record)
    }

    fn check_object(&self, name: &str, value: &Value) -> Result<(), String> {
        let object = value
            .as_object()
            .ok_or_else(|| format!("`{name}` is not an object: {value}"))?;
        let fields = self
            .objects
            .get(name)
            .ok_or_else(|| format!("`{name}` is not documented"))?;
        let present: BTreeSet<&str> = object.keys().map(String::as_str).collect();
        let documented: BTreeSet<&str> = fields.keys().map(String::as_str).collect();
        if present != documented {
            return Err(format!(
                "`{name}`: undocumented fields {:?}, documented fields missing {:?}",
                present.difference(&documented).collect::<Vec<_>>(),
                documented.difference(&present).collect::<Vec<_>>()
            ));
        }
        for (field, ty) in fields {
            let value = &object[field];
            if !(ty.nullable && value.is_null()) {
                self.check_kind(&ty.kind, value)
                    .map_err(|e| format!("`{name}.{field}`: {e}"))?;
            }
        }
        Ok(())
    }

    fn check_kind(&self, kind: &Kind, value: &Value) -> Result<(), String> {
        let fits = match kind {
            Kind::String => value.is_string(),
            Kind::Integer => value.is_i64() || value.is_u64(),
            Kind::Boolean => value.is_boolean(),
            Kind::Array(inner) => {
                let items = value
                    .as_array()
                    .ok_or_else(|| format!("{value} is not an array"))?;
                for item in items {
                    self.check_kind(inner, item)?;
                }
                true
            }
            Kind::Object(name) => {
                self.check_object(name, value)?;
                true
            }
        };
        if fits {
            Ok(())
        } else {
            Err(format!("{value} is not a {kind:?}"))
        }
    }
}

/// The cells of a Markdown table row (`| a | b |`), trimmed; `None` for
/// other lines. A separator row (`|---|`) yields cells of dashes.
fn table_cells(line: &str) -> Option<Vec<String>> {
    let inner = line.trim().strip_prefix('|')?.strip_suffix('|')?;
    Some(inner.split('|').map(|c| c.trim().to_owned()).collect())
}

/// The text between the first pair of backticks.
fn between_backticks(text: &str) -> Option<&str> {
    let (_, rest) = text.split_once('`')?;
    rest.split_once('`').map(|(inside, _)| inside)
}

/// A type cell: `string`, `integer`, `boolean`, `array of T` or an object
/// name (in backticks or not), optionally `… or null`.
fn parse_type(cell: &str) -> Result<FieldType, String> {
    let (base, nullable) = match cell.strip_suffix(" or null") {
        Some(base) => (base, true),
        None => (cell, false),
    };
    Ok(FieldType {
        kind: parse_kind(base)?,
        nullable,
    })
}

fn parse_kind(text: &str) -> Result<Kind, String> {
    let text = text.trim().trim_matches('`');
    Ok(match text {
        "" => return Err("a field without a type".into()),
        "string" => Kind::String,
        "integer" => Kind::Integer,
        "boolean" => Kind::Boolean,
        _ => match text.strip_prefix("array of ") {
            Some(inner) => Kind::Array(Box::new(parse_kind(inner)?)),
            None if text.chars().all(|c| c.is_ascii_lowercase() || c == '_') => {
                Kind::Object(text.to_owned())
            }
            None => return Err(format!("unknown type {text:?}")),
        },
    })
}
