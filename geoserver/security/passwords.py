"""Password hashing (argon2id), the password policy, and personal API tokens."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

TOKEN_PREFIX = "ggv_"
MIN_PASSWORD_LENGTH = 10
_MIN_CHARACTER_CLASSES = 3
_MIN_USERNAME_IN_PASSWORD = 3

# Passwords that pass the length and class rules yet top every leaked-password list in
# China; compared case-insensitively.
_COMMON_PASSWORDS = frozenset(
    p.casefold()
    for p in (
        "12345678aA!",
        "Password123",
        "Password@123",
        "Passw0rd!23",
        "P@ssw0rd123",
        "admin123456",
        "Admin@123456",
        "Admin123!@#",
        "Qwerty@12345",
        "qwe123!@#QWE",
        "1qaz@WSX3edc",
        "1qaz2wsx#EDC",
        "Aa123456789",
        "Abc@1234567",
        "abc123456789",
        "woaini1314!",
        "Woaini520!",
        "Huawei@123",
        "Zhangsan123",
    )
)


@dataclass(frozen=True)
class Argon2Params:
    """argon2id cost parameters (memory in KiB); defaults sized for a 2-core server."""

    time_cost: int = 2
    # About 35 ms per hash on the 2-core AMD EPYC dev box: slow for guessing, cheap for login.
    memory_cost: int = 32768
    parallelism: int = 2


DEFAULT_PARAMS = Argon2Params()


@lru_cache(maxsize=8)
def _hasher(params: Argon2Params) -> PasswordHasher:
    """Return the argon2id hasher for these parameters."""
    return PasswordHasher(
        time_cost=params.time_cost,
        memory_cost=params.memory_cost,
        parallelism=params.parallelism,
        hash_len=32,
        salt_len=16,
        type=Type.ID,
    )


def hash_password(password: str, *, params: Argon2Params = DEFAULT_PARAMS) -> str:
    """Return the argon2id hash (PHC string, salt and parameters included) of a password."""
    return _hasher(params).hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    """Return whether the password matches the hash; False for a malformed or foreign hash."""
    if not isinstance(password, str) or not isinstance(password_hash, str):
        return False
    try:
        # The hash carries its own parameters, so any hasher verifies it.
        return _hasher(DEFAULT_PARAMS).verify(password_hash, password)
    except (VerificationError, InvalidHashError, ValueError):
        # ValueError: argon2 encodes the hash as ASCII first, so non-ASCII junk fails there.
        return False


def needs_rehash(password_hash: str, *, params: Argon2Params = DEFAULT_PARAMS) -> bool:
    """Return whether a stored hash uses other parameters (rehash it at the next login)."""
    if not isinstance(password_hash, str):
        return True
    try:
        return _hasher(params).check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True


def _character_classes(password: str) -> int:
    """Count the classes used: lower case, upper case, digits, anything else."""
    return sum(
        (
            any(c.islower() for c in password),
            any(c.isupper() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() for c in password),
        )
    )


def check_password_strength(password: str, *, username: str) -> list[str]:
    """Return the policy problems of a password, bilingual; an empty list means acceptable."""
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(
            f"密码至少{MIN_PASSWORD_LENGTH}位 / must be at least {MIN_PASSWORD_LENGTH} characters"
        )
    name = username.strip().casefold()
    # Very short usernames ("li") would forbid too many passwords by accident.
    if len(name) >= _MIN_USERNAME_IN_PASSWORD and name in password.casefold():
        problems.append("密码不能包含用户名 / must not contain the username")
    if _character_classes(password) < _MIN_CHARACTER_CLASSES:
        problems.append(
            "密码需包含大写字母、小写字母、数字、符号中的至少三类 / "
            "must mix at least 3 of: upper case, lower case, digits, symbols"
        )
    if password.casefold() in _COMMON_PASSWORDS:
        problems.append("密码过于常见 / is too common")
    return problems


def hash_token(token: str) -> bytes:
    """Return the SHA-256 digest under which a personal API token is stored."""
    # A token carries 256 random bits, so a fast unsalted hash is enough (unlike passwords).
    return hashlib.sha256(token.encode("utf-8")).digest()


def generate_token() -> tuple[str, bytes]:
    """Return a new personal API token (shown once) and the hash to store."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, hash_token(token)
