"""A registry writer in its own process, for the concurrency tests: ``python writer.py MODE HOME ID ARG GO``
(the tests fork it: :func:`main` in a child process, its exit code the process's).

It opens the store (LOOPGATE_DATABASE_URL picks the database), does what it must read first, then waits
for the file GO to appear so that every writer starts writing at the same moment.

- ``writes N``: N writes in turn — a version of ``base`` (every 5th), a move of ``base/staging`` to it, and
  ledger notes carrying (writer, i).
- ``move VERSION:KIND``: read ``base/production``, wait, then move it to VERSION (a ``release`` or a
  ``rollback``) expecting what was read
  (compare-and-set); writes ``moved`` or ``conflict: <message>`` to HOME/out-ID.
- ``kill VERSION``: move ``base/production`` to VERSION with LOOPGATE_KILL_AT=store.before-commit (the process
  SIGKILLs itself inside the transaction, after its rows are written and before the commit).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from loopgate.errors import ConflictError
from loopgate.records import Decision, Verdict
from loopgate.store import Store


def wait_for(go: Path) -> None:
    deadline = time.monotonic() + 120
    while not go.exists():
        if time.monotonic() > deadline:
            raise SystemExit("the go file never appeared")
        time.sleep(0.01)


def main(mode: str, home: str, writer: str, arg: str, go: str) -> int:
    store = Store(home)
    (Path(home) / f"ready-{writer}").touch()
    if mode == "writes":
        src = Path(home) / f"src-{writer}"
        src.mkdir(exist_ok=True)
        wait_for(Path(go))
        version = None
        for i in range(int(arg)):
            if i % 5 == 0:
                (src / "model.safetensors").write_bytes(f"writer {writer} write {i}".encode())
                version = store.add_version("base", {"model.safetensors": src / "model.safetensors"},
                                            actor=f"w{writer}").id
            elif i % 5 == 1 and version is not None:
                decision_id = store.add_decision(Decision(version=version, verdict=Verdict.passed,
                                                          policy_sha256="p" * 64, gates=[],
                                                          requester=f"w{writer}"), actor=f"w{writer}").id
            elif i % 5 == 2 and version is not None:
                store.move_channels([("base", "staging", version)], kind="release", reason=f"w{writer} {i}",
                                    actor=f"w{writer}", decision_id=decision_id)
            else:
                store.record("note", f"w{writer}", {"writer": writer, "i": i}, actor=f"w{writer}")
        return 0
    if mode == "move":
        version, _, kind = arg.partition(":")
        seen = store.channel("base", "production")
        decision_id = None
        if kind in ("release", "promote"):  # channels move only through a passing decision (the release rule)
            decision_id = store.add_decision(Decision(version=version, verdict=Verdict.passed, policy_sha256="p" * 64,
                                                      gates=[], requester=f"w{writer}")).id
        wait_for(Path(go))
        try:
            store.move_channels([("base", "production", version)], kind=kind, reason=f"by {writer}",
                                actor=f"w{writer}", expected={("base", "production"): seen}, decision_id=decision_id)
        except ConflictError as err:
            (Path(home) / f"out-{writer}").write_text(f"conflict: {err}")
            return 2
        (Path(home) / f"out-{writer}").write_text("moved")
        return 0
    if mode == "kill":
        wait_for(Path(go))
        decision = store.add_decision(Decision(version=arg, verdict=Verdict.passed, policy_sha256="p" * 64,
                                               gates=[]), actor="decider")  # recorded before the barrier
        os.environ["LOOPGATE_KILL_AT"] = "store.before-commit"  # dies after its rows are flushed, uncommitted
        store.move_channels([("base", "production", arg)], kind="release", reason="killed", actor=f"w{writer}",
                            decision_id=decision.id)
        return 0
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
