//! AWS's validation messages, worded in one place for every service and protocol:
//! `1 validation error detected: Value 'x' at 'member' failed to satisfy constraint: ...`,
//! as the JSON services' `ValidationException` and the query services' `ValidationError`
//! both carry it.
//!
//! A [`Violation`] names the value (quoted, and cut at [`MAX_ECHO_CHARS`] characters so a
//! hostile value is not reflected in full), `null` for a missing member, or nothing where
//! AWS names no value (a sensitive member, a list too long); its [`Constraint`] is worded
//! as AWS words it. [`detected`] joins several into one message.

use std::borrow::Cow;
use std::fmt;

/// The most characters of a client-supplied value that an error message quotes. AWS
/// quotes the Authorization header in IncompleteSignature messages; a well-formed one is
/// about 250 characters, so this bound leaves it whole while a hostile 300 KB header is
/// not reflected (or logged) in full.
pub const MAX_ECHO_CHARS: usize = 512;

/// `value` as an error message may quote it: at most [`MAX_ECHO_CHARS`] characters, cut on
/// a character boundary and marked when cut.
pub fn echo(value: &str) -> Cow<'_, str> {
    echo_at_most(value, MAX_ECHO_CHARS)
}

/// `value` cut at `max` characters (marked `...`).
pub fn echo_at_most(value: &str, max: usize) -> Cow<'_, str> {
    match value.char_indices().nth(max) {
        None => Cow::Borrowed(value),
        Some((cut, _)) => Cow::Owned(format!("{}...", &value[..cut])),
    }
}

/// A constraint of a service model that a value broke, worded by its `Display` as AWS's
/// messages word it (`Member must ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Constraint<'a> {
    /// `Member must not be null`.
    NotNull,
    /// `Member must have length greater than or equal to N`.
    MinLength(i64),
    /// `Member must have length less than or equal to N`.
    MaxLength(i64),
    /// `Member must have value greater than or equal to N`.
    MinValue(i64),
    /// `Member must have value less than or equal to N`.
    MaxValue(i64),
    /// `Member must have value between A and B` (IAM's words for a range).
    ValueBetween(i64, i64),
    /// `Member must satisfy regular expression pattern: P`.
    Pattern(&'a str),
    /// `Member must satisfy enum value set: [A, B]`.
    OneOf(&'a [&'a str]),
    /// `Member must satisfy constraint: [C1, C2]`: a list's members' constraints, as IAM
    /// words them for a list whose members broke them.
    Members(&'a [Constraint<'a>]),
}

impl fmt::Display for Constraint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Constraint::NotNull => f.write_str("Member must not be null"),
            Constraint::MinLength(n) => {
                write!(f, "Member must have length greater than or equal to {n}")
            }
            Constraint::MaxLength(n) => {
                write!(f, "Member must have length less than or equal to {n}")
            }
            Constraint::MinValue(n) => {
                write!(f, "Member must have value greater than or equal to {n}")
            }
            Constraint::MaxValue(n) => {
                write!(f, "Member must have value less than or equal to {n}")
            }
            Constraint::ValueBetween(low, high) => {
                write!(f, "Member must have value between {low} and {high}")
            }
            Constraint::Pattern(pattern) => {
                write!(f, "Member must satisfy regular expression pattern: {pattern}")
            }
            Constraint::OneOf(values) => {
                write!(f, "Member must satisfy enum value set: [{}]", values.join(", "))
            }
            Constraint::Members(constraints) => {
                f.write_str("Member must satisfy constraint: [")?;
                for (i, constraint) in constraints.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{constraint}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// How a violation shows the value that broke its constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shown<'a> {
    /// `Value 'x'`.
    Quoted(Cow<'a, str>),
    /// `Value null`: the member is missing.
    Null,
    /// `Value`: AWS names no value.
    Unnamed,
}

/// One member's broken constraint: `Value 'x' at 'member' failed to satisfy constraint: C`.
/// Its `Display` is the clause; [`Violation::message`] the whole message of a request
/// with this one violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation<'a> {
    shown: Shown<'a>,
    member: &'a str,
    constraint: Constraint<'a>,
}

impl<'a> Violation<'a> {
    /// A value as the client sent it, quoted at most [`MAX_ECHO_CHARS`] characters.
    pub fn value(value: &'a str, member: &'a str, constraint: Constraint<'a>) -> Self {
        Self::value_at_most(value, MAX_ECHO_CHARS, member, constraint)
    }

    /// A value quoted at most `max` characters: shorter than [`Violation::value`] where
    /// the whole message must stay within [`MAX_ECHO_CHARS`] with its constraint intact.
    pub fn value_at_most(
        value: &'a str,
        max: usize,
        member: &'a str,
        constraint: Constraint<'a>,
    ) -> Self {
        Violation { shown: Shown::Quoted(echo_at_most(value, max)), member, constraint }
    }

    /// A number the client sent, or that stands for what it sent (a default it left out).
    pub fn number(value: i64, member: &'a str, constraint: Constraint<'a>) -> Self {
        Violation { shown: Shown::Quoted(Cow::Owned(value.to_string())), member, constraint }
    }

    /// A value the caller rendered itself, quoted whole: the JSON protocol's values, which
    /// its model bounds, with lists written `[a, b]` and sensitive parts redacted.
    pub fn rendered(rendered: String, member: &'a str, constraint: Constraint<'a>) -> Self {
        Violation { shown: Shown::Quoted(Cow::Owned(rendered)), member, constraint }
    }

    /// A required member the request does not carry: `Value null at 'member' failed to
    /// satisfy constraint: Member must not be null`.
    pub fn null(member: &'a str) -> Self {
        Violation { shown: Shown::Null, member, constraint: Constraint::NotNull }
    }

    /// A violation whose value AWS does not name (`Value at 'member' ...`): a sensitive
    /// member's, a list's that is too long, one IAM leaves out.
    pub fn unnamed(member: &'a str, constraint: Constraint<'a>) -> Self {
        Violation { shown: Shown::Unnamed, member, constraint }
    }

    /// The message of a request with this one violation: `1 validation error detected:
    /// Value ...`.
    pub fn message(&self) -> String {
        detected(std::slice::from_ref(self))
    }
}

impl fmt::Display for Violation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.shown {
            Shown::Quoted(value) => write!(f, "Value '{value}'")?,
            Shown::Null => f.write_str("Value null")?,
            Shown::Unnamed => f.write_str("Value")?,
        }
        write!(f, " at '{}' failed to satisfy constraint: {}", self.member, self.constraint)
    }
}

/// The message of a request with these violations (at least one), in the order given:
/// `1 validation error detected: V`, or `N validation errors detected: V1; V2`.
pub fn detected<V: fmt::Display>(violations: &[V]) -> String {
    debug_assert!(!violations.is_empty(), "a validation message names a violation");
    let joined = violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
    match violations.len() {
        1 => format!("1 validation error detected: {joined}"),
        n => format!("{n} validation errors detected: {joined}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quoted_value_names_value_member_and_constraint() {
        let violation = Violation::value("s", "roleSessionName", Constraint::MinLength(2));
        assert_eq!(
            violation.message(),
            "1 validation error detected: Value 's' at 'roleSessionName' failed to satisfy \
             constraint: Member must have length greater than or equal to 2"
        );
    }

    #[test]
    fn a_missing_member_is_null() {
        assert_eq!(
            Violation::null("roleArn").message(),
            "1 validation error detected: Value null at 'roleArn' failed to satisfy \
             constraint: Member must not be null"
        );
    }

    #[test]
    fn an_unnamed_value_is_left_out() {
        assert_eq!(
            Violation::unnamed("tags", Constraint::MaxLength(50)).message(),
            "1 validation error detected: Value at 'tags' failed to satisfy constraint: \
             Member must have length less than or equal to 50"
        );
    }

    #[test]
    fn a_number_is_quoted() {
        assert_eq!(
            Violation::number(-5, "durationSeconds", Constraint::MinValue(900)).message(),
            "1 validation error detected: Value '-5' at 'durationSeconds' failed to satisfy \
             constraint: Member must have value greater than or equal to 900"
        );
        assert_eq!(
            Violation::number(31, "pendingWindowInDays", Constraint::MaxValue(30)).to_string(),
            "Value '31' at 'pendingWindowInDays' failed to satisfy constraint: Member must \
             have value less than or equal to 30"
        );
    }

    #[test]
    fn a_long_value_is_cut_at_the_echo_bound_and_marked() {
        let long = "é".repeat(MAX_ECHO_CHARS + 1);
        let message = Violation::value(&long, "name", Constraint::MaxLength(32)).message();
        let quoted = format!("'{}...'", "é".repeat(MAX_ECHO_CHARS));
        assert!(message.contains(&quoted), "{message}");
        let exact = "a".repeat(MAX_ECHO_CHARS);
        let message = Violation::value(&exact, "name", Constraint::MaxLength(32)).message();
        assert!(message.contains(&format!("'{exact}'")), "{message}");
    }

    #[test]
    fn a_value_may_be_cut_shorter() {
        let long = "x".repeat(300);
        let message =
            Violation::value_at_most(&long, 256, "policy", Constraint::MaxLength(2048)).message();
        assert!(message.contains(&format!("'{}...' at 'policy'", "x".repeat(256))), "{message}");
    }

    #[test]
    fn a_rendered_value_is_quoted_whole() {
        let rendered = format!("[{}]", "v".repeat(MAX_ECHO_CHARS + 10));
        let violation = Violation::rendered(rendered.clone(), "filters", Constraint::MaxLength(10));
        assert!(violation.to_string().starts_with(&format!("Value '{rendered}' at 'filters'")));
    }

    #[test]
    fn constraints_are_worded_as_aws_words_them() {
        let words = [
            (Constraint::NotNull, "Member must not be null"),
            (Constraint::MinLength(1), "Member must have length greater than or equal to 1"),
            (Constraint::MaxLength(64), "Member must have length less than or equal to 64"),
            (Constraint::MinValue(7), "Member must have value greater than or equal to 7"),
            (Constraint::MaxValue(30), "Member must have value less than or equal to 30"),
            (Constraint::ValueBetween(1, 1000), "Member must have value between 1 and 1000"),
            (
                Constraint::Pattern("[\\w+=,.@-]*"),
                "Member must satisfy regular expression pattern: [\\w+=,.@-]*",
            ),
            (
                Constraint::OneOf(&["Active", "Inactive"]),
                "Member must satisfy enum value set: [Active, Inactive]",
            ),
            (
                Constraint::Members(&[Constraint::MaxLength(40), Constraint::MinLength(40)]),
                "Member must satisfy constraint: [Member must have length less than or equal \
                 to 40, Member must have length greater than or equal to 40]",
            ),
        ];
        for (constraint, expected) in words {
            assert_eq!(constraint.to_string(), expected);
        }
    }

    #[test]
    fn several_violations_are_counted_and_joined() {
        let violations =
            [Violation::unnamed("url", Constraint::MinLength(1)), Violation::null("clientIDList")];
        assert_eq!(
            detected(&violations),
            "2 validation errors detected: Value at 'url' failed to satisfy constraint: Member \
             must have length greater than or equal to 1; Value null at 'clientIDList' failed \
             to satisfy constraint: Member must not be null"
        );
        assert_eq!(detected(&violations[..1]), violations[0].message());
    }
}
