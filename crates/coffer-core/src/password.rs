//! GetRandomPassword: builds a password from the character classes a request allows.

use crate::error::AwsError;
use rand::CryptoRng;
use rand::Rng;
use rand::seq::SliceRandom;

/// The punctuation AWS draws from, the same set as Python's `string.punctuation`.
pub const PUNCTUATION: &str = r##"!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~"##;

/// The longest password the service model allows.
pub const MAX_PASSWORD_LENGTH: u64 = 4096;

/// The length AWS uses when the request gives none.
pub const DEFAULT_PASSWORD_LENGTH: u64 = 32;

const LOWERCASE: &str = "abcdefghijklmnopqrstuvwxyz";
const UPPERCASE: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS: &str = "0123456789";

/// The options of a GetRandomPassword request, with AWS defaults for absent members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordSpec {
    pub length: u64,
    pub exclude_characters: String,
    pub exclude_numbers: bool,
    pub exclude_punctuation: bool,
    pub exclude_uppercase: bool,
    pub exclude_lowercase: bool,
    pub include_space: bool,
    pub require_each_included_type: bool,
}

impl Default for PasswordSpec {
    fn default() -> Self {
        PasswordSpec {
            length: DEFAULT_PASSWORD_LENGTH,
            exclude_characters: String::new(),
            exclude_numbers: false,
            exclude_punctuation: false,
            exclude_uppercase: false,
            exclude_lowercase: false,
            include_space: false,
            require_each_included_type: true,
        }
    }
}

impl PasswordSpec {
    /// The character types RequireEachIncludedType requires one of, each without the
    /// excluded characters: the four AWS names (lowercase, uppercase, numbers,
    /// punctuation) that are not switched off. A type that exclusions emptied is left
    /// out, so it is never required. The space is not one of them: with IncludeSpace the
    /// password "can contain" spaces (AWS's model), so it is admitted, never required.
    fn required_types(&self) -> Vec<Vec<u8>> {
        let wanted = [
            (!self.exclude_lowercase, LOWERCASE),
            (!self.exclude_uppercase, UPPERCASE),
            (!self.exclude_numbers, DIGITS),
            (!self.exclude_punctuation, PUNCTUATION),
        ];
        wanted
            .into_iter()
            .filter(|(included, _)| *included)
            .map(|(_, class)| self.without_excluded(class))
            .filter(|class: &Vec<u8>| !class.is_empty())
            .collect()
    }

    /// Every character the password may hold: the types, and the space when included.
    fn pool(&self, types: &[Vec<u8>]) -> Vec<u8> {
        let mut pool = types.concat();
        if self.include_space {
            pool.extend(self.without_excluded(" "));
        }
        pool
    }

    fn without_excluded(&self, class: &str) -> Vec<u8> {
        class.bytes().filter(|b| !self.exclude_characters.contains(char::from(*b))).collect()
    }
}

/// Generates a password as GetRandomPassword does.
///
/// Every character is chosen uniformly from the allowed ones. With
/// `require_each_included_type`, one character of each required type (not the space) is
/// drawn from that type and the password is then shuffled, so the required characters
/// land anywhere.
pub fn generate_password<R: CryptoRng + ?Sized>(
    spec: &PasswordSpec,
    rng: &mut R,
) -> Result<String, AwsError> {
    if spec.length == 0 || spec.length > MAX_PASSWORD_LENGTH {
        return Err(AwsError::invalid_parameter(format!(
            "PasswordLength must be between 1 and {MAX_PASSWORD_LENGTH}."
        )));
    }
    let length = usize::try_from(spec.length).map_err(|_| AwsError::internal())?;
    let types = spec.required_types();
    let pool = spec.pool(&types);
    if pool.is_empty() {
        return Err(AwsError::invalid_parameter(
            "The password can't be generated because every character is excluded.",
        ));
    }
    let required: &[Vec<u8>] = if spec.require_each_included_type { &types } else { &[] };
    if length < required.len() {
        return Err(AwsError::invalid_parameter(
            "Password length is too short based on the required types.",
        ));
    }

    // Allocated once at its final size and handed to String without a copy, so no stray
    // copy of the password is left behind in freed memory.
    let mut password = Vec::with_capacity(length);
    for class in required {
        password.push(pick(class, rng));
    }
    while password.len() < length {
        password.push(pick(&pool, rng));
    }
    password.shuffle(rng);
    String::from_utf8(password).map_err(|_| AwsError::internal())
}

/// A uniformly chosen byte of a non-empty class; `random_range` has no modulo bias.
fn pick<R: CryptoRng + ?Sized>(class: &[u8], rng: &mut R) -> u8 {
    class[rng.random_range(0..class.len())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const RUNS: u64 = 300;

    fn generate(spec: &PasswordSpec, seed: u64) -> String {
        generate_password(spec, &mut StdRng::seed_from_u64(seed)).unwrap()
    }

    fn many(spec: &PasswordSpec) -> Vec<String> {
        (0..RUNS).map(|seed| generate(spec, seed)).collect()
    }

    fn error_of(spec: &PasswordSpec) -> AwsError {
        generate_password(spec, &mut StdRng::seed_from_u64(0)).unwrap_err()
    }

    #[test]
    fn punctuation_is_pythons_string_punctuation() {
        assert_eq!(PUNCTUATION.len(), 32);
        assert!(PUNCTUATION.chars().all(|c| c.is_ascii_punctuation()));
        let distinct: std::collections::BTreeSet<char> = PUNCTUATION.chars().collect();
        assert_eq!(distinct.len(), 32);
    }

    #[test]
    fn defaults_are_the_aws_defaults() {
        let spec = PasswordSpec::default();
        assert_eq!(spec.length, 32);
        assert!(spec.require_each_included_type);
        assert!(spec.exclude_characters.is_empty());
        assert!(!spec.exclude_numbers && !spec.exclude_punctuation);
        assert!(!spec.exclude_uppercase && !spec.exclude_lowercase && !spec.include_space);
    }

    #[test]
    fn default_password_has_32_characters_of_every_type() {
        for password in many(&PasswordSpec::default()) {
            assert_eq!(password.len(), 32);
            assert!(password.chars().any(|c| c.is_ascii_lowercase()), "{password}");
            assert!(password.chars().any(|c| c.is_ascii_uppercase()), "{password}");
            assert!(password.chars().any(|c| c.is_ascii_digit()), "{password}");
            assert!(password.chars().any(|c| PUNCTUATION.contains(c)), "{password}");
            assert!(password.chars().all(|c| c.is_ascii_graphic()), "{password}");
        }
    }

    #[test]
    fn length_is_exact_from_one_to_the_maximum() {
        let spec = PasswordSpec { require_each_included_type: false, ..PasswordSpec::default() };
        for length in [1, 2, 4, 33, 1000, MAX_PASSWORD_LENGTH] {
            let password = generate(&PasswordSpec { length, ..spec.clone() }, length);
            assert_eq!(password.len() as u64, length);
        }
    }

    /// Tells whether a character belongs to a character class.
    type ClassTest = fn(char) -> bool;

    #[test]
    fn each_exclusion_flag_removes_its_class() {
        let base = PasswordSpec { length: 64, ..PasswordSpec::default() };
        let cases: [(PasswordSpec, ClassTest); 4] = [
            (PasswordSpec { exclude_lowercase: true, ..base.clone() }, |c| c.is_ascii_lowercase()),
            (PasswordSpec { exclude_uppercase: true, ..base.clone() }, |c| c.is_ascii_uppercase()),
            (PasswordSpec { exclude_numbers: true, ..base.clone() }, |c| c.is_ascii_digit()),
            (PasswordSpec { exclude_punctuation: true, ..base.clone() }, |c| {
                c.is_ascii_punctuation()
            }),
        ];
        for (spec, excluded) in cases {
            for password in many(&spec) {
                assert!(!password.chars().any(excluded), "{spec:?}: {password}");
                assert_eq!(password.len(), 64);
            }
        }
    }

    #[test]
    fn space_appears_only_when_included() {
        assert!(many(&PasswordSpec::default()).iter().all(|p| !p.contains(' ')));
        let spec = PasswordSpec { length: 4096, include_space: true, ..PasswordSpec::default() };
        assert!(generate(&spec, 0).contains(' '));
    }

    #[test]
    fn space_is_admitted_but_never_required() {
        // AWS's model: IncludeSpace means the password "can contain" spaces, and
        // RequireEachIncludedType names four types (upper, lower, number, punctuation).
        // Four characters under IncludeSpace are one of each of those four.
        let spec = PasswordSpec { length: 4, include_space: true, ..PasswordSpec::default() };
        for password in many(&spec) {
            assert!(!password.contains(' '), "{password:?}");
            assert!(password.chars().any(|c| c.is_ascii_lowercase()), "{password}");
            assert!(password.chars().any(|c| c.is_ascii_uppercase()), "{password}");
            assert!(password.chars().any(|c| c.is_ascii_digit()), "{password}");
            assert!(password.chars().any(|c| PUNCTUATION.contains(c)), "{password}");
        }
        let too_short = PasswordSpec { length: 3, include_space: true, ..PasswordSpec::default() };
        assert_eq!(
            error_of(&too_short).message,
            "Password length is too short based on the required types."
        );
        // Only the space left: nothing is required, and the password is all spaces.
        let only_space = PasswordSpec {
            length: 3,
            include_space: true,
            exclude_lowercase: true,
            exclude_uppercase: true,
            exclude_numbers: true,
            exclude_punctuation: true,
            ..PasswordSpec::default()
        };
        assert_eq!(generate(&only_space, 1), "   ");
    }

    #[test]
    fn excluded_characters_never_appear() {
        let exclude = "aeiouAEIOU0123456789!@#$%^&*()";
        let spec = PasswordSpec {
            length: 128,
            exclude_characters: exclude.to_string(),
            include_space: true,
            ..PasswordSpec::default()
        };
        for password in many(&spec) {
            assert!(!password.chars().any(|c| exclude.contains(c)), "{password}");
        }
    }

    #[test]
    fn only_the_characters_left_after_exclusions_are_used() {
        let spec = PasswordSpec {
            length: 50,
            exclude_characters: "abcdefghijklmnopqrstuvwxy".to_string(),
            exclude_uppercase: true,
            exclude_numbers: true,
            exclude_punctuation: true,
            ..PasswordSpec::default()
        };
        assert_eq!(generate(&spec, 7), "z".repeat(50));
    }

    #[test]
    fn a_class_emptied_by_exclusions_is_not_required() {
        let spec = PasswordSpec {
            length: 3,
            exclude_characters: DIGITS.to_string(),
            ..PasswordSpec::default()
        };
        for password in many(&spec) {
            assert!(!password.chars().any(|c| c.is_ascii_digit()), "{password}");
            assert!(password.chars().any(|c| c.is_ascii_lowercase()), "{password}");
            assert!(password.chars().any(|c| c.is_ascii_uppercase()), "{password}");
            assert!(password.chars().any(|c| PUNCTUATION.contains(c)), "{password}");
        }
    }

    #[test]
    fn without_requirement_a_type_can_be_missing() {
        let spec =
            PasswordSpec { length: 4, require_each_included_type: false, ..Default::default() };
        let all_types = |p: &String| {
            p.chars().any(|c| c.is_ascii_lowercase())
                && p.chars().any(|c| c.is_ascii_uppercase())
                && p.chars().any(|c| c.is_ascii_digit())
                && p.chars().any(|c| PUNCTUATION.contains(c))
        };
        assert!(many(&spec).iter().any(|p| !all_types(p)));
    }

    #[test]
    fn required_characters_land_in_every_position() {
        // A 4-character password holds exactly one character of each type, so without the
        // shuffle each type would always sit at the same place.
        let spec = PasswordSpec { length: 4, ..PasswordSpec::default() };
        let types: [ClassTest; 4] = [
            |c| c.is_ascii_lowercase(),
            |c| c.is_ascii_uppercase(),
            |c| c.is_ascii_digit(),
            |c| c.is_ascii_punctuation(),
        ];
        let mut seen = [[false; 4]; 4];
        for password in many(&spec) {
            for (position, c) in password.chars().enumerate() {
                let kind = types.iter().position(|is| is(c)).unwrap();
                seen[kind][position] = true;
            }
        }
        assert_eq!(seen, [[true; 4]; 4]);
    }

    #[test]
    fn every_allowed_character_is_eventually_chosen() {
        let spec = PasswordSpec { length: 4096, include_space: true, ..PasswordSpec::default() };
        let password = generate(&spec, 1);
        let allowed = format!("{LOWERCASE}{UPPERCASE}{DIGITS}{PUNCTUATION} ");
        for c in allowed.chars() {
            assert!(password.contains(c), "{c:?} never chosen");
        }
    }

    #[test]
    fn different_random_states_give_different_passwords() {
        let passwords = many(&PasswordSpec::default());
        let distinct: std::collections::BTreeSet<&String> = passwords.iter().collect();
        assert_eq!(distinct.len(), passwords.len());
    }

    #[test]
    fn length_shorter_than_the_required_types_is_refused() {
        for length in 1..4 {
            let err = error_of(&PasswordSpec { length, ..PasswordSpec::default() });
            assert_eq!(err.code, ErrorCode::InvalidParameter);
            assert_eq!(err.message, "Password length is too short based on the required types.");
        }
        let three_types = PasswordSpec { length: 2, exclude_numbers: true, ..Default::default() };
        assert_eq!(error_of(&three_types).code, ErrorCode::InvalidParameter);
        let two_types = PasswordSpec { exclude_punctuation: true, ..three_types };
        assert_eq!(generate(&two_types, 3).len(), 2);
    }

    #[test]
    fn short_length_is_fine_when_types_are_not_required() {
        let spec =
            PasswordSpec { length: 1, require_each_included_type: false, ..Default::default() };
        assert_eq!(generate(&spec, 0).len(), 1);
    }

    #[test]
    fn nothing_left_to_choose_from_is_refused() {
        let no_classes = PasswordSpec {
            exclude_lowercase: true,
            exclude_uppercase: true,
            exclude_numbers: true,
            exclude_punctuation: true,
            ..PasswordSpec::default()
        };
        assert_eq!(error_of(&no_classes).code, ErrorCode::InvalidParameter);
        let everything_excluded = PasswordSpec {
            exclude_characters: format!("{LOWERCASE}{UPPERCASE}{DIGITS}{PUNCTUATION} "),
            include_space: true,
            require_each_included_type: false,
            ..PasswordSpec::default()
        };
        assert_eq!(error_of(&everything_excluded).code, ErrorCode::InvalidParameter);
        let only_space = PasswordSpec { include_space: true, ..no_classes };
        assert_eq!(generate(&only_space, 0), " ".repeat(32));
    }

    #[test]
    fn lengths_outside_the_model_bounds_are_refused() {
        for length in [0, MAX_PASSWORD_LENGTH + 1, u64::MAX] {
            let err = error_of(&PasswordSpec { length, ..PasswordSpec::default() });
            assert_eq!(err.code, ErrorCode::InvalidParameter, "{length}");
        }
    }
}
