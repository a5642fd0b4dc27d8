"""Candidate chain code (the `code` level) is built in a bubblewrap'd worker that sees the variant's
files and the tenant's non-sealed resources — never data/, the scorer, checks or the README.

`python -m fapo.candidate DIR` is the worker: it loads the tenant copy in DIR, builds its chain
with a null model factory and prints one JSON line. No network, no keys, nothing writable.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from fapo import sandbox
from fapo.errors import FapoError
from fapo.tenant import Tenant, is_mutable

BUILD_TIMEOUT_S = 60.0
#: Tenant files never given to candidate code, besides the data files named in tenant.yaml.
_NEVER = {"README.md", "fixes", "__pycache__"}


def sealed_parts(tenant: Tenant) -> set[str]:
    """Tenant-relative paths candidate code must not see: data (with its top folder), scorer,
    checks, README and documented fixes."""
    spec = tenant.spec
    out = set(_NEVER) | {spec.scorer}
    if spec.checks:
        out.add(spec.checks)
    for split in ("train", "val", "test"):
        rel = getattr(spec.data, split, None)
        if rel:
            out |= {rel, Path(rel).parts[0]}
    return out


def is_candidate_code(tenant: Tenant) -> bool:
    """Does this variant run chain code other than the tenant folder's own chain.py?"""
    path = tenant.root / "chain.py"
    text = tenant.files.get("chain.py")
    try:
        on_disk = path.read_text(encoding="utf-8") if path.is_file() else None
    except (OSError, UnicodeDecodeError):
        on_disk = None
    return text is not None and text != on_disk


def copy_for_worker(tenant: Tenant, dest: Path) -> None:
    """The variant's mutable files plus every non-sealed immutable file (corpus, tenant.yaml…)
    that is not Python: the tenant's own modules are tooling or the scorer's machinery (demo-qa's
    seeded generate.py rebuilds its val and test labels in memory; ifbench's verifiers are its
    scorer), so candidate code may import none of them."""
    sealed = sealed_parts(tenant)
    for p in sorted(tenant.root.rglob("*")):
        rel = p.relative_to(tenant.root)
        if rel.as_posix() in sealed or rel.parts[0] in sealed or p.is_symlink() or not p.is_file():
            continue
        if is_mutable(rel.as_posix()) or p.suffix in (".py", ".pyc", ".pyi", ".so", ".pth"):
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dest / rel)
    for name, text in tenant.files.items():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_text(text, encoding="utf-8")


def python_paths() -> list[Path]:
    """What the worker's interpreter needs, read-only: the venv, the base Python, fapo's source."""
    paths = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    paths.add(Path(__file__).resolve().parent)  # fapo's own source
    exe = Path(sys.executable).resolve()
    paths.add(exe.parent.parent)
    return sorted(p for p in paths if not p.is_relative_to("/usr"))


def build_in_sandbox(variant: Tenant, *, timeout_s: float = BUILD_TIMEOUT_S) -> str | None:
    """Build `variant`'s chain in the worker; None when it builds, else the reason."""
    why = sandbox.unavailable()
    if why:
        return f"candidate code not built: no sandbox ({why})"
    with tempfile.TemporaryDirectory(prefix="fapo-cand-") as tmp:
        root = Path(tmp) / "tenant"
        root.mkdir()
        copy_for_worker(variant, root)
        box = sandbox.Sandbox(
            readable=(*python_paths(), root), share_net=False, chdir=Path(tmp).resolve()
        )
        env = {"LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1"}
        argv, env = box.wrap([sys.executable, "-m", "fapo.candidate", str(root)], env)
        try:
            r = subprocess.run(
                argv,
                env=env,
                capture_output=True,
                timeout=timeout_s,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"build() of the candidate took over {timeout_s:g}s in the sandboxed worker"
    lines = r.stdout.decode(errors="replace").strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        answer = {}
    if r.returncode == 0 and answer.get("ok") is True:
        return None
    tail = r.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
    return str(answer.get("error") or f"sandboxed build failed: {tail[0][:300]}")


def _worker(root: Path) -> int:
    from fapo.settings import Settings
    from fapo.tenant import _read_mutable, read_tenant_spec
    from fapo.validate import null_factory

    try:
        spec = read_tenant_spec(root / "tenant.yaml")
        tenant = Tenant(
            root=root, spec=spec, settings=Settings(root=root), files=_read_mutable(root)
        )
        tenant.build(null_factory(dict(spec.models)))
    except FapoError as exc:
        print(json.dumps({"ok": False, "error": str(exc)}))
        return 1
    print(json.dumps({"ok": True}))
    return 0


if __name__ == "__main__":
    sys.exit(_worker(Path(sys.argv[1])))
