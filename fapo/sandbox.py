"""bubblewrap around untrusted processes (agent CLIs, candidate chain code): the workspace is the
only writable path; the tenant, runs/, .fapo/, the project root and the real HOME are absent.

Measured on Debian 12 as root with bwrap 0.8.0 (docs/security.md): `--unshare-all --share-net`
works; both pinned CLIs start with only /usr, /etc, their node_modules, a tmpfs HOME and TMP and
the workspace mounted. Reads of sealed data become impossible rather than merely detected.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fapo.errors import FapoError, fs_error

#: Private HOME inside the sandbox: a tmpfs, gone when the process ends (no auto-memory survives).
HOME = "/home/fapo-agent"
#: Where a CLI's node_modules is mounted read-only (never at its real path inside the project).
TOOLS = "/opt/fapo-agent"
PATH = f"{TOOLS}/node_modules/.bin:/usr/local/bin:/usr/bin:/bin"
_MERGED = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


def bwrap_binary() -> str | None:
    """`$FAPO_BWRAP` (tests point it at a missing file to simulate a host without bwrap) or PATH."""
    want = os.environ.get("FAPO_BWRAP", "bwrap")
    if os.sep in want:
        return want if os.access(want, os.X_OK) else None
    return shutil.which(want)


def _system_args() -> list[str]:
    """Read-only system paths; /bin, /lib… as the host has them (symlinks on merged-/usr hosts)."""
    args = ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for name in _MERGED:
        p = Path("/") / name
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            args += ["--ro-bind", str(p), str(p)]
    # resolv.conf may point into /run (systemd-resolved): the agent's API needs DNS.
    args += ["--ro-bind-try", "/run/systemd/resolve", "/run/systemd/resolve"]
    return args


@functools.cache
def _probe(bwrap: str) -> str | None:
    cmd = [bwrap, *_system_args(), "--proc", "/proc", "--dev", "/dev", "--unshare-all"]
    cmd += ["--die-with-parent", "/usr/bin/true"]
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{bwrap} failed to start: {exc}"
    if r.returncode != 0:
        tail = r.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return f"{bwrap} cannot create a sandbox here: {tail[0]}"
    return None


def unavailable() -> str | None:
    """Why no sandbox can be made on this host, or None when bwrap works."""
    bwrap = bwrap_binary()
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed; install the Debian package bubblewrap"
    return _probe(bwrap)


def require(agent: str) -> None:
    """Refuse, in one line, to run an agent CLI unsandboxed without an explicit opt-out."""
    why = unavailable()
    if why:
        raise FapoError(
            f"{agent}: refusing to run without a sandbox ({why}); install bubblewrap, or pass "
            f"--no-sandbox (agents.{agent}.sandbox = false in fapo.toml) to accept the risk"
        )


def tool_mount(binary: str) -> tuple[list[str], str]:
    """(bwrap args, path inside) for a CLI binary: its node_modules read-only under /opt."""
    path = Path(binary).absolute()
    real = path.resolve()
    for candidate in (path, real):
        for parent in candidate.parents:
            if parent.name == "node_modules":
                inner = f"{TOOLS}/node_modules/{candidate.relative_to(parent).as_posix()}"
                return ["--ro-bind", str(parent.resolve()), f"{TOOLS}/node_modules"], inner
    if real.is_relative_to("/usr"):
        return [], str(real)
    return ["--ro-bind", str(real), f"{TOOLS}/{real.name}"], f"{TOOLS}/{real.name}"


@dataclass(frozen=True)
class Sandbox:
    """One sandboxed process: `writable` and `readable` bound at their own paths."""

    writable: tuple[Path, ...] = ()
    readable: tuple[Path, ...] = ()
    extra_args: tuple[str, ...] = ()
    share_net: bool = True
    home_dirs: tuple[str, ...] = field(default=())  # created inside the tmpfs HOME
    chdir: Path | None = None

    def wrap(self, argv: list[str], env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
        """The bwrap command line running `argv`, and the environment to start it with (HOME,
        TMPDIR and PATH point inside the sandbox; nothing else is added)."""
        bwrap = bwrap_binary()
        if bwrap is None:
            raise FapoError("bubblewrap (bwrap) is not installed; install the bubblewrap package")
        args = [bwrap, *_system_args(), "--proc", "/proc", "--dev", "/dev"]
        args += ["--tmpfs", "/tmp", "--tmpfs", "/var/tmp", "--tmpfs", HOME]
        for d in self.home_dirs:
            args += ["--dir", f"{HOME}/{d}"]
        args += list(self.extra_args)
        for p in self.readable:
            args += ["--ro-bind", str(p), str(p)]
        for p in self.writable:
            args += ["--bind", str(p), str(p)]
        args += ["--unshare-all", "--die-with-parent", "--new-session"]
        if self.share_net:
            args.append("--share-net")
        if self.chdir is not None:
            args += ["--chdir", str(self.chdir)]
        inner_env = dict(env)
        inner_env.update({"HOME": HOME, "TMPDIR": "/tmp", "PATH": PATH})
        return [*args, "--", *argv], inner_env


def agent_sandbox(
    workspace: Path, *, writable: bool, tool_args: Iterable[str], home_dirs: Iterable[str] = ()
) -> Sandbox:
    """An agent CLI's sandbox: the workspace (writable only for `propose`) and its tool."""
    ws = workspace.resolve()
    return Sandbox(
        writable=(ws,) if writable else (),
        readable=() if writable else (ws,),
        extra_args=tuple(tool_args),
        home_dirs=tuple(home_dirs),
        chdir=ws,
    )


# -- defence in depth: what changed outside, and putting the tenant back ----------------------


def _inside(path: Path, parent: Path) -> bool:
    try:
        path.relative_to(parent)
        return True
    except ValueError:
        return False


def write_clock(scratch: Path) -> float:
    """A `since` for `detect_outside_writes` that no later write can reach and no earlier one
    passes, read off the file system itself: a marker in `scratch` (an excluded folder) is
    rewritten until its timestamp moves, and the timestamp before the move is returned.

    A `time.time()` start missed writes made in the same kernel tick (measured: 2 of 2,000 files
    written right after it had an older mtime; the hostile suite's fast in-process write to
    $TMPDIR slipped through so), and the coarse clock is no better on kernels that hand out
    fine-grained file times (one file written before it was stamped after it). File times are
    monotonic across files, so every earlier write is stamped <= the returned time and every
    later one >= the moved one.
    """
    marker = scratch / ".fapo-clock"
    marker.write_bytes(b"")
    first = marker.stat().st_mtime
    for _ in range(1000):  # about one tick (4 ms here); bounded for a frozen clock
        time.sleep(0.0005)
        marker.write_bytes(b"")
        os.utime(marker)
        if marker.stat().st_mtime > first:
            break
    return first


def detect_outside_writes(
    roots: list[Path], since: float, workspace: Path, exclude: Iterable[Path] = ()
) -> list[str]:
    """Files (and directories whose entries changed) under `roots` modified after `since`
    (a `time.time()` taken before the agent started), outside `workspace` and `exclude`.

    Uses the change time too, which a process cannot set back, so `touch -d` cannot hide a write.
    Directories are reported as `path/` (an entry added or removed: e.g. a deleted file), except
    ancestors of the workspace or of an excluded path, which the engine itself touches.
    """
    ws = workspace.resolve()
    skip = [Path(p).resolve() for p in exclude]
    protected_dirs = {ws, *ws.parents}
    for p in skip:
        protected_dirs |= {p.parent, *p.parent.parents}
    hits: list[str] = []
    for root in roots:
        root = root.resolve()
        if not root.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            here = Path(dirpath)
            if _inside(here, ws) or any(_inside(here, s) for s in skip):
                dirnames[:] = []
                continue
            try:
                st = os.lstat(here)
                if max(st.st_mtime, st.st_ctime) > since and here not in protected_dirs:
                    hits.append(str(here) + "/")
            except OSError:
                pass
            for name in filenames:
                path = here / name
                if any(path == s or _inside(path, s) for s in skip):
                    continue
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if max(st.st_mtime, st.st_ctime) > since:
                    hits.append(str(path))
    return sorted(set(hits))


#: HOME entries where agent CLIs keep state (scanned in full); the rest of HOME one level deep
#: only: a full walk of a developer HOME took 2.1 s here (256k entries), per proposal.
HOME_AGENT_DIRS = (".claude", ".codex", ".config", ".local", ".cache/fapo", ".npm/_logs")


def outside_writes(
    since: float,
    workspace: Path,
    *,
    project_root: Path,
    tenant_root: Path,
    run_dir: Path,
    cache_path: Path | None = None,
    home: Path | None = None,
    tmp: Path | None = None,
    contained: bool = False,
    trusted: bool = False,
    live_runs: Iterable[Path] = (),
) -> list[str]:
    """Everything written after `since` outside the workspace (and its own parent folder, which
    holds the engine's transcripts): the project root (fapo.toml, the call cache, runs/), the
    tenant and the run; for an agent not `contained` in bwrap also TMP and HOME.

    Contained agents cannot reach TMP or HOME (theirs are tmpfs), and other processes on the
    host write there all the time (measured: a concurrent job's files in /tmp blocked a
    built-in proposal), so those are scanned only when the agent runs unsandboxed. `trusted`:
    the in-process built-in agent evaluates candidates itself, so the call cache legitimately
    changes while it proposes, and it is fapo's own code (no TMP/HOME scan either).

    Other run folders: concurrent runs write their own (two `fapo run` at once blocked each
    other's proposals). A contained agent cannot reach runs/ and the built-in one is fapo's
    code, so for them every other run folder is exempt. For an uncontained agent only
    `live_runs` are (folders whose lock another process held when the agent started or ended,
    see `live_run_dirs`): its writes into a finished, interrupted or new folder are reported."""
    exclude = [workspace.resolve().parent]
    if trusted and cache_path is not None:
        exclude.append(cache_path.parent)
    deep = [project_root, tenant_root, run_dir]
    scan_host = not contained and not trusted
    quiet: set[str] = set()
    if scan_host:
        home = home if home is not None else Path(os.environ.get("HOME") or Path.home())
        # gettempdir() probes TMP by creating and deleting a file on its first call, which bumps
        # the folder's own mtime (measured: every scripted proposal was flagged "wrote outside:
        # $TMPDIR/"); entries written into TMP are still reported one by one.
        tmp = tmp if tmp is not None else Path(tempfile.gettempdir())
        deep.append(tmp)
        quiet.add(str(tmp) + "/")
        deep += [home / d for d in HOME_AGENT_DIRS]
    hits = detect_outside_writes(deep, since, workspace, exclude=exclude)
    if scan_host and home is not None and home.is_dir():
        for entry in home.iterdir():
            try:
                st = entry.lstat()
            except OSError:
                continue
            inside = entry.resolve().is_relative_to(workspace.resolve().parent)
            if max(st.st_mtime, st.st_ctime) > since and not inside:
                hits.append(str(entry) + ("/" if entry.is_dir() else ""))
    ancestors = {str(p) + "/" for p in workspace.resolve().parents}
    runs_root, own = run_dir.resolve().parent.parent, run_dir.resolve()
    if contained or trusted:
        exempt = [runs_root]
    else:  # a live run's folder and the tenant folder above it (its mtime moves with it)
        exempt = [Path(p).resolve() for p in live_runs]
        ancestors |= {str(p.parent) + "/" for p in exempt}
    others = [
        h for h in hits
        if any(Path(h.rstrip("/")).is_relative_to(e) for e in exempt)
        and not Path(h).is_relative_to(own)
    ]  # fmt: skip
    return sorted(set(hits) - ancestors - quiet - set(others))


def live_run_dirs(run_dir: Path) -> set[Path]:
    """Run folders next to `run_dir` (any tenant) whose lock another process holds now."""
    from fapo.rundir import LOCK_FILE, is_locked

    runs_root, own = run_dir.resolve().parent.parent, run_dir.resolve()
    if not runs_root.is_dir():
        return set()
    return {
        lock.parent
        for lock in runs_root.glob(f"*/*/{LOCK_FILE}")
        if lock.parent.resolve() != own and is_locked(lock.parent)
    }


def symlinks_in(workspace: Path) -> list[str]:
    """Symlinks the agent left in its workspace: never followed, always blocked (a link to
    data/val.jsonl would otherwise be read as the proposal's text)."""
    return sorted(
        p.relative_to(workspace).as_posix() for p in workspace.rglob("*") if p.is_symlink()
    )


_SNAPSHOT_SKIP = {"__pycache__", ".pytest_cache"}


def snapshot_tenant(tenant_root: Path, dest: Path) -> None:
    """Copy the tenant folder (bytes, no symlinks followed) to `dest` once per run."""
    if dest.exists():
        return
    tmp = dest.with_name(dest.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        shutil.copytree(
            tenant_root, tmp, symlinks=True, ignore=shutil.ignore_patterns(*_SNAPSHOT_SKIP)
        )
    except shutil.Error as exc:  # copytree gathers OSErrors into one; report the first as such
        _src, dst, why = exc.args[0][0]
        code = re.search(r"\[Errno (\d+)\]", str(why))
        raise fs_error(OSError(int(code.group(1)) if code else 0, str(why), dst), tmp) from None
    tmp.rename(dest)


def _files(root: Path) -> dict[str, Path]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SNAPSHOT_SKIP]
        for name in filenames:
            p = Path(dirpath) / name
            out[p.relative_to(root).as_posix()] = p
    return out


def _same(a: Path, b: Path) -> bool:
    if a.is_symlink() or b.is_symlink():
        return a.is_symlink() and b.is_symlink() and os.readlink(a) == os.readlink(b)
    return a.read_bytes() == b.read_bytes()


def revert_tenant(tenant_root: Path, snapshot: Path) -> list[str]:
    """Put the tenant folder back exactly as `snapshot` holds it; the files that differed."""
    if not snapshot.is_dir():
        return []
    now, then = _files(tenant_root), _files(snapshot)
    changed = []
    for rel in sorted(set(now) | set(then)):
        a, b = now.get(rel), then.get(rel)
        if a is not None and b is not None and _same(a, b):
            continue
        changed.append(rel)
        if a is not None:
            a.unlink()
        if b is not None:
            target = tenant_root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if b.is_symlink():
                target.symlink_to(os.readlink(b))
            else:
                shutil.copy2(b, target)
    return changed


class RestorePoint:
    """Bytes of every file under `dirs` plus `files`, taken before an uncontained agent runs,
    so whatever it changed there (the run's records, fapo.toml, the call cache) is put back.

    Only for agents outside bwrap (scripted, --no-sandbox): a contained agent cannot reach these
    paths, and the built-in agent is fapo's own code writing the cache on purpose."""

    def __init__(
        self, dirs: Iterable[Path], files: Iterable[Path] = (), skip: Iterable[Path] = ()
    ) -> None:
        self.dirs = [Path(d) for d in dirs]
        self.skip = [Path(p) for p in skip]  # the run's scratch: the workspace being proposed in
        self.saved: dict[Path, bytes] = {p: p.read_bytes() for p in self._under_dirs()}
        for f in files:
            if Path(f).is_file():
                self.saved[Path(f)] = Path(f).read_bytes()
        self.files = [Path(f) for f in files]
        self.live_runs: set[Path] = set()  # other runs' folders locked when the agent started

    def _under_dirs(self) -> list[Path]:
        found = [p for d in self.dirs if d.is_dir() for p in _files(d).values()]
        return [p for p in found if not any(p.is_relative_to(s) for s in self.skip)]

    def restore(self) -> list[str]:
        """Put every saved file back, remove new ones under `dirs`; the paths that differed."""
        changed = []
        for p, data in self.saved.items():
            if p.is_symlink() or not p.is_file() or p.read_bytes() != data:
                if p.is_symlink():
                    p.unlink()
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(data)
                changed.append(str(p))
        now = self._under_dirs()
        now += [f for f in self.files if f.exists() or f.is_symlink()]
        for p in now:
            if p not in self.saved:
                p.unlink()
                changed.append(str(p))
        return sorted(changed)


@dataclass(frozen=True)
class Guard:
    """What the propose stage needs to contain and check one agent run (docs/security.md)."""

    project_root: Path
    tenant_root: Path
    run_dir: Path
    cache_path: Path
    trusted: bool = False  # fapo's own in-process built-in agent
    keys: Mapping[str, str] = field(default_factory=dict)  # known key values: never recorded
    leak_index: Any = None  # review.LeakIndex: leaky tenant files stay out of the workspace

    @property
    def tenant_snapshot(self) -> Path:
        return self.run_dir / "tenant-snapshot"

    def restore_point(self, contained: bool) -> RestorePoint | None:
        """Saved bytes of the run, fapo.toml and the cache, for an agent outside bwrap."""
        if contained or self.trusted:
            return None
        from fapo.rundir import scratch

        files = [self.project_root / "fapo.toml", self.cache_path]
        point = RestorePoint([self.run_dir], files, skip=[scratch(self.run_dir)])
        point.live_runs = live_run_dirs(self.run_dir)
        return point

    def after(
        self, since: float, workspace: Path, contained: bool, restore: RestorePoint | None
    ) -> tuple[list[str], list[str]]:
        """(outside writes, files put back): scans, then the tenant reverted from its snapshot
        and, for an uncontained agent, the run/fapo.toml/cache restored."""
        outside = outside_writes(
            since,
            workspace,
            project_root=self.project_root,
            tenant_root=self.tenant_root,
            run_dir=self.run_dir,
            cache_path=self.cache_path,
            contained=contained,
            trusted=self.trusted,
            # live when the agent started or now (one may have finished in between)
            live_runs=(restore.live_runs if restore else set()) | live_run_dirs(self.run_dir),
        )
        reverted = revert_tenant(self.tenant_root, self.tenant_snapshot)
        restored = restore.restore() if restore else []
        outside = sorted({*outside, *(str(self.tenant_root / r) for r in reverted), *restored})
        return outside, [*reverted, *restored]
