"""Versions as the loop sees them: registering model directories, materialising loadable weights,
lineage across lines, and the ecosystem status."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from loopgate.errors import LoopgateError, NotFoundError, UnsafeModelError
from loopgate.hashing import sha256_json
from loopgate.loop.outcomes import ChannelReport, Lineage, LineageLink, StatusRow, VersionView
from loopgate.loop.workspace import Workspace
from loopgate.spec import Tier
from loopgate.store import CHANNELS, VersionInfo
from loopgate.store.pins import line_pins

if TYPE_CHECKING:  # the model library loads only where weights are touched: status and lineage never do
    from loopgate.models.io import ModelRef


def register_model(ws: Workspace, line: str, model_dir: Path, *, base: str | None = None, note: str = "",
                   actor: str = "loopgate", source: str = "register", parent_version: str | None = None,
                   recipe: dict[str, Any] | None = None, data_sha256: list[str] | None = None,
                   seed: int | None = None, provenance: dict[str, Any] | None = None) -> VersionInfo:
    """Store a local HF model (or PEFT adapter) directory as a new immutable version of ``line``.

    What is stored is opened first: its files are checked against each other (and an adapter against its base,
    :func:`~loopgate.models.io.check_model_dir`), then loaded and run forward over a few tokens
    (:func:`~loopgate.models.io.check_forward`). A folder that fails is refused before anything is written.
    """
    from loopgate.models.io import ModelRef, check_forward, check_model_dir, is_adapter_dir, model_files

    spec = ws.eco.line(line)
    if spec.tier is Tier.app:
        raise LoopgateError(f"'{line}' is an app: apps have no weights, they follow their model line's channel")
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise NotFoundError(f"model folder {model_dir}: no such folder")
    files = model_files(model_dir)
    adapter = is_adapter_dir(model_dir)
    base_dir: Path | None = None
    if adapter:
        if base is None:
            raise LoopgateError(f"{model_dir} is a PEFT adapter: name its base, the version it was trained on")
        base_ref = version_ref(ws, base)
        if base_ref.adapter is not None:
            raise LoopgateError(f"{base} is itself an adapter version; Loopgate applies one adapter on a full "
                                "model — register the adapter on a full version")
        base_dir = base_ref.base
    elif not (model_dir / "config.json").exists():
        raise UnsafeModelError(f"{model_dir} has no config.json; pass a Hugging Face model directory")
    # a truncated, mismatched or relabelled file, or an adapter made for another model, is refused here, not at its
    # first load; then one forward pass over a few tokens shows what only running it can (NaN weights or config)
    check_model_dir(model_dir, base=base_dir)
    check_forward(ModelRef(base_dir, model_dir) if base_dir is not None else model_dir)
    if parent_version is None and spec.parent is not None:
        parent_version = ws.store.channel(spec.parent, "production")
    prov = dict(provenance or {})
    if note:
        prov["note"] = note
    return ws.store.add_version(
        line, {str(p.relative_to(model_dir)): p for p in files}, kind="adapter" if adapter else "full",
        source=source, parent_version=parent_version, base_version=base if adapter else None, recipe=recipe,
        data_sha256=data_sha256, seed=seed, provenance=prov, actor=actor,
    )


def version_key(ws: Workspace, version_id: str) -> str:
    """Content key of the weights a version serves: its files' hashes and, for an adapter, its base's key."""
    v = ws.store.version(version_id)
    base = version_key(ws, v.base_version) if v.base_version else None
    return sha256_json({"files": v.files, "base": base})


def version_ref(ws: Workspace, version_id: str) -> ModelRef:
    """What to load to run the version: its checkout, or for an adapter version its base's checkout and its own.

    Both are folders of links to the version's verified blobs; an adapter is merged in memory when loaded,
    never on disk (an adapter version costs only its adapter's bytes).
    """
    from loopgate.models.io import ModelRef

    v = ws.store.version(version_id)
    if v.kind != "adapter":
        return ModelRef(ws.store.checkout(version_id))
    assert v.base_version is not None
    base = version_ref(ws, v.base_version)
    if base.adapter is not None:
        raise LoopgateError(f"{version_id} is an adapter on {v.base_version}, itself an adapter version; Loopgate "
                            "applies one adapter on a full model — register the adapter on a full version")
    return ModelRef(base.base, ws.store.checkout(version_id))


def model_dir(ws: Workspace, version_id: str) -> Path:
    """The checkout of a full version (one folder of full weights); an adapter version has none — use
    :func:`version_ref`."""
    ref = version_ref(ws, version_id)
    if ref.adapter is not None:
        raise LoopgateError(f"{version_id} is an adapter version: it has no folder of full weights (it is loaded as "
                            "its base plus the adapter)")
    return ref.base


def adapter_parts(ws: Workspace, version_id: str) -> tuple[Path, Path | None]:
    """(base model dir, adapter dir or None): what an engine loads to serve the version un-merged."""
    ref = version_ref(ws, version_id)
    return ref.base, ref.adapter


def version_lineage(ws: Workspace, version_id: str) -> Lineage:
    """Ancestors (parent versions and adapter bases, nearest first) and descendants, across lines.

    Three queries, however large the ecosystem: the version (row, files), then how every version hangs together."""
    ws.store.version(version_id)
    links = ws.store.version_links()
    ancestors: list[LineageLink] = []
    cur = links[version_id]
    seen = {version_id}
    while True:
        nxt = None
        if cur.base_version and cur.base_version not in seen:
            ancestors.append(LineageLink(version=cur.base_version, relation="adapter base"))
            nxt = cur.base_version
        if cur.parent_version and cur.parent_version not in seen and cur.parent_version != cur.base_version:
            ancestors.append(LineageLink(version=cur.parent_version, relation="parent"))
            nxt = cur.parent_version
        if nxt is None or nxt not in links:
            break
        seen.add(nxt)
        cur = links[nxt]
    # who was built on whom (as parent or adapter base), each list in (line, number) order
    built_on: dict[str, list[str]] = {}
    for v in sorted(links.values(), key=lambda v: (v.line, v.number)):
        for up in dict.fromkeys(u for u in (v.parent_version, v.base_version) if u):
            built_on.setdefault(up, []).append(v.id)
    descendants: list[LineageLink] = []
    frontier = [version_id]
    while frontier:
        nxt_frontier = []
        for f in frontier:
            for vid in built_on.get(f, []):
                if vid not in seen:
                    seen.add(vid)
                    descendants.append(LineageLink(version=vid, relation="child", of=f))
                    nxt_frontier.append(vid)
        frontier = nxt_frontier
    return Lineage(version=version_id, ancestors=ancestors, descendants=descendants)


def _pinned(built_on: str | None, parent_prod: str | None) -> str:
    if parent_prod is None or built_on == parent_prod:
        return ""
    return f"pinned to {built_on} (parent ships {parent_prod})"


def pinned_note(ws: Workspace, line: str) -> str:
    """Why a line is not on its parent's production version (empty when it is, or has no parent)."""
    spec = ws.eco.line(line)
    if spec.parent is None or spec.tier is Tier.app:
        return ""
    prod = ws.store.channel(line, "production")
    if prod is None:
        return ""
    return _pinned(ws.store.version(prod).parent_version, ws.store.channel(spec.parent, "production"))


def app_target(ws: Workspace, app_line: str) -> str | None:
    """The model version an app serves: its model line's channel, resolved now."""
    spec = ws.eco.line(app_line)
    assert spec.app is not None and spec.parent is not None
    return ws.store.channel(spec.parent, spec.app.channel)


def ecosystem_status(ws: Workspace) -> list[StatusRow]:
    """Every line in tier order: its channels, latest version, and whether it is pinned to an old parent.

    A fixed number of queries (channels, latest numbers, production versions), not one per line."""
    channels = ws.store.channel_table()
    latest = ws.store.latest_numbers()
    prods = ws.store.production_links()
    pins = line_pins(ws.store)
    rows: list[dict[str, Any]] = []
    for name in _tier_order(ws):
        spec = ws.eco.lines[name]
        mine = channels.get(name, {})
        if spec.tier is Tier.app:
            assert spec.app is not None and spec.parent is not None
            target = channels.get(spec.parent, {}).get(spec.app.channel)
            rows.append({"line": name, "tier": spec.tier.value, "parent": spec.parent,
                         "channels": {"production": target, "canary": None, "staging": None}, "latest": None,
                         "note": f"app → {spec.parent}/{spec.app.channel}"})
            continue
        note = ""
        if spec.parent is not None and name in prods:
            note = _pinned(prods[name].parent_version, channels.get(spec.parent, {}).get("production"))
        if name in pins:  # a stored pin (loopgate pin) says who, since when, and how to undo it
            note = pins[name].note + (f"; {note}" if note else "")
        number = latest.get(name)
        rows.append({"line": name, "tier": spec.tier.value, "parent": spec.parent,
                     "channels": {c: mine.get(c) for c in CHANNELS}, "latest": f"{name}@{number}" if number else None,
                     "note": note, "pinned": bool(note)})
    return _STATUS_ROWS.validate_python(rows)  # one validation call for every row, in pydantic-core


_STATUS_ROWS = TypeAdapter(list[StatusRow])


def _tier_order(ws: Workspace) -> list[str]:
    """Lines by tier, in spec order within a tier (a stable sort: no quadratic index lookups)."""
    return sorted(ws.eco.lines, key=lambda n: ws.eco.lines[n].tier.rank)


def line_versions(ws: Workspace, line: str) -> list[VersionView]:
    """The versions of a line, oldest first, each with the channels that point at it."""
    ws.eco.line(line)
    chans = ws.store.channels(line)
    return [VersionView(**v.model_dump(), channels=[c for c, x in chans.items() if x == v.id])
            for v in ws.store.line_versions(line)]


def channel_report(ws: Workspace, line: str) -> ChannelReport:
    """Where the line's channels point, its rollback target and the full history of every move."""
    ws.eco.line(line)
    return ChannelReport(line=line, channels=ws.store.channels(line), rollback_target=ws.store.rollback_target(line),
                         history=ws.store.channel_history(line))
