//! Structural checks of resource policy documents (IAM policy grammar).
//!
//! This is the part of policy handling that needs no evaluation: is the
//! document well formed, and does it grant access to everyone? Evaluating
//! policies against requests belongs to the authorization layer.

use serde_json::Value;

/// A problem found in a policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// A short check name, as ValidateResourcePolicy reports it.
    pub check: &'static str,
    pub message: String,
}

fn finding(check: &'static str, message: impl Into<String>) -> Finding {
    Finding { check, message: message.into() }
}

/// Parses a policy and checks its grammar. `Err` holds a message for
/// MalformedPolicyDocumentException.
pub fn parse_policy(text: &str) -> Result<Value, String> {
    let doc: Value = serde_json::from_str(text).map_err(|_| {
        "This resource policy contains a syntax error: it is not valid JSON.".to_string()
    })?;
    let findings = grammar_findings(&doc);
    match findings.first() {
        Some(f) => Err(format!("This resource policy contains an error: {}", f.message)),
        None => Ok(doc),
    }
}

fn statements(doc: &Value) -> Vec<&Value> {
    match doc.get("Statement") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(single @ Value::Object(_)) => vec![single],
        _ => Vec::new(),
    }
}

fn is_string_or_strings(v: &Value) -> bool {
    match v {
        Value::String(_) => true,
        Value::Array(items) => !items.is_empty() && items.iter().all(Value::is_string),
        _ => false,
    }
}

/// Grammar problems: missing or mistyped elements.
pub fn grammar_findings(doc: &Value) -> Vec<Finding> {
    let mut out = Vec::new();
    let Some(obj) = doc.as_object() else {
        out.push(finding("SYNTAX_CHECK", "The policy must be a JSON object."));
        return out;
    };
    if let Some(version) = obj.get("Version")
        && !matches!(version.as_str(), Some("2012-10-17") | Some("2008-10-17"))
    {
        out.push(finding("SYNTAX_CHECK", "Version must be \"2012-10-17\" or \"2008-10-17\"."));
    }
    match obj.get("Statement") {
        Some(Value::Array(list)) if !list.is_empty() => {}
        Some(Value::Object(_)) => {}
        _ => out.push(finding(
            "SYNTAX_CHECK",
            "The policy must have a Statement: an object or a non-empty list.",
        )),
    }
    for (i, statement) in statements(doc).into_iter().enumerate() {
        let n = i + 1;
        let Some(s) = statement.as_object() else {
            out.push(finding("SYNTAX_CHECK", format!("Statement {n} must be an object.")));
            continue;
        };
        if !matches!(s.get("Effect").and_then(Value::as_str), Some("Allow") | Some("Deny")) {
            out.push(finding(
                "SYNTAX_CHECK",
                format!("Statement {n} must have Effect \"Allow\" or \"Deny\"."),
            ));
        }
        let actions = [s.get("Action"), s.get("NotAction")];
        match actions {
            [Some(a), None] | [None, Some(a)] if is_string_or_strings(a) => {}
            _ => out.push(finding(
                "SYNTAX_CHECK",
                format!("Statement {n} must have exactly one of Action or NotAction, as a string or list of strings."),
            )),
        }
        for key in ["Resource", "NotResource"] {
            if let Some(r) = s.get(key)
                && !is_string_or_strings(r)
            {
                out.push(finding(
                    "SYNTAX_CHECK",
                    format!("Statement {n}: {key} must be a string or list of strings."),
                ));
            }
        }
        if s.get("Principal").is_none() && s.get("NotPrincipal").is_none() {
            out.push(finding(
                "SYNTAX_CHECK",
                format!(
                    "Statement {n} must have a Principal or NotPrincipal in a resource policy."
                ),
            ));
        }
        if let Some(c) = s.get("Condition")
            && !c.is_object()
        {
            out.push(finding(
                "SYNTAX_CHECK",
                format!("Statement {n}: Condition must be an object."),
            ));
        }
    }
    out
}

fn principal_is_everyone(p: &Value) -> bool {
    match p {
        Value::String(s) => s == "*",
        Value::Object(map) => map.get("AWS").is_some_and(|aws| match aws {
            Value::String(s) => s == "*",
            Value::Array(items) => items.iter().any(|i| i.as_str() == Some("*")),
            _ => false,
        }),
        _ => false,
    }
}

/// Statements that allow anyone at all (Principal `*`, no Condition) make a policy public.
pub fn grants_public_access(doc: &Value) -> bool {
    statements(doc).into_iter().any(|s| {
        s.get("Effect").and_then(Value::as_str) == Some("Allow")
            && s.get("Condition").is_none()
            && (s.get("Principal").is_some_and(principal_is_everyone)
                || s.get("NotPrincipal").is_some())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#;

    #[test]
    fn a_well_formed_policy_parses_and_is_not_public() {
        let doc = parse_policy(GOOD).unwrap();
        assert!(!grants_public_access(&doc));
    }

    #[test]
    fn invalid_json_and_missing_elements_are_malformed() {
        assert!(parse_policy("{not json").is_err());
        assert!(parse_policy(r#"{"Version":"2012-10-17"}"#).is_err());
        let no_effect = r#"{"Statement":[{"Principal":"*","Action":"*","Resource":"*"}]}"#;
        assert!(parse_policy(no_effect).unwrap_err().contains("Effect"));
        let no_principal = r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
        assert!(parse_policy(no_principal).unwrap_err().contains("Principal"));
    }

    #[test]
    fn a_wildcard_principal_without_condition_is_public() {
        let public = GOOD.replace(r#"{"AWS":"arn:aws:iam::111122223333:root"}"#, r#""*""#);
        assert!(grants_public_access(&parse_policy(&public).unwrap()));
        let conditioned = public.replace(
            r#""Resource":"*""#,
            r#""Resource":"*","Condition":{"StringEquals":{"aws:PrincipalAccount":"111122223333"}}"#,
        );
        assert!(!grants_public_access(&parse_policy(&conditioned).unwrap()));
    }
}
