"""Shared fixtures: one untrained tiny model saved once per session, and a fresh workspace per test."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LOOPGATE_THREADS", "1")

# deliberately smaller than TinyConfig's defaults: these tests prove plumbing, not learning
TINY_DIMS = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "max_positions": 64}

from small_spec import SMALL_SPEC  # noqa: E402  (re-exported: the workspace fixture's spec)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny Llama + char tokenizer saved as a normal HF directory (built once per session)."""
    from loopgate.models import TinyConfig, build_tiny_model, save_model, set_threads

    set_threads(1)
    model, tok = build_tiny_model(TinyConfig(seed=0, **TINY_DIMS))
    return save_model(model, tok, tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """One real PostgreSQL server for the whole session (tests/pg.py), started by the first test that asks."""
    from pg import PostgresServer

    server = PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def postgres_demo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``loopgate demo --quick`` on PostgreSQL, running beside the suite from its first test on (see
    ``tests/background_demo.py``); None when its test is not collected."""
    import background_demo

    if not any(background_demo.TEST in item.nodeid for item in request.session.items):
        yield None
        return
    yield from background_demo.start(request.getfixturevalue("pg_server"), tmp_path_factory.mktemp("pg-demo"))


@pytest.fixture
def database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str | None]:
    """The registry database a test runs on: ``sqlite`` (the workspace's own file) unless the test is
    parametrized with ``tests.pg.both_databases`` (or a conftest overrides this fixture with params); for
    ``postgresql`` a fresh database on the session's server, exported as LOOPGATE_DATABASE_URL so every
    Store the test opens (subprocesses included) uses it. Yields the URL (None for SQLite)."""
    from pg import open_database

    yield from open_database(request, monkeypatch)


@pytest.fixture
def workspace(tmp_path: Path, database: str | None):  # -> Workspace (imported lazily so collection stays cheap)
    """A freshly initialised workspace holding SMALL_SPEC (lines base → support → billing, app helpdesk)."""
    from loopgate.loop.workspace import Workspace

    ws, _ = Workspace.init(tmp_path / "ws", spec_text=SMALL_SPEC)
    yield ws
    ws.store.close()


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run ``loopgate ARGS`` in-process through the real entry point (exit codes and error paragraphs
    included): ``cli("status", "--json", workspace=ws.root)``."""
    from loopgate.cli import main

    def run(*args: str | Path, workspace: Path | None = None) -> CliResult:
        argv = [str(a) for a in args] + (["--workspace", str(workspace)] if workspace is not None else [])
        capsys.readouterr()
        try:
            main(argv)
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


# Tests of other layers that also run on PostgreSQL (a representative subset: the CLI's registry verbs through
# the service layer): their `database` fixture is parametrized here, so their modules need no change. The
# store, ledger and concurrency tests run on both databases through their own conftests.
BOTH_DATABASES = {
    "test_cli_core.py": {"test_status_json", "test_versions_json", "test_lineage_json",
                         "test_channels_json_with_history", "test_gc_json", "test_audit_verify_and_log_json",
                         "test_bad_input_is_one_paragraph_and_exit_2"},
    # the fuzz suite's registry-touching surfaces (a bad spec is refused before any database is opened)
    "test_fuzz_inputs.py": {"test_bad_update_data_is_refused_before_training", "test_bad_cli_arguments_exit_2",
                            "test_api_answers_bad_requests_with_4xx_json"},
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    names = BOTH_DATABASES.get(Path(str(metafunc.definition.fspath)).name, set())
    if metafunc.definition.originalname in names and "database" in metafunc.fixturenames:
        metafunc.parametrize("database", ["sqlite", "postgresql"], indirect=True)
