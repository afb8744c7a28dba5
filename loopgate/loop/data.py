"""Which data a run trains on and rehearses: the line's production history, replay, and the checks on the
files a user hands in. One place decides replay, for updates and re-derivations alike."""

from __future__ import annotations

from pathlib import Path

from loopgate.errors import DataError, LoopgateError, NotFoundError
from loopgate.hashing import sha256_file
from loopgate.loop.workspace import Workspace
from loopgate.records import Provenance
from loopgate.spec import Recipe
from loopgate.store import VersionInfo


def production_history(ws: Workspace, line: str) -> list[VersionInfo]:
    """The line's production version and the versions it was built from (never a rejected candidate), newest
    first."""
    chain: list[VersionInfo] = []
    vid = ws.store.channel(line, "production")
    while vid and vid.startswith(f"{line}@") and vid not in {v.id for v in chain}:
        v = ws.store.version(vid)
        chain.append(v)
        vid = Provenance.of(v.provenance).old_child
    return chain


def history_data(ws: Workspace, line: str) -> list[str]:
    """sha256 of the update data the line's production history was built on (still in the store), oldest
    use first; never a rejected candidate's data — replaying it would rehearse what the gates refused."""
    shas: list[str] = []
    for v in production_history(ws, line):
        shas += [s for s in v.data_sha256 if s not in shas and ws.store.artifacts.has(s)]
    return shas


def data_paths(ws: Workspace, shas: list[str]) -> list[Path]:
    """The stored files of these data hashes, verified."""
    return [ws.store.artifacts.verify(sha, "update data") for sha in shas]


def replay_files(ws: Workspace, line: str, recipe: Recipe, *, exclude: tuple[str, ...] | list[str] = ()
                 ) -> list[Path]:
    """The files a run of ``recipe`` on ``line`` rehearses — the one place this is decided, for updates and
    re-derivations alike. ``history``: the released update data of the line and every ancestor (what it
    inherited); ``suites``: the ``train_path`` of its owned and inherited suites. Data with a sha256 in
    ``exclude`` (the run's own data) is left out. A recipe that asks for replay and finds nothing stops with
    an error naming what was searched, unless ``replay.required`` is false."""
    if recipe.replay is None:
        return []
    searched: list[str] = []
    shas: list[str] = []
    files: list[Path] = []
    if "history" in recipe.replay.sources:
        for name in [line, *ws.eco.ancestors(line)]:
            searched.append(f"the released update data of '{name}'")
            shas += [s for s in history_data(ws, name) if s not in exclude and s not in shas]
        files += data_paths(ws, shas)
    if "suites" in recipe.replay.sources:
        names = ws.eco.owned_suites(line) + ws.eco.inherited_suites(line)
        searched.append("the train_path of suites " + (", ".join(names) if names else "(the line has none)"))
        files += [ws.eco.resolve(tp) for n in names if (tp := ws.eco.suites[n].train_path)]
    if not files and recipe.replay.required:
        raise LoopgateError(
            f"the recipe of '{line}' asks for replay (sources: {', '.join(recipe.replay.sources)}) but found no "
            f"rows; searched {'; '.join(searched)}. A registered foundation has no update data in Loopgate: "
            "give its suites a train_path and add 'suites' to replay.sources, or set replay.required: false "
            "to train without replay")
    return files


def check_data(data: list[Path], recipe: Recipe) -> None:
    """Every update data file exists and parses for the recipe's method (a DataError names file, line, field)."""
    from loopgate.train.data import load_rows
    from loopgate.train.methods import row_kind_for

    for p in data:
        if Path(p).is_dir():
            raise DataError(f"data {p} is a folder; name the JSONL file(s) in it, one each")
        if not Path(p).is_file():
            raise NotFoundError(f"data file {p}: no such file")
        load_rows(Path(p), row_kind_for(recipe.method))


def already_released(ws: Workspace, line: str, data: list[Path]) -> VersionInfo | None:
    """The version in the line's production history that was built on all of these data files, if any."""
    shas = {sha256_file(p) for p in data}
    for v in production_history(ws, line):
        if shas and shas <= set(v.data_sha256):
            return v
    return None
