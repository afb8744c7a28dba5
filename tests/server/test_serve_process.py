"""``loopgate serve`` as a user starts it: a child process of the real command line, answering the official
``openai`` client on /v1, refusing the REST API without a token, logging what it answered, and stopping
cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest
from gateway_world import copy_workspace, template_workspace

from loopgate.loop.workspace import Workspace
from loopgate.store import gateway as gw


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_runs_as_a_process_and_stops_cleanly(tmp_path: Path) -> None:
    ws_dir = copy_workspace(template_workspace(tmp_path / "t"), tmp_path / "ws")
    ws = Workspace.open(ws_dir)
    key = gw.create_key(ws.store, "helper", actor="alice")[0]
    ws.store.close()
    port = free_port()
    env = {**os.environ, "LOOPGATE_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "loopgate", "serve", "--workspace", str(ws_dir), "--port",
                             str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:  # up once it answers (it imports torch and opens the registry first)
            assert proc.poll() is None, proc.communicate()
            try:
                urllib.request.urlopen(base + "/v1/models", timeout=5)
            except urllib.error.HTTPError as e:
                assert e.code == 401  # listening, and keys are required
                break
            except OSError:
                assert time.monotonic() < deadline, "loopgate serve did not start within 120 s"
                time.sleep(0.2)
        client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=60)
        answer = client.completions.create(model="helper", prompt="apple?", max_tokens=4)
        assert answer.choices[0].text and answer.system_fingerprint == "base@1"
        with pytest.raises(urllib.error.HTTPError) as no_token:
            urllib.request.urlopen(base + "/api/v1/lines", timeout=30)
        assert no_token.value.code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, errors = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    # uvicorn shuts down gracefully (the gateway's lifespan closes its models and log), then re-raises the signal
    # so that the exit status says SIGTERM, as a service manager expects
    assert proc.returncode in (0, -signal.SIGTERM), errors
    assert "Traceback" not in errors and f"on http://127.0.0.1:{port}" in errors, errors
    ws = Workspace.open(ws_dir)
    assert gw.request_count(ws.store, "base") == 1  # the answered request is in the log
    ws.store.close()
