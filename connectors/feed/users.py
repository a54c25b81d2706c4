"""Feed users: who may log in, with which role, for which offices and rules.

The user file (TOML) holds scrypt hashes of passwords and SHA-256 hashes of API tokens, never the
secrets. Roles: ``admin`` (every office), ``supervisor`` (the offices listed), ``agency`` (a Timpora
member agency: the offices and the rules listed, no person keys or person history, may acknowledge
and comment but not resolve).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROLES = ("admin", "supervisor", "agency")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")  # nothing that needs escaping in the TOML file
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


@dataclass(frozen=True)
class User:
    name: str
    role: str
    offices: frozenset[str] = frozenset()
    rules: frozenset[str] = frozenset()  # agency members: the rules they see
    password_hash: str = ""
    token_sha256: str = ""

    def sees(self, office: str, rule_id: str) -> bool:
        if self.role == "admin":
            return True
        if office not in self.offices:
            return False
        return self.role == "supervisor" or rule_id in self.rules

    @property
    def sees_people(self) -> bool:
        return self.role in ("admin", "supervisor")

    def may(self, action: str) -> bool:
        return self.role in ("admin", "supervisor") or action in ("ACKNOWLEDGE", "COMMENT")


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), dklen=32, **_SCRYPT)
    return hmac.compare_digest(got.hex(), digest)


def token_hash(token: str) -> str:
    # surrogateescape: a header's undecodable bytes come as surrogates; they hash, they do not raise
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass
class UserStore:
    users: dict[str, User] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> UserStore:
        if not path.exists():
            return cls()
        data = tomllib.loads(path.read_text())
        store = cls()
        for i, raw in enumerate(data.get("user", [])):
            store.add(_user(raw, f"{path}: user #{i + 1}"))
        return store

    def add(self, user: User) -> None:
        for what, value in (("name", user.name), *((f"office {o!r}", o) for o in user.offices)):
            if not _NAME.match(value):
                raise ValueError(f"user {user.name!r}: {what} may hold letters, digits and . _ @ - only")
        for rule in user.rules:
            if not _NAME.match(rule):
                raise ValueError(f"user {user.name!r}: rule {rule!r} is not a rule id")
        if user.role not in ROLES:
            raise ValueError(f"user {user.name!r}: role {user.role!r} is not one of {', '.join(ROLES)}")
        if user.role != "admin" and not user.offices:
            raise ValueError(f"user {user.name!r}: a {user.role} needs at least one office")
        if user.role == "agency" and not user.rules:
            raise ValueError(f"user {user.name!r}: an agency member needs the rules it may see")
        self.users[user.name] = user

    def login(self, name: str, password: str) -> User | None:
        user = self.users.get(name)
        if user is None or not user.password_hash:
            hash_password(password, b"0" * 16)  # same work whether or not the name exists
            return None
        return user if check_password(password, user.password_hash) else None

    def by_token(self, token: str) -> User | None:
        digest = token_hash(token)
        for user in self.users.values():
            if user.token_sha256 and hmac.compare_digest(user.token_sha256, digest):
                return user
        return None

    def save(self, path: Path) -> None:
        lines = []
        for u in self.users.values():
            lines += [
                "[[user]]",
                f'name = "{u.name}"',
                f'role = "{u.role}"',
                "offices = [" + ", ".join(f'"{o}"' for o in sorted(u.offices)) + "]",
                "rules = [" + ", ".join(f'"{r}"' for r in sorted(u.rules)) + "]",
                f'password_hash = "{u.password_hash}"',
                f'token_sha256 = "{u.token_sha256}"',
                "",
            ]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines))
        path.chmod(0o600)


def _user(raw: dict[str, Any], where: str) -> User:
    try:
        return User(
            name=str(raw["name"]),
            role=str(raw["role"]),
            offices=frozenset(str(o) for o in raw.get("offices", [])),
            rules=frozenset(str(r) for r in raw.get("rules", [])),
            password_hash=str(raw.get("password_hash", "")),
            token_sha256=str(raw.get("token_sha256", "")),
        )
    except KeyError as exc:
        raise ValueError(f"{where}: missing {exc.args[0]!r}") from None


DEMO_USERS: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("admin", "admin", (), ()),
    ("supervisor-batam", "supervisor", ("KANIM-BATAM",), ()),
    ("supervisor-medan", "supervisor", ("KANIM-MEDAN",), ()),
    (
        "polda-kepri",
        "agency",
        ("KANIM-BATAM",),
        ("tppo.screening", "overstay.located", "whereabouts.unknown"),
    ),
)


def ensure_demo_users(users_file: Path, passwords_file: Path) -> dict[str, str]:
    """Local mode: the demo users, with passwords kept in a 0600 file beside the state."""
    import json

    if passwords_file.exists() and users_file.exists():
        return dict(json.loads(passwords_file.read_text()))
    store = UserStore.load(users_file)
    passwords: dict[str, str] = {}
    for name, role, offices, rules in DEMO_USERS:
        password = secrets.token_urlsafe(9)
        passwords[name] = password
        store.add(User(name, role, frozenset(offices), frozenset(rules), hash_password(password)))
    store.save(users_file)
    passwords_file.parent.mkdir(parents=True, exist_ok=True)
    passwords_file.touch(mode=0o600)  # never readable by others, not even for a moment
    passwords_file.chmod(0o600)
    passwords_file.write_text(json.dumps(passwords, indent=2))
    return passwords
