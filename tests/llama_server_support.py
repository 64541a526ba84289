"""llama.cpp's own `llama-server` on 127.0.0.1: a real OpenAI-compatible server that decodes
several requests at once (`--parallel`), serving the packaged GGUF model.

The binary is built by `scripts/build_llama_server.sh` (run by `make install-dev`) into the
venv; set RAGKIT_LLAMA_SERVER to use another one. Without it the tests that need it skip.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


def llama_server_binary() -> Path | None:
    """$RAGKIT_LLAMA_SERVER, else the newest build `scripts/build_llama_server.sh` cached in the
    venv (one folder per llama.cpp version)."""
    configured = os.environ.get("RAGKIT_LLAMA_SERVER")
    if configured:
        return Path(configured)
    builds = sorted(Path(sys.prefix).glob("llama-server/*/llama-server"), key=os.path.getmtime)
    return builds[-1] if builds else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def llama_server(
    log_dir: Path, parallel: int = 4, ctx_per_slot: int = 4096, threads: int = 1
) -> Iterator[str]:
    """Starts llama-server on a free port; yields its base URL, stops it on exit."""
    if os.environ.get("RAGKIT_LLAMA_SERVER_PENDING"):
        pytest.fail("this test starts llama-server, which is still building: mark it llama_server")
    binary = llama_server_binary()
    if binary is None:
        pytest.skip("llama-server is not built: run `make llama-server`")
    from ragkit.models import packaged_gguf

    port = free_port()
    command = [
        str(binary), "--model", str(packaged_gguf()), "--host", "127.0.0.1", "--port", str(port),
        "--parallel", str(parallel), "--ctx-size", str(parallel * ctx_per_slot),
        "--threads", str(threads), "--metrics", "--slots",
    ]  # fmt: skip
    log_path = log_dir / "llama-server.log"
    with served_process("llama-server", command, log_path, f"http://127.0.0.1:{port}") as url:
        yield url


@contextlib.contextmanager
def served_process(
    name: str, command: list[str], log_path: Path, url: str, ready_path: str = "/health"
) -> Iterator[str]:
    """Runs a server command until `url + ready_path` answers 200; yields `url`, stops it on exit.

    Output goes to `log_path` (a file: a full pipe would stall a server that logs heavily); a
    server that exits or stays unready for 180 s fails the test with its log's tail.
    """
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                pytest.fail(f"{name} exited with {process.returncode}: {tail}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + ready_path, timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"{name} did not answer within 180 s; see {log_path}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


PASSTHROUGH_SPEC = """\
name: passthrough
chunker: {{chunk_tokens: 48, overlap_tokens: 8}}
retriever: {{kind: dense, top_k: 1}}
prompt: {{system: "Answer from the passage in a few words."}}
generator: {{kind: openai, base_url: "{url}", model: packaged, max_new_tokens: 8, timeout_s: 900}}
"""
"""A pipeline over the bundled corpus whose generator is the OpenAI-compatible server at `url`."""


def busy_slots(url: str) -> int:
    """How many of the server's slots are decoding a request now."""
    slots = httpx.get(f"{url}/slots", timeout=30).json()
    return sum(1 for slot in slots if slot.get("is_processing"))


@contextlib.contextmanager
def ragkit_serve_process(
    log_dir: Path, *arguments: str
) -> Iterator[tuple[subprocess.Popen, str, Path]]:
    """`ragkit serve ARGUMENTS --port P` in a child process, once /health answers; yields the
    process, its URL and its log, and kills it on exit if it is still running."""
    port = free_port()
    log_path = log_dir / f"serve-{port}.log"
    command = [sys.executable, "-m", "ragkit.cli", "serve", *arguments, "--port", str(port)]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=dict(os.environ)
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "ragkit serve did not start within 300 s"
            time.sleep(0.5)
        yield process, url, log_path
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
