//! Checks a request body against its operation's input shape, the way AWS's JSON 1.1
//! services do.
//!
//! A value of the wrong JSON type is a `SerializationException` and stops the check.
//! Constraint violations (missing required members, lengths, ranges, patterns, enums)
//! are all collected and reported together as one `ValidationException`, in AWS's words:
//! `1 validation error detected: Value 'x' at 'name' failed to satisfy constraint: ...`,
//! worded by `coffer_core::validation`. Values of sensitive shapes are never echoed.

use base64::Engine;
use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use coffer_core::validation::{self, Constraint, Violation};
use coffer_core::{AwsError, ErrorCode};
use serde_json::Value;

use crate::model::{ServiceModel, Shape, ShapeKind};
use crate::operation::SecretsManagerOp;

/// What AWS writes in place of a sensitive value.
const REDACTED: &str = "*** Sensitive Data Redacted ***";

/// The constraint reported for a control character where none may be: AWS's wording
/// for a pattern, with the pattern that holds for these shapes.
const CONTROL_CONSTRAINT: Constraint<'static> =
    Constraint::Pattern("[^\\u0000-\\u001F\\u007F-\\u009F]*");

/// Standard base64, with or without padding, as the SDKs send blobs.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Checks a request body against the input shape of `operation`. `body` is the parsed
/// JSON (an empty body is treated as `{}` by the caller). Unknown members are ignored
/// and `null` counts as absent, as at AWS.
pub fn validate_input(
    model: &ServiceModel,
    operation: &str,
    body: &serde_json::Value,
) -> Result<(), AwsError> {
    let Some(input) = model.input_shape(operation) else {
        return Err(AwsError::new(
            ErrorCode::UnknownOperation,
            format!("Unknown operation {operation}"),
        ));
    };
    if !body.is_object() {
        return Err(serialization(format!(
            "Expected a JSON object as the request body, found {}",
            json_type(body)
        )));
    }
    let mut checker = Checker { model, violations: Vec::new() };
    checker.check(input, false, body, "")?;
    if checker.violations.is_empty() {
        check_quotas(model, operation, body)
    } else {
        Err(AwsError::validation(validation::detected(&checker.violations)))
    }
}

/// The most tags a secret may have (AWS's quota; the model's `TagListType` has no max).
pub const MAX_SECRET_TAGS: usize = 50;

/// Quotas AWS enforces beyond the model, on a request that is otherwise valid. CreateSecret
/// may carry at most [`MAX_SECRET_TAGS`] tags, with the error TagResource gives when a
/// merge would pass the quota (KMS checks its own tag quota in `coffer-kms`).
fn check_quotas(model: &ServiceModel, operation: &str, body: &Value) -> Result<(), AwsError> {
    if std::ptr::eq(model, ServiceModel::secretsmanager())
        && SecretsManagerOp::from_name(operation) == Some(SecretsManagerOp::CreateSecret)
        && body.get("Tags").and_then(Value::as_array).is_some_and(|t| t.len() > MAX_SECRET_TAGS)
    {
        return Err(AwsError::new(ErrorCode::LimitExceeded, TOO_MANY_SECRET_TAGS));
    }
    Ok(())
}

/// AWS's message when a secret would have more than [`MAX_SECRET_TAGS`] tags.
pub const TOO_MANY_SECRET_TAGS: &str =
    "The request failed because it would exceed the limit of 50 tags per secret.";

struct Checker<'m> {
    model: &'m ServiceModel,
    violations: Vec<String>,
}

impl Checker<'_> {
    /// Checks one value against its shape. `sensitive` is set when the member that holds
    /// the value is sensitive itself; `path` is the member path AWS reports.
    fn check(
        &mut self,
        shape: &Shape,
        sensitive: bool,
        value: &Value,
        path: &str,
    ) -> Result<(), AwsError> {
        match (&shape.kind, value) {
            (ShapeKind::Structure(members), Value::Object(object)) => {
                for member in members {
                    let path = join(path, &lower_first(&member.name));
                    match object.get(&member.name).filter(|v| !v.is_null()) {
                        Some(v) => {
                            self.check(self.model.shape(&member.shape), member.sensitive, v, &path)?
                        }
                        None if member.required => {
                            self.violations.push(Violation::null(&path).to_string())
                        }
                        None => {}
                    }
                }
            }
            (ShapeKind::List(member), Value::Array(items)) => {
                self.check_length(shape, sensitive, value, items.len(), path);
                let member = self.model.shape(member);
                for (i, item) in items.iter().enumerate() {
                    let path = format!("{path}.{}.member", i + 1);
                    if item.is_null() {
                        return Err(serialization(format!("Unexpected null at '{path}'")));
                    }
                    self.check(member, false, item, &path)?;
                }
            }
            (ShapeKind::Map { key, value: value_shape }, Value::Object(entries)) => {
                self.check_length(shape, sensitive, value, entries.len(), path);
                let (key, value_shape) = (self.model.shape(key), self.model.shape(value_shape));
                for (k, v) in entries {
                    let path = join(path, k);
                    if v.is_null() {
                        return Err(serialization(format!("Unexpected null at '{path}'")));
                    }
                    self.check(key, false, &Value::String(k.clone()), &path)?;
                    self.check(value_shape, false, v, &path)?;
                }
            }
            (ShapeKind::String, Value::String(s)) => {
                self.check_length(shape, sensitive, value, s.chars().count(), path);
                self.check_pattern_and_enum(shape, sensitive, value, s, path);
                self.check_control_characters(shape, sensitive, value, s, path);
            }
            (ShapeKind::Blob, Value::String(s)) => {
                let mut bytes = BASE64
                    .decode(s)
                    .map_err(|_| serialization(format!("Invalid base64 value at '{path}'")))?;
                self.check_length(shape, sensitive, value, bytes.len(), path);
                // Blobs are often secrets (SecretBinary, Plaintext): wipe the decoded copy
                // instead of leaving it in freed memory. `black_box` keeps the write.
                bytes.fill(0);
                std::hint::black_box(&bytes);
            }
            (ShapeKind::Integer | ShapeKind::Long, Value::Number(n)) => {
                let Some(n) = n.as_i64() else {
                    return Err(serialization(format!(
                        "Expected an integer at '{path}', found {}",
                        if n.is_f64() { "a decimal number" } else { "a number out of range" }
                    )));
                };
                if matches!(shape.kind, ShapeKind::Integer) && i32::try_from(n).is_err() {
                    return Err(serialization(format!(
                        "Expected an integer at '{path}', found a number out of range"
                    )));
                }
                self.check_range(shape, sensitive, value, n, path);
            }
            (ShapeKind::Float, Value::Number(_))
            | (ShapeKind::Boolean, Value::Bool(_))
            | (ShapeKind::Timestamp, Value::Number(_) | Value::String(_)) => {}
            (kind, found) => {
                return Err(serialization(format!(
                    "Expected {} at '{path}', found {}",
                    kind_name(kind),
                    json_type(found)
                )));
            }
        }
        Ok(())
    }

    fn check_length(
        &mut self,
        shape: &Shape,
        sensitive: bool,
        value: &Value,
        len: usize,
        path: &str,
    ) {
        let len = i64::try_from(len).unwrap_or(i64::MAX);
        if let Some(min) = shape.min.filter(|&min| len < min) {
            self.violation(shape, sensitive, value, path, Constraint::MinLength(min));
        } else if let Some(max) = shape.max.filter(|&max| len > max) {
            self.violation(shape, sensitive, value, path, Constraint::MaxLength(max));
        }
    }

    fn check_range(&mut self, shape: &Shape, sensitive: bool, value: &Value, n: i64, path: &str) {
        if let Some(min) = shape.min.filter(|&min| n < min) {
            self.violation(shape, sensitive, value, path, Constraint::MinValue(min));
        } else if let Some(max) = shape.max.filter(|&max| n > max) {
            self.violation(shape, sensitive, value, path, Constraint::MaxValue(max));
        }
    }

    fn check_pattern_and_enum(
        &mut self,
        shape: &Shape,
        sensitive: bool,
        value: &Value,
        s: &str,
        path: &str,
    ) {
        if let Some(pattern) = &shape.pattern
            && pattern.regex.as_ref().is_some_and(|regex| !regex.is_match(s))
        {
            self.violation(shape, sensitive, value, path, Constraint::Pattern(&pattern.source));
        }
        if !shape.enum_values.is_empty() && !shape.enum_values.iter().any(|e| e == s) {
            let values: Vec<&str> = shape.enum_values.iter().map(String::as_str).collect();
            self.violation(shape, sensitive, value, path, Constraint::OneOf(&values));
        }
    }

    /// Refuses control characters where the model names an identifier, token, label or
    /// tag (see `CONTROL_FREE_SHAPES`), and a NUL in any other string but a secret value:
    /// no store can keep it as text (PostgreSQL refuses it outright).
    fn check_control_characters(
        &mut self,
        shape: &Shape,
        sensitive: bool,
        value: &Value,
        s: &str,
        path: &str,
    ) {
        if sensitive || shape.sensitive {
            return;
        }
        let refused =
            if shape.control_free { s.chars().any(|c| c.is_control()) } else { s.contains('\0') };
        if refused {
            self.violation(shape, sensitive, value, path, CONTROL_CONSTRAINT);
        }
    }

    fn violation(
        &mut self,
        shape: &Shape,
        sensitive: bool,
        value: &Value,
        path: &str,
        constraint: Constraint<'_>,
    ) {
        // KMS names no value at all for a sensitive member (`Value at 'plaintext' ...`);
        // Secrets Manager writes the redaction marker in its place.
        let violation =
            if (sensitive || shape.sensitive) && std::ptr::eq(self.model, ServiceModel::kms()) {
                Violation::unnamed(path, constraint)
            } else {
                Violation::rendered(self.render(shape, sensitive, value), path, constraint)
            };
        self.violations.push(violation.to_string());
    }

    /// Renders a value as AWS's Java framework prints it (`[a, b]` for lists), with any
    /// sensitive part, however deep, replaced by the redaction marker.
    fn render(&self, shape: &Shape, sensitive: bool, value: &Value) -> String {
        if sensitive || shape.sensitive {
            return REDACTED.to_owned();
        }
        match (&shape.kind, value) {
            (ShapeKind::List(member), Value::Array(items)) => {
                let member = self.model.shape(member);
                let items: Vec<_> = items.iter().map(|v| self.render(member, false, v)).collect();
                format!("[{}]", items.join(", "))
            }
            (ShapeKind::Map { value: value_shape, .. }, Value::Object(entries)) => {
                let value_shape = self.model.shape(value_shape);
                let entries: Vec<_> = entries
                    .iter()
                    .map(|(k, v)| format!("{k}={}", self.render(value_shape, false, v)))
                    .collect();
                format!("{{{}}}", entries.join(", "))
            }
            (ShapeKind::Structure(members), Value::Object(object)) => {
                let fields: Vec<_> = members
                    .iter()
                    .filter_map(|m| {
                        let v = object.get(&m.name).filter(|v| !v.is_null())?;
                        let rendered = self.render(self.model.shape(&m.shape), m.sensitive, v);
                        Some(format!("{}: {rendered}", m.name))
                    })
                    .collect();
                format!("{{{}}}", fields.join(", "))
            }
            (_, Value::String(s)) => s.clone(),
            (_, other) => other.to_string(),
        }
    }
}

fn serialization(message: String) -> AwsError {
    AwsError::new(ErrorCode::Serialization, message)
}

/// AWS names members in paths with their first letter lower-cased (`secretId`).
fn lower_first(name: &str) -> String {
    let mut chars = name.chars();
    chars.next().map(|c| c.to_lowercase().chain(chars).collect()).unwrap_or_default()
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_owned() } else { format!("{path}.{name}") }
}

fn kind_name(kind: &ShapeKind) -> &'static str {
    match kind {
        ShapeKind::Structure(_) | ShapeKind::Map { .. } => "an object",
        ShapeKind::List(_) => "a list",
        ShapeKind::String => "a string",
        ShapeKind::Blob => "a base64 string",
        ShapeKind::Integer | ShapeKind::Long => "an integer",
        ShapeKind::Float => "a number",
        ShapeKind::Boolean => "a boolean",
        ShapeKind::Timestamp => "a timestamp",
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
