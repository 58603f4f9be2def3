//! IAM's wildcard matching: `*` matches any run of characters (also none), `?` exactly one.

/// True when `text` matches `pattern`. Actions compare without regard to case, ARNs and
/// condition values with it, so the caller chooses.
///
/// Every statement of every policy a call is decided on passes through here (actions,
/// resources, `StringLike` conditions), so the common case, ASCII on both sides, compares
/// bytes in place; anything else compares characters, folding case as Unicode does.
pub fn wildcard_match(pattern: &str, text: &str, ignore_case: bool) -> bool {
    if pattern == "*" {
        return true;
    }
    if first_bytes_differ(pattern, text, ignore_case) {
        return false;
    }
    if pattern.is_ascii() && text.is_ascii() {
        let eq = |a: &u8, b: &u8| if ignore_case { a.eq_ignore_ascii_case(b) } else { a == b };
        return matches(pattern.as_bytes(), text.as_bytes(), b'*', b'?', eq);
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let eq = |a: &char, b: &char| {
        if ignore_case { a.to_lowercase().eq(b.to_lowercase()) } else { a == b }
    };
    matches(&p, &t, '*', '?', eq)
}

/// True when `pattern` starts with a literal ASCII character that `text`'s first, ASCII
/// too, is not: no match is possible. A long action list (AWS's ReadOnlyAccess names
/// thousands, one service after another) is mostly decided here, before either string is
/// scanned whole. A non-ASCII first character (whose case may fold to an ASCII one) goes
/// the long way.
fn first_bytes_differ(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let (Some(&p), Some(&t)) = (pattern.as_bytes().first(), text.as_bytes().first()) else {
        return false;
    };
    if p == b'*' || p == b'?' || !p.is_ascii() || !t.is_ascii() {
        return false;
    }
    if ignore_case { !p.eq_ignore_ascii_case(&t) } else { p != t }
}

/// Greedy matching with one backtrack point: the position after the last `*` seen.
fn matches<T: Copy + PartialEq>(
    p: &[T],
    t: &[T],
    star_sym: T,
    one: T,
    eq: impl Fn(&T, &T) -> bool,
) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == one || (p[pi] != star_sym && eq(&p[pi], &t[ti]))) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == star_sym {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == star_sym)
}

#[cfg(test)]
mod tests {
    use super::wildcard_match;

    #[test]
    fn stars_and_question_marks_match_as_iam_documents() {
        assert!(wildcard_match("*", "", false));
        assert!(wildcard_match("secretsmanager:Get*", "secretsmanager:GetSecretValue", false));
        assert!(wildcard_match("SecretsManager:get*", "secretsmanager:GetSecretValue", true));
        assert!(!wildcard_match("SecretsManager:get*", "secretsmanager:GetSecretValue", false));
        let arn = "arn:aws:secretsmanager:us-east-1:111122223333:secret:prod/db-AbCdEf";
        assert!(wildcard_match("arn:aws:secretsmanager:*:*:secret:prod/*", arn, false));
        assert!(wildcard_match(
            "arn:aws:secretsmanager:us-east-1:111122223333:secret:prod/db-??????",
            arn,
            false
        ));
        assert!(!wildcard_match(
            "arn:aws:secretsmanager:us-east-1:111122223333:secret:prod/db-?????",
            arn,
            false
        ));
        assert!(!wildcard_match("arn:aws:secretsmanager:*:*:secret:dev/*", arn, false));
        assert!(wildcard_match("a*b*c", "aXbYbZc", false));
        assert!(!wildcard_match("a*b*c", "aXbYbZ", false));
    }

    #[test]
    fn bytes_and_characters_match_alike() {
        // The ASCII path (bytes) and the general one (characters) must agree; a non-ASCII
        // text sends the same pattern through the general path.
        let cases = [
            ("kms:ReEncrypt*", "kms:ReEncryptFrom", true),
            ("KMS:reencrypt*", "kms:ReEncryptFrom", true),
            ("kms:Decrypt", "kms:decrypt", true),
            ("kms:Decrypt", "kms:decrypt", false),
            ("*:*", "a:b", false),
            ("a?c*", "abcdef", false),
            ("a?c*", "ac", false),
            ("*x", "yyyyx", false),
            ("", "", false),
            ("", "a", false),
        ];
        for (pattern, text, fold) in cases {
            let ascii = wildcard_match(pattern, text, fold);
            let wide = wildcard_match(&format!("{pattern}é"), &format!("{text}é"), fold);
            assert_eq!(ascii, wide, "{pattern} {text} {fold}");
        }
        assert!(wildcard_match("ÉTÉ*", "été", true));
        assert!(!wildcard_match("ÉTÉ*", "été", false));
    }

    #[test]
    fn a_first_character_that_differs_decides_only_when_it_can() {
        assert!(!wildcard_match("a4b:Get*", "secretsmanager:DescribeSecret", true));
        assert!(wildcard_match("S*", "secretsmanager:DescribeSecret", true));
        assert!(!wildcard_match("S*", "secretsmanager:DescribeSecret", false));
        assert!(wildcard_match("?ecretsmanager:*", "secretsmanager:DescribeSecret", false));
        assert!(wildcard_match("*Secret", "secretsmanager:DescribeSecret", false));
        // The Kelvin sign folds to an ASCII `k`: a non-ASCII first character is compared
        // the long way, as before.
        assert_eq!(wildcard_match("k*", "\u{212A}ms", true), "\u{212A}".to_lowercase() == "k");
        assert_eq!(wildcard_match("\u{212A}*", "kms", true), "\u{212A}".to_lowercase() == "k");
        assert!(!wildcard_match("a", "", false));
        assert!(wildcard_match("", "", false));
    }
}
