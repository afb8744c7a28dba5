"""Pin and unpin a line: ``loopgate pin LINE --reason TEXT`` keeps the line's production on its parent version
through every upgrade of the parent (propagation skips it and says so); ``loopgate unpin LINE`` lets the next
propagation wave re-derive it again.

Only a model line below another can be pinned: a foundation has no parent to follow, and an app follows its
model line's channel (pin that line instead). Pinning a pinned line keeps the first pin (who, when, why) and
records nothing; unpinning a line that is not pinned records nothing either — both say so and succeed, so a
retried command is harmless.
"""

from __future__ import annotations

from pydantic import BaseModel

from loopgate.errors import LoopgateError
from loopgate.identity import normalise_identity
from loopgate.loop.rules import CLI_ROLE, check_pin
from loopgate.loop.workspace import Workspace, current_user
from loopgate.spec import Tier
from loopgate.store.pins import LinePin, line_pin, pin_line, unpin_line

MAX_REASON = 2000


class PinOutcome(BaseModel):
    """What ``pin``/``unpin`` did: whether the line is pinned now, whether this call changed it, and the pin."""

    line: str
    pinned: bool
    changed: bool
    pin: LinePin | None = None
    message: str


def _pinnable(ws: Workspace, line: str) -> None:
    """Refuse a line that cannot be pinned (unknown lines are refused by the spec, naming the known ones)."""
    spec = ws.eco.line(line)
    if spec.tier is Tier.app:
        raise LoopgateError(f"'{line}' is an app: it follows {spec.parent}'s channel; pin the model line "
                            f"'{spec.parent}' instead")
    if spec.parent is None:
        raise LoopgateError(f"'{line}' is a foundation line: it has no parent version to stay on, so there is "
                            "nothing to pin")


def _reason(reason: str) -> str:
    """The reason as stored: text a database can hold, of a bounded length."""
    if len(reason) > MAX_REASON:
        raise LoopgateError(f"the reason is {len(reason)} characters long; keep it under {MAX_REASON}")
    try:
        reason.encode("utf-8")
    except UnicodeEncodeError:
        raise LoopgateError("the reason holds characters that are not valid text (a lone surrogate)") from None
    return reason.strip()


def pin(ws: Workspace, line: str, *, reason: str, actor: str | None = None, role: str = CLI_ROLE) -> PinOutcome:
    """Pin ``line`` to its parent version: later waves leave it where it is until it is unpinned."""
    check_pin(role, reason)
    _pinnable(ws, line)
    who = normalise_identity(actor, what="--as") if actor else current_user()
    stored, made = pin_line(ws.store, line, actor=who, reason=_reason(reason))
    where = f"stays on {stored.production}" if stored.production else "has no production version yet"
    if made:
        message = (f"pinned {line}: it {where} when its parent line ships a new version "
                   f"(unpin with `loopgate unpin {line}`)")
    else:
        message = f"{line} is already {stored.note}; nothing changed"
    return PinOutcome(line=line, pinned=True, changed=made, pin=stored, message=message)


def unpin(ws: Workspace, line: str, *, actor: str | None = None, reason: str = "", role: str = CLI_ROLE
          ) -> PinOutcome:
    """Unpin ``line``: the next release of its parent line re-derives it again (nothing runs now)."""
    check_pin(role, reason, unpin=True)
    ws.eco.line(line)
    who = normalise_identity(actor, what="--as") if actor else current_user()
    removed = unpin_line(ws.store, line, actor=who, reason=_reason(reason))
    if removed is None:
        return PinOutcome(line=line, pinned=False, changed=False,
                          message=f"{line} is not pinned; nothing changed")
    parent = ws.eco.lines[line].parent
    return PinOutcome(line=line, pinned=False, changed=True, pin=removed,
                      message=f"unpinned {line} (pinned by {removed.actor} since {removed.since:%Y-%m-%d %H:%M} "
                              f"UTC): the next release of {parent} re-derives it")


def pin_of(ws: Workspace, line: str) -> LinePin | None:
    """The line's stored pin, or None."""
    return line_pin(ws.store, line)
