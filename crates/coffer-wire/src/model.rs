//! The official AWS service models (botocore JSON), embedded and parsed once.
//!
//! Only the parts that validation and redaction need are kept: each operation's input
//! and output shape, and for each shape its type, members, required members, limits,
//! pattern, enum values and whether it is sensitive.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, OnceLock};

use regex::Regex;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};

const SECRETSMANAGER_JSON: &str =
    include_str!("../models/secretsmanager-2017-10-17.service-2.json");
const KMS_JSON: &str = include_str!("../models/kms-2014-11-01.service-2.json");

/// One AWS service's operations and shapes.
pub struct ServiceModel {
    operations: BTreeMap<String, Operation>,
    shapes: HashMap<String, Shape>,
}

struct Operation {
    input: Option<String>,
    output: Option<String>,
    /// [`ServiceModel::sensitive_set`], worked out on first use.
    sensitive: OnceLock<Arc<BTreeSet<String>>>,
}

/// A named shape of the model, with the constraints AWS enforces on its values.
pub(crate) struct Shape {
    pub(crate) kind: ShapeKind,
    pub(crate) min: Option<i64>,
    pub(crate) max: Option<i64>,
    pub(crate) pattern: Option<Pattern>,
    pub(crate) enum_values: Vec<String>,
    pub(crate) sensitive: bool,
    /// Values may hold no control character (see [`CONTROL_FREE_SHAPES`]).
    pub(crate) control_free: bool,
}

/// String shapes that name, identify or page something: tokens, ids, names, labels, tag
/// keys and values, paging tokens and markers. The models give most of them no pattern,
/// yet AWS refuses control characters in them, and a NUL cannot be stored at all in
/// PostgreSQL's text (a 500 there, and a backup that no longer restores into it).
const CONTROL_FREE_SHAPES: &[&str] = &[
    // Secrets Manager
    "ClientRequestTokenType",
    "NextTokenType",
    "SecretVersionStageType",
    "SecretVersionIdType",
    "SecretIdType",
    "NameType",
    "SecretNameType",
    "TagKeyType",
    "TagValueType",
    "KmsKeyIdType",
    "OwningServiceType",
    "RotationLambdaARNType",
    "FilterValueStringType",
    // KMS
    "KeyIdType",
    "ArnType",
    "GrantTokenType",
    "GrantIdType",
    "MarkerType",
    "CustomKeyStoreIdType",
];

pub(crate) enum ShapeKind {
    Structure(Vec<Member>),
    List(String),
    Map { key: String, value: String },
    String,
    Integer,
    Long,
    Float,
    Boolean,
    Timestamp,
    Blob,
}

impl ShapeKind {
    /// Whether a value of this kind may hold members of its own (a structure, or a list or
    /// map that may hold one): what `keep_input_members` walks into.
    fn holds_members(&self) -> bool {
        matches!(self, ShapeKind::Structure(_) | ShapeKind::List(_) | ShapeKind::Map { .. })
    }
}

/// A member of a structure, in the order the model lists it.
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) shape: String,
    pub(crate) required: bool,
    pub(crate) sensitive: bool,
}

/// A model pattern: the Java source text (quoted in error messages) and its compiled form.
pub(crate) struct Pattern {
    pub(crate) source: String,
    /// `None` when the pattern cannot be expressed for the `regex` crate; the check is
    /// then skipped rather than failing every request. A test keeps this from happening
    /// for the embedded models.
    pub(crate) regex: Option<Regex>,
}

impl ServiceModel {
    /// The AWS Secrets Manager model.
    pub fn secretsmanager() -> &'static ServiceModel {
        static MODEL: OnceLock<ServiceModel> = OnceLock::new();
        MODEL.get_or_init(|| {
            ServiceModel::from_json(SECRETSMANAGER_JSON).expect("embedded Secrets Manager model")
        })
    }

    /// The AWS KMS model.
    pub fn kms() -> &'static ServiceModel {
        static MODEL: OnceLock<ServiceModel> = OnceLock::new();
        MODEL.get_or_init(|| ServiceModel::from_json(KMS_JSON).expect("embedded KMS model"))
    }

    /// Parses a botocore `service-2.json` document. Fails on malformed JSON, an unknown
    /// shape type or a reference to a shape that does not exist, so that lookups later
    /// can rely on every reference resolving.
    pub fn from_json(json: &str) -> Result<ServiceModel, String> {
        let raw: RawModel = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let mut shapes = HashMap::with_capacity(raw.shapes.len());
        for (name, shape) in raw.shapes {
            let mut shape = shape.into_shape().map_err(|e| format!("shape {name}: {e}"))?;
            shape.control_free = CONTROL_FREE_SHAPES.contains(&name.as_str());
            shapes.insert(name, shape);
        }
        let operations: BTreeMap<String, Operation> = raw
            .operations
            .into_iter()
            .map(|(name, op)| {
                let op = Operation {
                    input: op.input.map(|r| r.shape),
                    output: op.output.map(|r| r.shape),
                    sensitive: OnceLock::new(),
                };
                (name, op)
            })
            .collect();
        let model = ServiceModel { operations, shapes };
        model.check_references()?;
        Ok(model)
    }

    fn check_references(&self) -> Result<(), String> {
        let ops = self.operations.values().flat_map(|op| [&op.input, &op.output]).flatten();
        let members = self.shapes.values().flat_map(|shape| match &shape.kind {
            ShapeKind::Structure(members) => members.iter().map(|m| &m.shape).collect(),
            ShapeKind::List(member) => vec![member],
            ShapeKind::Map { key, value } => vec![key, value],
            _ => vec![],
        });
        match ops.chain(members).find(|name| !self.shapes.contains_key(*name)) {
            Some(missing) => Err(format!("reference to unknown shape {missing}")),
            None => Ok(()),
        }
    }

    /// The model of a JSON 1.1 service (Secrets Manager, KMS); `None` for the others.
    pub fn of(service: crate::operation::Service) -> Option<&'static ServiceModel> {
        use crate::operation::Service;
        match service {
            Service::SecretsManager => Some(ServiceModel::secretsmanager()),
            Service::Kms => Some(ServiceModel::kms()),
            Service::CloudTrail | Service::Sts | Service::Iam => None,
        }
    }

    pub fn has_operation(&self, name: &str) -> bool {
        self.operations.contains_key(name)
    }

    /// Operation names in alphabetical order.
    pub fn operation_names(&self) -> impl Iterator<Item = &str> {
        self.operations.keys().map(String::as_str)
    }

    /// Names of members of the operation's input and output shapes, at any depth, that
    /// are marked sensitive directly or through their target shape (for example
    /// `SecretString`, `SecretBinary`, `Plaintext`). Sorted, without duplicates.
    pub fn sensitive_members(&self, operation: &str) -> Vec<String> {
        self.sensitive_set(operation).iter().cloned().collect()
    }

    /// [`ServiceModel::sensitive_members`] as a set, shared: worked out once per
    /// operation, since every audited call needs it.
    pub fn sensitive_set(&self, operation: &str) -> Arc<BTreeSet<String>> {
        let Some(op) = self.operations.get(operation) else { return Arc::default() };
        op.sensitive
            .get_or_init(|| {
                let mut found = BTreeSet::new();
                let mut seen = HashSet::new();
                for shape in [&op.input, &op.output].into_iter().flatten() {
                    self.collect_sensitive(shape, &mut seen, &mut found);
                }
                Arc::new(found)
            })
            .clone()
    }

    fn collect_sensitive<'a>(
        &'a self,
        name: &'a str,
        seen: &mut HashSet<&'a str>,
        found: &mut BTreeSet<String>,
    ) {
        // Shapes can refer to themselves through lists; visit each once.
        if !seen.insert(name) {
            return;
        }
        match &self.shape(name).kind {
            ShapeKind::Structure(members) => {
                for member in members {
                    if member.sensitive || self.shape(&member.shape).sensitive {
                        found.insert(member.name.clone());
                    }
                    self.collect_sensitive(&member.shape, seen, found);
                }
            }
            ShapeKind::List(member) => self.collect_sensitive(member, seen, found),
            ShapeKind::Map { key, value } => {
                self.collect_sensitive(key, seen, found);
                self.collect_sensitive(value, seen, found);
            }
            _ => {}
        }
    }

    /// `body` with only the members the operation's input shape defines, at any depth:
    /// unknown members (`secretString` where the model says `SecretString`, padding, a
    /// megabyte of anything) are dropped, as are objects and lists where the model wants a
    /// scalar. What the audit trail records of a request, before validation has run:
    /// the request as AWS would have understood it, and nothing a caller adds to it.
    /// `Value::Null` for an unknown operation.
    pub fn input_members_only(
        &self,
        operation: &str,
        body: &serde_json::Value,
    ) -> serde_json::Value {
        match self.input_shape(operation) {
            Some(shape) => self.project(shape, body).unwrap_or(serde_json::Value::Null),
            None => serde_json::Value::Null,
        }
    }

    /// [`ServiceModel::input_members_only`] of one value against its shape: `None` when
    /// the value's JSON type cannot be the shape's.
    fn project(&self, shape: &Shape, value: &serde_json::Value) -> Option<serde_json::Value> {
        use serde_json::Value;
        match (&shape.kind, value) {
            (ShapeKind::Structure(members), Value::Object(object)) => {
                let mut out = serde_json::Map::new();
                for member in members {
                    if let Some(v) = object.get(&member.name)
                        && let Some(v) = self.project(self.shape(&member.shape), v)
                    {
                        out.insert(member.name.clone(), v);
                    }
                }
                Some(Value::Object(out))
            }
            (ShapeKind::List(member), Value::Array(items)) => {
                let member = self.shape(member);
                Some(Value::Array(items.iter().filter_map(|v| self.project(member, v)).collect()))
            }
            (ShapeKind::Map { value: value_shape, .. }, Value::Object(entries)) => {
                let value_shape = self.shape(value_shape);
                let out = entries
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), self.project(value_shape, v)?)))
                    .collect();
                Some(Value::Object(out))
            }
            (ShapeKind::Structure(_) | ShapeKind::List(_) | ShapeKind::Map { .. }, _) => None,
            (_, Value::Object(_) | Value::Array(_)) => None,
            (_, scalar) => Some(scalar.clone()),
        }
    }

    /// The input shape of an operation: `None` for an unknown operation, and an empty
    /// structure for one that takes no input.
    pub(crate) fn input_shape(&self, operation: &str) -> Option<&Shape> {
        static EMPTY: Shape = Shape {
            kind: ShapeKind::Structure(Vec::new()),
            min: None,
            max: None,
            pattern: None,
            enum_values: Vec::new(),
            sensitive: false,
            control_free: false,
        };
        let op = self.operations.get(operation)?;
        Some(op.input.as_deref().map_or(&EMPTY, |name| self.shape(name)))
    }

    /// Removes from `body` (in place, nothing copied) the members the operation's input
    /// shapes do not define, at any depth; everything but an object is left as it is at
    /// the top, and an unknown operation keeps nothing. Authorization reads its request
    /// condition keys (`aws:RequestTag/<key>`, `secretsmanager:Name`,
    /// `kms:EncryptionContext:<key>`, ...) from the request's members: AWS gives an
    /// operation only those of its own
    /// parameters, so a member it does not take (which validation ignores, as AWS does)
    /// must not set one (review 17, finding 03). The same at every depth: a structure in
    /// a list or map keeps only its shape's members too, since authorization reads nested
    /// members by names the operation's shapes may not have (a tag's value from `Value` or
    /// KMS's `TagValue`: a Secrets Manager tag `{"Key": "team", "TagValue": "blue"}` was
    /// authorized as team=blue and stored as team="", review 18, finding 02).
    pub fn keep_input_members(&self, operation: &str, body: &mut serde_json::Value) {
        match self.input_shape(operation) {
            Some(shape @ Shape { kind: ShapeKind::Structure(_), .. }) => {
                self.keep_members_of(shape, body);
            }
            _ => {
                if let serde_json::Value::Object(object) = body {
                    object.clear();
                }
            }
        }
    }

    /// [`Self::keep_input_members`] of `value` read as `shape`. A value of another JSON type
    /// than its shape's is left as it is (validation has answered for it). The walk goes no
    /// deeper than the body, which `serde_json` refuses past 128 levels.
    fn keep_members_of(&self, shape: &Shape, value: &mut serde_json::Value) {
        use serde_json::Value;
        match (&shape.kind, value) {
            (ShapeKind::Structure(members), Value::Object(object)) => {
                object.retain(|name, _| members.iter().any(|m| &m.name == name));
                for member in members {
                    // Only an object or a list holds members (a scalar, the most of
                    // every request, costs no shape lookup).
                    if let Some(inner) = object.get_mut(&member.name)
                        && (inner.is_object() || inner.is_array())
                    {
                        self.keep_members_of(self.shape(&member.shape), inner);
                    }
                }
            }
            (ShapeKind::List(member), Value::Array(items)) => {
                let member = self.shape(member);
                if member.kind.holds_members() {
                    for item in items {
                        self.keep_members_of(member, item);
                    }
                }
            }
            (ShapeKind::Map { value: inner, .. }, Value::Object(entries)) => {
                let inner = self.shape(inner);
                if inner.kind.holds_members() {
                    for item in entries.values_mut() {
                        self.keep_members_of(inner, item);
                    }
                }
            }
            _ => {}
        }
    }

    /// A shape by name. Every reference in a loaded model resolves (see `from_json`).
    pub(crate) fn shape(&self, name: &str) -> &Shape {
        &self.shapes[name]
    }

    /// The Java source of every pattern in the model, with whether it compiled.
    pub fn patterns(&self) -> impl Iterator<Item = (&str, bool)> {
        self.shapes
            .values()
            .filter_map(|s| s.pattern.as_ref())
            .map(|p| (p.source.as_str(), p.regex.is_some()))
    }
}

/// Compiles a model pattern (Java `java.util.regex` syntax) for the `regex` crate, with
/// Java's semantics where the two differ:
///
/// * AWS matches the whole value (`Pattern.matches`), so the result is anchored at both ends.
/// * `\w`, `\d` and `\s` are ASCII-only in Java but Unicode-aware in `regex`, so they are
///   spelled out as ASCII classes (nested classes are unions in `regex`, so this also
///   works inside `[...]`).
/// * Java reads any escaped non-alphanumeric character as a literal, while `regex` gives
///   some of them meaning (`\<` and `\>` are word boundaries there), so such escapes are
///   re-escaped for `regex`.
pub fn compile_java_pattern(java: &str) -> Result<Regex, regex::Error> {
    let mut out = String::with_capacity(java.len() + 8);
    let mut chars = java.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('w') => out.push_str("[0-9A-Za-z_]"),
            Some('W') => out.push_str("[^0-9A-Za-z_]"),
            Some('d') => out.push_str("[0-9]"),
            Some('D') => out.push_str("[^0-9]"),
            Some('s') => out.push_str(r"[\t\n\x0B\x0C\r ]"),
            Some('S') => out.push_str(r"[^\t\n\x0B\x0C\r ]"),
            Some(c) if c.is_ascii() && !c.is_ascii_alphanumeric() => {
                out.push_str(&format!(r"\x{{{:02X}}}", c as u32))
            }
            Some(c) => {
                out.push('\\');
                out.push(c);
            }
            None => out.push('\\'),
        }
    }
    Regex::new(&format!("^(?:{out})$"))
}

#[derive(Deserialize)]
struct RawModel {
    operations: BTreeMap<String, RawOperation>,
    shapes: HashMap<String, RawShape>,
}

#[derive(Deserialize)]
struct RawOperation {
    input: Option<RawRef>,
    output: Option<RawRef>,
}

#[derive(Deserialize)]
struct RawRef {
    shape: String,
    #[serde(default)]
    sensitive: bool,
}

#[derive(Deserialize)]
struct RawShape {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, deserialize_with = "ordered_members")]
    members: Vec<(String, RawRef)>,
    #[serde(default)]
    required: Vec<String>,
    member: Option<RawRef>,
    key: Option<RawRef>,
    value: Option<RawRef>,
    min: Option<i64>,
    max: Option<i64>,
    pattern: Option<String>,
    #[serde(default, rename = "enum")]
    enum_values: Vec<String>,
    #[serde(default)]
    sensitive: bool,
}

impl RawShape {
    fn into_shape(self) -> Result<Shape, String> {
        let missing = |what: &str| format!("{} shape without {what}", self.kind);
        let kind = match self.kind.as_str() {
            "structure" => ShapeKind::Structure(
                self.members
                    .into_iter()
                    .map(|(name, r)| Member {
                        required: self.required.contains(&name),
                        name,
                        shape: r.shape,
                        sensitive: r.sensitive,
                    })
                    .collect(),
            ),
            "list" => ShapeKind::List(self.member.ok_or_else(|| missing("member"))?.shape),
            "map" => ShapeKind::Map {
                key: self.key.ok_or_else(|| missing("key"))?.shape,
                value: self.value.ok_or_else(|| missing("value"))?.shape,
            },
            "string" => ShapeKind::String,
            "integer" => ShapeKind::Integer,
            "long" => ShapeKind::Long,
            "float" | "double" => ShapeKind::Float,
            "boolean" => ShapeKind::Boolean,
            "timestamp" => ShapeKind::Timestamp,
            "blob" => ShapeKind::Blob,
            other => return Err(format!("unsupported shape type {other}")),
        };
        let pattern = self
            .pattern
            .map(|source| Pattern { regex: compile_java_pattern(&source).ok(), source });
        Ok(Shape {
            kind,
            min: self.min,
            max: self.max,
            pattern,
            enum_values: self.enum_values,
            sensitive: self.sensitive,
            control_free: false,
        })
    }
}

/// Reads a JSON object as a list of entries in document order: AWS checks and reports
/// members in the order the model lists them, and `serde_json`'s map does not keep it.
fn ordered_members<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, RawRef)>, D::Error> {
    struct Ordered;
    impl<'de> Visitor<'de> for Ordered {
        type Value = Vec<(String, RawRef)>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map of members")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut members = Vec::new();
            while let Some(entry) = map.next_entry()? {
                members.push(entry);
            }
            Ok(members)
        }
    }
    d.deserialize_map(Ordered)
}
