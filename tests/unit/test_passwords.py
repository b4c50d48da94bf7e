"""Password hashing, the password policy, and personal API tokens."""

import hashlib
import re

import pytest

from geoserver.security.passwords import (
    Argon2Params,
    check_password_strength,
    generate_token,
    hash_password,
    hash_token,
    needs_rehash,
    verify_password,
)

# Cheap parameters keep the suite fast; the defaults are exercised once below.
FAST = Argon2Params(time_cost=1, memory_cost=8192, parallelism=1)


def test_default_hash_is_argon2id_with_the_configured_costs():
    stored = hash_password("Wenzhou#Grid2024")
    assert stored.startswith("$argon2id$v=19$m=32768,t=2,p=2$")
    assert verify_password("Wenzhou#Grid2024", stored)


def test_right_and_wrong_password():
    stored = hash_password("Wenzhou#Grid2024", params=FAST)
    assert verify_password("Wenzhou#Grid2024", stored)
    assert not verify_password("wenzhou#Grid2024", stored)
    assert not verify_password("", stored)


def test_same_password_gets_a_fresh_salt():
    assert hash_password("Wenzhou#Grid2024", params=FAST) != hash_password(
        "Wenzhou#Grid2024", params=FAST
    )


def test_non_ascii_password_round_trips():
    stored = hash_password("网格员密码Ab1!", params=FAST)
    assert verify_password("网格员密码Ab1!", stored)


@pytest.mark.parametrize(
    "malformed",
    [
        "",
        "garbage",
        "$argon2id$",
        "$argon2id$v=19$m=8192,t=1,p=1$c2FsdA$",
        "$2b$12$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234",
        "密码哈希",
        "\x00",
        None,
        b"$argon2id$v=19$m=8192,t=1,p=1$",
    ],
    ids=repr,
)
def test_malformed_hash_verifies_false_without_raising(malformed):
    assert verify_password("Wenzhou#Grid2024", malformed) is False
    assert needs_rehash(malformed) is True


def test_truncated_hash_verifies_false():
    stored = hash_password("Wenzhou#Grid2024", params=FAST)
    assert verify_password("Wenzhou#Grid2024", stored[:-4]) is False


def test_needs_rehash_follows_the_parameters():
    stored = hash_password("Wenzhou#Grid2024", params=FAST)
    assert not needs_rehash(stored, params=FAST)
    assert needs_rehash(stored)


def test_good_password_has_no_problems():
    assert check_password_strength("Ouhai-Grid-2024", username="zhangsan") == []


@pytest.mark.parametrize(
    ("password", "expected"),
    [
        ("Ab1!xyz", "至少10位"),
        ("zhangsan#2024X", "用户名"),
        ("ZHANGSAN#2024x", "用户名"),
        ("alllowercaseletters", "三类"),
        ("lowercase123456", "三类"),
        ("12345678aA!", "常见"),
        ("PASSWORD123", "常见"),
        ("admin123456", "常见"),
    ],
)
def test_policy_problems(password, expected):
    problems = check_password_strength(password, username="zhangsan")
    assert any(expected in p for p in problems), problems


def test_problems_are_bilingual_and_all_reported():
    problems = check_password_strength("li", username="li")
    assert len(problems) == 2  # short and one class; a 2-letter username is not checked
    assert all(" / " in p for p in problems)


def test_token_has_prefix_and_random_urlsafe_body():
    token, digest = generate_token()
    assert re.fullmatch(r"ggv_[A-Za-z0-9_-]{43}", token)
    assert digest == hashlib.sha256(token.encode()).digest() == hash_token(token)
    assert generate_token()[0] != token


def test_token_hash_differs_for_a_different_token():
    token, digest = generate_token()
    assert hash_token(token[:-1] + ("A" if token[-1] != "A" else "B")) != digest
