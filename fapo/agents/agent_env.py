"""What an agent process may see: an allow-listed environment, and every known secret redacted."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

# Variables any agent process may see: locale, paths, CA bundles. Keys are added per agent.
BASE_ENV: tuple[str, ...] = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
)

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL|AUTH", re.I)
_SECRET_SHAPES = [
    re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"),
    re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9_\-\.=]{6,}"),
    re.compile(
        r"(?i)\b([A-Z0-9_]*(?:api[_-]?key|token|secret|password))(\s*[=:]\s*)[^\s,'\"}]{4,}"
    ),
]
REDACTED = "[REDACTED]"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every known secret value and anything shaped like a key replaced."""
    for s in sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True):
        text = text.replace(s, REDACTED)
    text = _SECRET_SHAPES[0].sub(REDACTED, text)
    text = _SECRET_SHAPES[1].sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _SECRET_SHAPES[2].sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


def secret_values(env: Mapping[str, str]) -> list[str]:
    """Values of variables whose names say they hold a secret."""
    return [v for k, v in env.items() if _SECRET_NAME.search(k) and v]


def build_env(
    source: Mapping[str, str],
    *,
    allow: Iterable[str] = (),
    set_vars: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Allow-list `source`: BASE_ENV plus `allow` (e.g. the agent's own key), then `set_vars`."""
    names = [*BASE_ENV, *allow]
    env = {k: source[k] for k in names if k in source}
    env.update(set_vars or {})
    return env
