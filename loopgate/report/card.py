"""A version's model card: what it is, where it comes from, what it is for and where it falls short — built from
its release notes (the same evaluation rows) and the registry."""

from __future__ import annotations

from pydantic import BaseModel

from loopgate.evaluate.metrics import LOWER_IS_BETTER
from loopgate.loop.versions import pinned_note, version_lineage
from loopgate.loop.workspace import Workspace
from loopgate.records import Verdict
from loopgate.report.content import ReleaseNotes, SuiteRow
from loopgate.report.marks import RollbackMark, TransferMark
from loopgate.store import VersionInfo
from loopgate.store.pins import line_pin

# a suite scoring below this is listed among the model card's limitations
LOW_SCORE = 0.6


class ModelCard(BaseModel):
    """What the version is, where it comes from, what it is for and where it falls short."""

    version: VersionInfo
    tier: str
    parent_line: str | None = None
    description: str = ""
    apps: list[str] = []
    channels: list[str] = []
    ancestors: list[dict[str, str]] = []
    descendants: list[dict[str, str]] = []
    evaluations: list[SuiteRow] = []
    not_evaluated: list[str] = []
    limitations: list[str] = []
    rollbacks: list[RollbackMark] = []
    transfer: TransferMark | None = None


def model_card(ws: Workspace, notes: ReleaseNotes) -> ModelCard:
    """The model card of the release notes' version (reusing their evaluation rows)."""
    version = notes.version
    spec = ws.eco.line(version.line)
    lineage = version_lineage(ws, version.id)
    channels = [c for c, v in ws.store.channels(version.line).items() if v == version.id]
    declared = ws.eco.owned_suites(version.line) + ws.eco.inherited_suites(version.line)
    evaluated = {r.suite for r in notes.suites}
    card = ModelCard(
        version=version, tier=spec.tier.value, parent_line=spec.parent, description=spec.description,
        apps=[c for c in ws.eco.children(version.line) if ws.eco.lines[c].tier.value == "app"],
        channels=channels, ancestors=[a.model_dump(exclude_none=True) for a in lineage.ancestors],
        descendants=[d.model_dump(exclude_none=True) for d in lineage.descendants],
        evaluations=notes.suites, not_evaluated=[s for s in declared if s not in evaluated],
        rollbacks=notes.rollbacks, transfer=notes.transfer,
    )
    card.limitations = limitations(ws, notes, card)
    return card


def limitations(ws: Workspace, notes: ReleaseNotes, card: ModelCard) -> list[str]:
    """Plain-language limits derived from the records: low scores, gates that did not pass, pinning, gaps."""
    out: list[str] = []
    for row in notes.suites:
        if row.kind not in LOWER_IS_BETTER and row.score < LOW_SCORE:  # bits per byte has no absolute "low"
            out.append(f"Low score on {row.role} suite '{row.suite}': {row.score:.3f} on {row.n} examples "
                       f"(below {LOW_SCORE:.2f}).")
        if row.comparison is not None and row.comparison.negative_flips:
            c = row.comparison
            unsafe = next((g.unsafe for g in notes.flips if g.suite == row.suite and g.direction == "negative"), 0)
            unsafe_note = f", {unsafe} of them unsafe (refused before, complies now)" if unsafe else ""
            out.append(f"'{row.suite}': {c.negative_flips} example(s) the replaced version got right are now "
                       f"wrong (negative flip rate {c.negative_flip_rate:.3f}){unsafe_note}.")
    if notes.decision is None:
        out.append("No gate decision is recorded for this version: it has not been through the release gates.")
    else:
        for gate in notes.decision.gates:
            if gate.verdict is not Verdict.passed:
                kind = "blocking" if gate.blocking else "warning only"
                detail = f": {gate.summary}" if gate.summary else ""
                overridden = f" (overridden by {', '.join(gate.overridden_by)})" if gate.overridden_by else ""
                out.append(f"Gate '{gate.name}' is {gate.verdict.value} ({kind}){detail}{overridden}.")
    if card.not_evaluated:
        out.append(f"Not evaluated on declared suite(s): {', '.join(card.not_evaluated)}.")
    pinned = _pinned(ws, notes.version)
    if pinned:
        out.append(pinned)
    return out


def _pinned(ws: Workspace, version: VersionInfo) -> str:
    """Whether the version sits on an older parent version than the parent line now ships."""
    spec = ws.eco.line(version.line)
    if spec.parent is None:
        return ""
    if ws.store.channel(version.line, "production") == version.id:
        pin = line_pin(ws.store, version.line)
        if pin is not None:
            return f"The line is {pin.note}: propagation leaves it on {version.parent_version or 'its parent'}."
        note = pinned_note(ws, version.line)
        return f"The line is {note}: it did not move with its parent's last release." if note else ""
    parent_prod = ws.store.channel(spec.parent, "production")
    if parent_prod and version.parent_version and version.parent_version != parent_prod:
        return f"Built on {version.parent_version}, while the parent line now ships {parent_prod}."
    return ""
