"""Who may see the dashboard: nobody but this computer, a shared token, or users with bcrypt hashes.

- No ``--token`` and no ``--password-file``: the dashboard listens on
  127.0.0.1 only (anyone on this computer may read it; a reverse proxy in front
  brings its own authentication).
- ``--token``: one shared secret, given at the login form or as
  ``Authorization: Bearer TOKEN`` (scripts, CSV downloads).
- ``--password-file``: lines ``user:$2b$...`` (bcrypt hashes, never plain text;
  ``deltaiqa-lite dashboard --hash-password`` makes one), at the login form or
  as HTTP Basic.

A login sets an HttpOnly, SameSite=Strict session cookie (random, held in
memory: a restart logs everyone out). Every form that writes (acknowledging an
alarm) carries a token bound to the session (HMAC under a per-process
secret), so another site cannot post it through the user's browser.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

from deltaiqa_lite.errors import DeltaIQAError

SESSION_COOKIE = "diqa_session"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def hash_password(password: str) -> str:
    """bcrypt hash of a password (for the password file)."""
    import bcrypt

    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt()).decode("ascii")


def read_password_file(path: str | os.PathLike) -> dict[str, bytes]:
    """``{user: bcrypt hash}`` from ``user:hash`` lines; refuses anything that is not a bcrypt hash."""
    users: dict[str, bytes] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise DeltaIQAError(f"{path}: cannot read the password file ({error.strerror or error})") from error
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, hashed = line.strip().partition(":")
        if not sep or not user or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise DeltaIQAError(f"{path}: line {number}: expected 'user:<bcrypt hash>' (make one with "
                                "'deltaiqa-lite dashboard --hash-password'); plain passwords are refused")
        users[user] = hashed.encode("ascii")
    if not users:
        raise DeltaIQAError(f"{path}: no users in the password file")
    return users


_DUMMY: list[bytes] = []


def _dummy_hash() -> bytes:
    if not _DUMMY:
        _DUMMY.append(hash_password(secrets.token_urlsafe(16)).encode("ascii"))
    return _DUMMY[0]


@dataclass
class Auth:
    """The dashboard's access rule (see module docstring)."""

    token: str | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    _sessions: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def required(self) -> bool:
        return bool(self.token or self.users)

    def check_bind(self, host: str) -> None:
        """Refuse to listen beyond this computer without a token or password file."""
        if host not in LOOPBACK_HOSTS and not self.required:
            raise DeltaIQAError(f"listening on {host} shows the QA log to the network; give --token "
                                "or --password-file (or keep the default 127.0.0.1 behind a reverse "
                                "proxy)")

    # -- credentials
    def check_password(self, user: str, password: str) -> bool:
        import bcrypt

        hashed = self.users.get(user)
        if hashed is None:
            # Same work for an unknown user, so timing does not tell which users exist.
            bcrypt.checkpw(password.encode("utf-8"), _dummy_hash())
            return False
        return bcrypt.checkpw(password.encode("utf-8"), hashed)

    def check_token(self, token: str) -> bool:
        return self.token is not None and hmac.compare_digest(token.encode("utf-8"),
                                                              self.token.encode("utf-8"))

    def login(self, user: str, password: str) -> str | None:
        """A new session id for good credentials (token: empty ``user``), else None."""
        if self.users and user and self.check_password(user, password):
            who = user
        elif self.token and not user and self.check_token(password):
            who = ""  # a token user names themself when acknowledging
        else:
            return None
        session = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[session] = who
        return session

    def logout(self, session: str | None) -> None:
        with self._lock:
            self._sessions.pop(session or "", None)

    def user(self, cookies: dict[str, str], authorization: str | None) -> str | None:
        """The signed-in user ('' for a token session or no auth), or None when not signed in."""
        if not self.required:
            return ""
        with self._lock:
            who = self._sessions.get(cookies.get(SESSION_COOKIE, ""))
        if who is not None:
            return who
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and self.check_token(value.strip()):
            return ""
        if scheme.lower() == "basic" and self.users:
            try:
                user, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            if self.check_password(user, password):
                return user
        return None

    def csrf(self, cookies: dict[str, str]) -> str:
        """The form token of this browser's session."""
        return hmac.new(self.secret, cookies.get(SESSION_COOKIE, "-").encode("utf-8"),
                        hashlib.sha256).hexdigest()

    def check_csrf(self, cookies: dict[str, str], token: str) -> bool:
        return hmac.compare_digest(self.csrf(cookies), token or "")
