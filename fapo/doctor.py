"""`fapo doctor`: can this machine run the optimizing agents? One row per fact, never a secret.

For each agent CLI: is it installed (where, which version), which variable holds its key and
whether it is set, and whether it answers a trivial request (a real, tiny, billed call: pass
`probe=False` to skip). Plus which model-provider keys are set, by name only.

Only what the configuration uses is required (exit 1): the agent `fapo run` would start and the
keys its models read. A fully offline set-up (simulated model, built-in agent) needs nothing.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fapo.agents.claude_code import ClaudeCodeAgent
from fapo.agents.cli_runner import CLIAgent
from fapo.agents.codex import CodexAgent
from fapo.settings import Settings

AGENTS: dict[str, type[CLIAgent]] = {"claude-code": ClaudeCodeAgent, "codex": CodexAgent}
PROVIDER_KEYS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY")
_DEFAULT_KEY = {"claude-code": "ANTHROPIC_API_KEY", "codex": "OPENAI_API_KEY"}
_PROVIDER_KEY = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}


def _version(binary: str, env: Mapping[str, str]) -> tuple[str | None, str]:
    try:
        out = subprocess.run(
            [binary, "--version"],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"`{binary} --version` failed: {exc}"
    line = (out.stdout or out.stderr).strip().splitlines()
    if out.returncode != 0 or not line:
        return None, f"`{binary} --version` exited {out.returncode}"
    return line[0], ""


def _login_hint(kind: str, env: Mapping[str, str]) -> str:
    """A CLI may be logged in without a key (subscription login); say so rather than fail."""
    home = Path(env.get("HOME", "~")).expanduser()
    if kind == "claude-code":
        cfg = Path(env["CLAUDE_CONFIG_DIR"]) if env.get("CLAUDE_CONFIG_DIR") else home / ".claude"
        found = (cfg / ".credentials.json").is_file()
    else:
        found = (Path(env.get("CODEX_HOME") or home / ".codex") / "auth.json").is_file()
    return "a saved CLI login was found" if found else "no saved CLI login found"


def check_agent(
    kind: str, settings: Settings, *, env: Mapping[str, str] | None = None, probe: bool = True
) -> dict[str, Any]:
    """One agent's row: installed, version, key, endpoint, and whether it answered."""
    # A trivial request must answer fast; never wait the agent's full run timeout here.
    base = settings.agent(kind)
    base = base.model_copy(update={"timeout_s": min(base.timeout_s, 60.0)})
    agent = AGENTS[kind](base, project_root=settings.root, prices=settings.prices, env=env)
    s, src = agent.settings, agent.source_env
    key_env = s.api_key_env or _DEFAULT_KEY[kind]
    row: dict[str, Any] = {
        "check": f"agent {kind}",
        "ok": False,
        "installed": False,
        "path": None,
        "version": None,
        "model": s.model,
        "base_url": s.base_url,
        "key_env": key_env,
        "key_set": bool(src.get(key_env)),
        "answers": None,
        "usd": 0.0,
        "detail": "",
    }
    notes = []
    if not row["key_set"]:
        notes.append(f"{key_env} is not set ({_login_hint(kind, src)})")
    binary = agent.binary
    if binary is None:
        want = s.binary or agent.default_binary
        row["detail"] = f"{want!r} not found: run .ci/install-agents.sh or set agents.{kind}.binary"
        return row
    row.update(installed=True, path=binary)
    row["version"], err = _version(binary, agent.environment())
    if err:
        notes.append(err)
    if probe and not row["key_set"] and not s.base_url and "no saved" in _login_hint(kind, src):
        notes.append("not probed: no key, endpoint or saved login")
        probe = False
    if probe:
        with tempfile.TemporaryDirectory(prefix="fapo-doctor-") as tmp:
            ws = Path(tmp) / "workspace"
            ws.mkdir()
            inv = agent.ping(ws)
        row["answers"] = not inv.is_error and bool(inv.final_text.strip())
        row["usd"] = inv.usage.usd
        if not row["answers"]:
            notes.append(f"trivial request failed: {inv.error or 'empty answer'}")
    row["ok"] = row["version"] is not None and row["answers"] is not False
    row["detail"] = "; ".join(notes) or "ready"
    return row


@dataclass(frozen=True)
class Needs:
    """What the configuration actually uses: agent kinds it runs, key variables its models read."""

    agent: str  # the agent kind `fapo run` would use (builtin, claude-code, codex, scripted:…)
    keys: dict[str, str] = field(default_factory=dict)  # variable -> what needs it


def needs_of(settings: Settings, tenant: Any = None, agent: str | None = None) -> Needs:
    """The agent and the provider keys this configuration needs: the tenant's models (or the
    project's default task model without a tenant) and its agent (override, tenant, fapo.toml)."""
    from fapo.errors import FapoError
    from fapo.models import parse_spec

    override = getattr(getattr(tenant, "spec", None), "agent", None) if tenant else None
    kind = agent or (override.kind if override and override.kind else None)
    kind = kind or settings.defaults.agent
    models = dict(tenant.spec.models) if tenant else {"task": settings.defaults.task_model}
    keys: dict[str, str] = {}
    for role, spec in models.items():
        try:
            parsed = parse_spec(spec)
        except FapoError:
            continue  # the model row says what is wrong with the spec
        env = _PROVIDER_KEY.get(parsed.provider)
        if env and not parsed.base_url:  # a local compatible server needs no key
            keys.setdefault(env, f"models.{role} ({spec})")
    return Needs(kind, keys)


def _mark(row: dict[str, Any]) -> str:
    """`ok` fine, `NO` needed and failing, `--` failing but nothing configured uses it."""
    if row["ok"]:
        return "ok"
    return "NO" if row.get("needed", True) else "--"


def format_rows(rows: list[dict[str, Any]]) -> str:
    """The text `fapo doctor` prints: one `ok|NO|--  check: detail` line per row."""
    return "\n".join(f"{_mark(r):3} {r['check']}: {r['detail']}" for r in rows)


def failing(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows that make `fapo doctor` exit 1: needed by the configuration and not ok."""
    return [r for r in rows if not r["ok"] and r.get("needed", True)]


def doctor(
    settings: Settings,
    *,
    env: Mapping[str, str] | None = None,
    probe: bool = True,
    kinds: tuple[str, ...] = ("claude-code", "codex"),
    needs: Needs | None = None,
) -> list[dict[str, Any]]:
    """Rows for `fapo doctor` (the CLI prints them; `--json` emits them as they are).

    With `needs` (what the configuration uses), only the agent it runs is probed and only the
    keys it reads are required; the other rows are informative (`needed: false`). Without it,
    every agent and key counts.
    """
    src = dict(os.environ if env is None else env)
    rows: list[dict[str, Any]] = []
    if needs is not None and needs.agent not in AGENTS:
        known = needs.agent == "builtin" or needs.agent.startswith("scripted:")
        what = (
            "built in: no CLI, key or network needed"
            if needs.agent == "builtin"
            else "replays a scripted file: no CLI, key or network needed"
            if known
            else "unknown agent; use builtin, claude-code, codex or scripted:FILE"
        )
        rows.append({"check": f"agent {needs.agent}", "ok": known, "needed": True, "detail": what})
    for kind in kinds:
        needed = needs is None or needs.agent == kind
        row = check_agent(kind, settings, env=src, probe=probe and needed)
        row["needed"] = needed
        no_login = "no saved" in _login_hint(kind, src)
        if row["ok"] and not row["key_set"] and not row["base_url"] and no_login:
            row["ok"] = False  # installed, but it would fail at its first request
        if needs is not None and not needed and not row["ok"]:
            row["detail"] += f" (not needed: the configured agent is {needs.agent})"
        rows.append(row)
    agent_keys = {r["key_env"]: f"agent {r['check'][6:]}" for r in rows if r.get("key_env")}
    wanted = dict(needs.keys) if needs is not None else {}
    if needs is not None:
        for r in rows:  # the agent's key, unless a saved CLI login or an own endpoint stands in
            if not (r.get("key_env") and r["needed"]) or r.get("base_url"):
                continue
            kind = r["check"].removeprefix("agent ")
            if "no saved" in _login_hint(kind, src):
                wanted.setdefault(r["key_env"], f"agent {kind}")
    names = dict.fromkeys([*PROVIDER_KEYS, *agent_keys, *wanted])
    for name in names:
        is_set = bool(src.get(name))
        needed = needs is None or name in wanted
        if is_set:
            detail = "set"
        elif needs is None:
            detail = "not set"
        elif needed:
            detail = f"not set; needed by {wanted[name]}"
        else:
            detail = "not set (not needed: nothing configured uses it)"
        rows.append({"check": f"key {name}", "ok": is_set, "needed": needed, "detail": detail})
    return rows


def ping_models(
    tenant: Any, *, probe: bool = True, timeout_s: float = 30.0
) -> list[dict[str, Any]]:
    """One row per model role of a tenant: the spec parses, its key is set, a trivial call works."""
    from fapo.errors import FapoError
    from fapo.models import make_chat_model, parse_spec

    rows = []
    for role, spec in tenant.spec.models.items():
        row: dict[str, Any] = {"check": f"model {role} ({spec})", "ok": False, "needed": True}
        try:
            model = make_chat_model(
                parse_spec(spec),
                tenant.settings,
                max_tokens=8,
                **({} if spec.startswith("sim:") else {"timeout": timeout_s}),
            )
            if probe:
                reply = model.invoke("Reply with the single word OK.")
                row["detail"] = f"answered ({len(str(reply.content))} chars)"
            else:
                row["detail"] = "configured (not probed)"
            row["ok"] = True
        except FapoError as exc:
            row["detail"] = str(exc)
        except Exception as exc:  # a provider error is the answer doctor exists to give
            row["detail"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        rows.append(row)
    return rows
