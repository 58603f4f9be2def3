"""GetRandomPassword: length, character classes and every option."""

import string

import pytest

from conftest import expect_error, keys

PUNCTUATION = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
LOWER, UPPER, DIGITS = set(string.ascii_lowercase), set(string.ascii_uppercase), set(string.digits)
ALL_DEFAULT = LOWER | UPPER | DIGITS | PUNCTUATION


def password(sm, **kwargs):
    resp = sm.get_random_password(**kwargs)
    assert keys(resp) == {"RandomPassword"}
    return resp["RandomPassword"]


def test_default_password_is_32_chars_from_printable_ascii_without_space(sm):
    pw = password(sm)
    assert len(pw) == 32
    assert set(pw) <= ALL_DEFAULT


def test_passwords_differ_between_calls(sm):
    assert len({password(sm) for _ in range(5)}) == 5


@pytest.mark.parametrize("length", [4, 100, 4096])
def test_password_length_is_honoured(sm, length):
    assert len(password(sm, PasswordLength=length)) == length


def test_password_length_over_4096_is_validation_error(sm):
    expect_error(sm.get_random_password, "ValidationException", PasswordLength=4097)


def test_long_default_password_uses_every_class(sm):
    pw = set(password(sm, PasswordLength=4096))
    assert pw & LOWER and pw & UPPER and pw & DIGITS and pw & PUNCTUATION
    assert pw <= ALL_DEFAULT


@pytest.mark.parametrize(
    "option, forbidden",
    [
        ("ExcludeNumbers", DIGITS),
        ("ExcludePunctuation", PUNCTUATION),
        ("ExcludeUppercase", UPPER),
        ("ExcludeLowercase", LOWER),
    ],
)
def test_exclude_options_remove_their_class(sm, option, forbidden):
    pw = set(password(sm, PasswordLength=4096, **{option: True}))
    assert not (pw & forbidden)
    assert pw <= ALL_DEFAULT - forbidden
    # The remaining classes still appear in a password this long.
    assert pw == ALL_DEFAULT - forbidden


def test_exclude_characters_removes_exactly_those(sm):
    excluded = "aeiouAEIOU01!\"'\\`"
    pw = set(password(sm, PasswordLength=4096, ExcludeCharacters=excluded))
    assert not (pw & set(excluded))
    assert pw == ALL_DEFAULT - set(excluded)


def test_include_space_adds_space(sm):
    pw = password(sm, PasswordLength=4096, IncludeSpace=True)
    assert " " in pw
    assert set(pw) <= ALL_DEFAULT | {" "}


def test_space_is_absent_by_default(sm):
    assert " " not in password(sm, PasswordLength=4096)


def test_only_digits_when_every_other_class_is_excluded(sm):
    pw = password(
        sm, PasswordLength=200, ExcludePunctuation=True, ExcludeUppercase=True, ExcludeLowercase=True
    )
    assert set(pw) <= DIGITS
    assert len(pw) == 200


def test_require_each_included_type_puts_one_of_each_in_short_passwords(sm):
    for _ in range(30):
        pw = set(password(sm, PasswordLength=4, RequireEachIncludedType=True))
        assert pw & LOWER and pw & UPPER and pw & DIGITS and pw & PUNCTUATION, pw


def test_require_each_included_type_respects_exclusions(sm):
    for _ in range(30):
        pw = set(
            password(
                sm, PasswordLength=4, RequireEachIncludedType=True, ExcludePunctuation=True
            )
        )
        assert pw & LOWER and pw & UPPER and pw & DIGITS, pw
        assert not (pw & PUNCTUATION)


def test_require_each_included_type_false_allows_single_class_output(sm):
    pw = password(
        sm,
        PasswordLength=64,
        RequireEachIncludedType=False,
        ExcludeNumbers=True,
        ExcludePunctuation=True,
        ExcludeUppercase=True,
    )
    assert set(pw) <= LOWER
