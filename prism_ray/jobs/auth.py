"""Ray token authentication for the Jobs client.

Ray 2.60 clusters require a bearer token on every dashboard request. Ray's own client only
attaches it when the *client* process runs with ``RAY_AUTH_MODE=token``; a laptop that just
holds the token would send nothing and get a 401. So the token is looked up here, in Ray's
own order of sources, and always sent as an ``Authorization`` header (harmless when the
cluster has auth off).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOW_TO_SET = (
    "set RAY_AUTH_TOKEN=<token> (print it on the head node with `ray get-auth-token`), "
    "or RAY_AUTH_TOKEN_PATH=<file holding it>, or write it to ~/.ray/auth_token"
)


@dataclass(frozen=True)
class Token:
    value: str
    source: str  # where it came from, for error messages (never the value itself)


def find_token() -> Token | None:
    """The token from $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token, in that order."""
    value = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if value:
        return Token(value, "$RAY_AUTH_TOKEN")
    path_env = os.environ.get("RAY_AUTH_TOKEN_PATH")
    for path, label in ((path_env, "$RAY_AUTH_TOKEN_PATH"), (_default_path(), None)):
        if path and Path(path).is_file():
            value = Path(path).read_text().strip()
            if value:
                return Token(value, f"{label} ({path})" if label else path)
    return None


def auth_headers(token: Token | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token.value}"} if token else {}


def explain_auth_failure(address: str, token: Token | None) -> str:
    """A readable message for a 401/403 from the dashboard: what is wrong and what to set."""
    if token is None:
        return (f"the Ray cluster at {address} requires an authentication token and none "
                f"was found: {HOW_TO_SET}.")
    return (f"the Ray cluster at {address} rejected the authentication token from "
            f"{token.source}: use the token of that cluster ({HOW_TO_SET}).")


def _default_path() -> str:
    return str(Path.home() / ".ray" / "auth_token")
