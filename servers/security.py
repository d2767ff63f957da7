"""What the env server and the tool server share to guard themselves: bearer tokens, the bind check, uvicorn limits.

- :func:`check_bind`: a server bound to anything but loopback must have a token; without one it refuses to start
  unless the operator passed the loudly named ``--insecure-no-auth-on-public-bind`` (then it logs a warning).
- :func:`bearer_client`: the client name behind an ``Authorization`` header (the scheme ``Bearer`` in any case,
  each token compared in constant time), or None.
- :func:`resolve_token`: a token given directly, from a file, from an environment variable, or from the file that
  ``<variable>_FILE`` names; :func:`read_client_tokens`: a file of ``<client> <token>`` lines.
- :func:`scrubbed_environ`: the environment for child processes, without the servers' tokens.
- :class:`ServingSettings`: the settings both servers have (tokens, the bind opt-in, connection and body limits).

The connection limits are in :mod:`servers.limits` (this module stays free of uvicorn: env workers import it).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "INSECURE_FLAG",
    "SECRET_ENV_VARS",
    "InsecureBindError",
    "ServingSettings",
    "bearer_client",
    "check_bind",
    "is_loopback",
    "read_client_tokens",
    "resolve_token",
    "scrubbed_environ",
]

log = logging.getLogger(__name__)

INSECURE_FLAG = "--insecure-no-auth-on-public-bind"
# Environment variables that hold a server's token: never passed on to env workers or python_exec children.
SECRET_ENV_VARS = ("RESRL_ENV_SERVER_TOKEN", "RESRL_TOOL_SERVER_TOKEN")


class InsecureBindError(ValueError):
    """A non-loopback bind without a token, and no explicit opt-in."""


class ServingSettings(BaseModel):
    """What the env server's and the tool server's settings share: who may call, and the limits on calls."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_request_bytes: int = Field(default=1_000_000, ge=1024)
    token: str | None = Field(default=None, repr=False, description="the bearer token of the client 'default'")
    client_tokens: dict[str, str] = Field(
        default_factory=dict,
        repr=False,
        description="more clients: name -> bearer token; each client sees and steps only the sessions it created",
    )
    max_sessions_per_client: int | None = Field(
        default=None, ge=1, description="open sessions one client (one token) may hold; None = max_sessions"
    )
    insecure_no_auth_on_public_bind: bool = Field(
        default=False, description="allow a non-loopback bind without a token (logs a warning)"
    )
    max_connections: int = Field(default=1024, ge=1, description="open connections and requests before 503")
    keep_alive_s: float = Field(default=5.0, gt=0, description="idle seconds before a kept-alive connection closes")
    header_timeout_s: float = Field(default=10.0, gt=0, description="seconds a client has to send a request's head")

    def bearer_tokens(self) -> dict[str, bytes]:
        """Client name -> token bytes; empty when the server runs without auth."""
        tokens = {name: token.encode() for name, token in self.client_tokens.items()}
        if self.token is not None:
            tokens["default"] = self.token.encode()
        return tokens


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; False for 0.0.0.0, ::, '' and every other address or name."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: it may resolve to anything


def check_bind(host: str, token_set: bool, *, allow_insecure: bool, server: str) -> None:
    """Refuse (``InsecureBindError``) a non-loopback bind without a token unless ``allow_insecure``; warn then."""
    if token_set or is_loopback(host):
        return
    if not allow_insecure:
        raise InsecureBindError(
            f"the {server} would listen on {host!r} with no token: anyone who can reach it could use it. "
            f"Set a token (a token file or its environment variable), bind 127.0.0.1, or pass {INSECURE_FLAG} "
            "if something else in front of it (a private network, a proxy) guards it"
        )
    log.warning("%s: listening on %r WITHOUT AUTHENTICATION (%s)", server, host, INSECURE_FLAG)


def bearer_client(header: bytes | str | None, tokens: Mapping[str, bytes]) -> str | None:
    """The name of the client whose token the ``Authorization`` header carries, else None.

    The scheme is case-insensitive (RFC 9110: ``bearer`` is ``Bearer``); every token is compared, in constant time.
    """
    if not header:
        return None
    raw = header.encode("latin-1", "replace") if isinstance(header, str) else header
    scheme, _, credential = raw.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    credential = credential.strip()
    found = None
    for name, token in tokens.items():
        if secrets.compare_digest(credential, token) and found is None:
            found = name
    return found


def resolve_token(
    token: str | None = None, token_file: str | Path | None = None, env: str = SECRET_ENV_VARS[0]
) -> str | None:
    """The bearer token: given directly, else read from ``token_file``, else the env var ``env``, else the file
    named by ``<env>_FILE`` (a mounted secret: Docker and Kubernetes secrets are files); None = no auth."""
    if token:
        return token
    if not token_file:
        value = os.environ.get(env)
        if value:
            return value
        token_file = os.environ.get(env + "_FILE") or None
    if token_file:
        value = Path(token_file).read_text(encoding="utf-8").strip()
        if not value:
            raise ValueError(f"token file {token_file} is empty")
        return value
    return None


def read_client_tokens(path: str | Path) -> dict[str, str]:
    """A client tokens file: one ``<client name> <token>`` per line (``#`` comments); each client owns its sessions."""
    tokens: dict[str, str] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, token = line.partition(" ")
        if not token.strip() or name in tokens:
            raise ValueError(f"{path}:{number}: want '<client name> <token>', each name once")
        tokens[name] = token.strip()
    if len(set(tokens.values())) != len(tokens):
        raise ValueError(f"{path}: two clients share a token")
    return tokens


def scrubbed_environ() -> dict[str, str]:
    """This process's environment without the servers' tokens (for child processes)."""
    secret = {*SECRET_ENV_VARS, *(name + "_FILE" for name in SECRET_ENV_VARS)}
    return {key: value for key, value in os.environ.items() if key not in secret}
