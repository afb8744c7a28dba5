"""Every shell block of README.md and docs/*.md marked runnable is run, so the docs cannot drift from the code.

The convention (docs/testing.md, "Runnable docs"): a fenced block whose info string is ``bash runnable`` is run;
every other block is prose. The runnable blocks of one file run in order, as one bash script (``set -e``,
``pipefail``), from a fresh empty folder with the venv's ``loopgate`` first on ``PATH``, ``HF_HUB_OFFLINE=1``
and no ``LOOPGATE_*`` variable of the caller's. So a file's blocks must be a complete tour: the data a command
reads is written by an earlier block of the same file. A command that documents a non-zero exit code says so in
a comment on its line, ``# exits N`` (e.g. a release blocked by a gate: ``# exits 3``); the test then requires
exactly N. A failure names the file and the doc line of the command that failed, with the script's output.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
EXITS = re.compile(r"#\s*exits (\d+)\b")
# a whole file's blocks; the README tour trains four tiny models and takes about a minute on a 2-core machine
FILE_TIMEOUT_S = 600


@dataclass(frozen=True)
class Block:
    """One runnable block: the file it is in, the doc line of its first command, its lines."""

    path: Path
    first_line: int
    lines: tuple[str, ...]


def doc_files() -> list[Path]:
    """README.md and every docs/*.md, sorted: whatever another change adds is picked up."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def runnable_blocks(path: Path) -> list[Block]:
    """The fenced blocks of ``path`` whose info string is ``bash runnable``, in file order.

    A small fence scanner rather than a Markdown library: CommonMark's fence rules (the closing fence is the same
    character, at least as long, with nothing after it) are all that is needed, and a parser would drop the doc
    line numbers that a failure must name.
    """
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        fence, info = m["fence"], m["info"].split()
        end = i + 1
        while end < len(lines) and not re.fullmatch(rf" {{0,3}}{fence[0]}{{{len(fence)},}}\s*", lines[end]):
            end += 1
        if info[:2] == ["bash", "runnable"]:
            blocks.append(Block(path, i + 2, tuple(lines[i + 1:end])))
        i = end + 1
    return blocks


def script_for(blocks: list[Block]) -> tuple[str, dict[int, str]]:
    """One bash script running ``blocks`` in order, and a map from its line numbers to ``file:line`` in the docs.

    A line that says ``# exits N`` becomes ``cmd && rc=0 || rc=$?`` (a list, so ``set -e`` does not stop at it) and
    a check that ``rc`` is N.
    """
    out = ["set -eo pipefail", "trap 'echo \"DOC-FAILED at script line $LINENO (exit $?)\" >&2' ERR"]
    where: dict[int, str] = {}
    for block in blocks:
        name = block.path.relative_to(ROOT)
        for k, line in enumerate(block.lines):
            doc = f"{name}:{block.first_line + k}"
            m = EXITS.search(line)
            if m is not None:
                command, code = line[: m.start()].rstrip(), int(m[1])
                line = (f"{command} && rc=0 || rc=$?; [ \"$rc\" -eq {code} ] || "
                        f"{{ echo \"DOC-FAILED: {doc} exited $rc, the doc says {code}\" >&2; false; }}")
            out.append(line)
            where[len(out)] = doc
    return "\n".join(out) + "\n", where


def clean_env(bin_dir: Path) -> dict[str, str]:
    """The caller's environment without LOOPGATE_* settings, offline, with the venv's console scripts first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPGATE_")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               LOOPGATE_THREADS="1", COLUMNS="120")
    return env


def run_blocks(blocks: list[Block], workdir: Path, timeout: float = FILE_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Run ``blocks`` as one script in ``workdir``; fail naming the doc line of the command that failed."""
    script, where = script_for(blocks)
    (workdir / ".docs-script.sh").write_text(script, encoding="utf-8")
    bash = shutil.which("bash") or "/bin/bash"
    proc = subprocess.run([bash, ".docs-script.sh"], cwd=workdir, env=clean_env(Path(sys.executable).parent),
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        lines = [int(n) for n in re.findall(r"DOC-FAILED at script line (\d+)", proc.stderr)]
        at = where.get(lines[-1], "?") if lines else "?"
        pytest.fail(f"{at}: a documented command failed (exit {proc.returncode}).\n--- stdout (end) ---\n"
                    f"{proc.stdout[-4000:]}\n--- stderr (end) ---\n{proc.stderr[-6000:]}", pytrace=False)
    return proc


def test_a_block_is_runnable_only_when_marked(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text("text\n\n```bash runnable\necho one > a\n```\n\n```bash\nfalse\n```\n\n"
                   "````bash runnable\ncat a\n```\nstill inside\n````\n\n~~~\nfalse\n~~~\n", encoding="utf-8")
    blocks = runnable_blocks(doc)
    assert [(b.first_line, b.lines) for b in blocks] == [(4, ("echo one > a",)),
                                                          (12, ("cat a", "```", "still inside"))]


def test_exit_codes_are_checked_as_documented(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    doc = tmp_path / "x.md"
    doc.write_text("```bash runnable\nexport N=3\nsh -c \"exit $N\"   # exits 3: as the doc says\n"
                   "echo after > after.txt\n```\n", encoding="utf-8")
    run_blocks(runnable_blocks(doc), tmp_path)
    assert (tmp_path / "after.txt").read_text() == "after\n"  # the blocks went on after the documented exit 3

    doc.write_text("```bash runnable\ntrue\nsh -c 'exit 2'   # exits 3\n```\n", encoding="utf-8")
    with pytest.raises(pytest.fail.Exception, match=r"x\.md:3: a documented command failed"):
        run_blocks(runnable_blocks(doc), tmp_path)
    doc.write_text("```bash runnable\ntrue\n\nfalse\necho never\n```\n", encoding="utf-8")
    with pytest.raises(pytest.fail.Exception, match=r"x\.md:4: a documented command failed"):
        run_blocks(runnable_blocks(doc), tmp_path)


def test_the_readme_tour_is_runnable() -> None:
    blocks = runnable_blocks(ROOT / "README.md")
    commands = "\n".join(line for b in blocks for line in b.lines)
    for verb in ("init", "register", "release", "approve", "update", "status", "plan", "pin", "unpin", "rollback",
                 "audit verify", "report"):
        assert re.search(rf"^loopgate {verb}\b", commands, re.M), f"the README tour does not run 'loopgate {verb}'"


@pytest.mark.slow
@pytest.mark.parametrize("doc", [p for p in doc_files() if runnable_blocks(p)], ids=lambda p: p.name)
def test_the_runnable_blocks_of_a_doc_run_from_a_fresh_workspace(doc: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    run_blocks(runnable_blocks(doc), tmp_path)
    print(f"{doc.relative_to(ROOT)}: {len(runnable_blocks(doc))} blocks in {time.monotonic() - started:.1f} s")
