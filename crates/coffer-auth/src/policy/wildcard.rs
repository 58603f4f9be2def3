//! IAM's wildcard matching: `*` matches any run of characters (also none), `?` exactly one.

/// True when `text` matches `pattern`. Actions compare without regard to case, ARNs and
/// condition values with it, so the caller chooses.
pub fn wildcard_match(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let eq = |a: char, b: char| {
        if ignore_case { a.to_lowercase().eq(b.to_lowercase()) } else { a == b }
    };
    // Greedy matching with one backtrack point: the position after the last `*` seen.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && eq(p[pi], t[ti]))) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
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
    p[pi..].iter().all(|&c| c == '*')
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
}
