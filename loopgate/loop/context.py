"""A line as one command sees it, resolved from the spec once: its spec, tier, policy and suite names.

The update and decide paths ask the same questions about a line many times over (its policy for each gate, its
owned and inherited suites for each baseline, its tier, which suites are safety suites). :func:`line_context`
answers them once per workspace and spec — a command opens one workspace, so once per command — and every
caller reads the same :class:`LineContext`. Suites are named here, not loaded: a suite's identity can depend on
a channel (a judge line's version) that the command itself may move.
"""

from __future__ import annotations

from dataclasses import dataclass

from loopgate.loop.workspace import Workspace
from loopgate.spec import LineSpec, Policy


@dataclass(frozen=True)
class LineContext:
    """What the spec says about one line, for one command."""

    line: str
    spec: LineSpec
    policy: Policy
    owned: tuple[str, ...]  # the line's own suites, and a model line's apps' suites
    inherited: tuple[str, ...]  # suites it answers to for its ancestors
    safety: tuple[str, ...]  # which of all its suites are safety suites

    @property
    def tier(self) -> str:
        return self.spec.tier.value

    @property
    def suites(self) -> list[str]:
        """Owned then inherited: the order the gates and the evaluations use."""
        return [*self.owned, *self.inherited]


def line_context(ws: Workspace, line: str) -> LineContext:
    """The line's context, resolved on first use and kept on the workspace for as long as its spec is the same
    object (a server that reloads the spec gets new contexts). An unknown line is the spec's own error."""
    cached = ws.line_contexts.get(line)
    if cached is not None and cached[0] is ws.eco:
        return cached[1]
    eco = ws.eco
    spec = eco.line(line)
    owned = eco.owned_suites(line)
    if spec.app is None:  # a model line answers to its apps' own suites too (through each app's template)
        owned += [s for child in eco.children(line) if eco.lines[child].app is not None
                  for s in eco.lines[child].suites if s not in owned]
    inherited = eco.inherited_suites(line)
    ctx = LineContext(line=line, spec=spec, policy=eco.policy_for(line), owned=tuple(owned),
                      inherited=tuple(inherited),
                      safety=tuple(s for s in [*owned, *inherited] if eco.suites[s].kind == "safety"))
    ws.line_contexts[line] = (eco, ctx)
    return ctx
