"""Who may do what: every rule about people lives here, and the CLI, the REST API and the dashboard call it.

The rules about *versions* (which version a channel may point at) are checked where a channel pointer
changes, :meth:`loopgate.store.Store.move_channels`; the rules about *people* are these:

- the two-person rule: a release is approved by someone other than the version's author and the release's
  requester, compared as identities (:mod:`loopgate.identity`: ``Alice`` is ``alice``), and not through a
  token the requester created for the purpose;
- an approval approves one decision — the version's latest one since it was last rolled back — once (a
  repeated approval records nothing);
- only an admin may force a rollback past the release rule, and only with a reason;
- only a releaser or an admin may pin or unpin a line, and a pin says why;
- only the API key that asked for an answer rates it, and only for its own app (the gateway's feedback);
- which token roles satisfy the role a route or a button declares (:data:`ALLOWED`, :func:`may`): a viewer
  reads, a releaser releases, promotes and rolls back, an approver approves, an admin does everything.
"""

from __future__ import annotations

from loopgate.errors import LoopgateError
from loopgate.identity import normalise_identity, same_identity
from loopgate.loop.workspace import Workspace
from loopgate.records import Decision
from loopgate.store.gateway import RequestRecord
from loopgate.store.tokens import ROLES, TokenInfo

# the roles that may force a rollback to a version production never held; the CLI runs with the registry's
# own credentials and counts as admin (whoever can run it can edit the database anyway)
FORCE_ROLES = frozenset({"admin"})
# the roles that may pin a line (keep it off its parent's upgrades) or unpin it: the people who release
PIN_ROLES = frozenset({"releaser", "admin"})
CLI_ROLE = "admin"
# which token roles satisfy a declared role (a route's, a dashboard button's)
ALLOWED: dict[str, frozenset[str]] = {
    "viewer": frozenset(ROLES),
    "releaser": frozenset({"releaser", "admin"}),
    "approver": frozenset({"approver", "admin"}),
    "admin": frozenset({"admin"}),
}


class TwoPersonRuleError(LoopgateError):
    """An approval by the candidate's author, its requester, or through a token the requester created."""


class RoleError(LoopgateError):
    """Someone whose role does not allow the action (a viewer pinning a line)."""


def check_approval(ws: Workspace, version_id: str, approver: str, reason: str, *,
                   token_created_by: str | None = None) -> Decision:
    """The decision an approval by ``approver`` would approve, or the rule it breaks."""
    # imported here: the gating module pulls in the model libraries, which `loopgate pin` must not pay for
    from loopgate.loop.gating import fresh_decisions

    if not reason.strip():
        raise LoopgateError("an approval needs a reason: say why you approve (it is kept in the ledger)")
    who = normalise_identity(approver, what="approver")
    v = ws.store.version(version_id)
    decisions = fresh_decisions(ws, version_id)
    if not decisions:
        raise LoopgateError(f"{version_id} has no decision to approve since it was last released or rolled back; "
                            f"request one first with 'loopgate release {version_id}'")
    decision = decisions[-1]
    if same_identity(v.created_by, who):
        raise TwoPersonRuleError(f"{approver} created {version_id} and cannot approve it (two-person rule); "
                                 "ask another approver")
    requesters = {d.requester for d in decisions}
    if any(same_identity(r, who) for r in requesters):
        raise TwoPersonRuleError(f"{approver} requested the release of {version_id} and cannot approve it "
                                 "(two-person rule); ask another approver")
    if token_created_by is not None and any(same_identity(r, token_created_by)
                                            for r in requesters | {v.created_by}):
        raise TwoPersonRuleError(f"the token approving as {approver} was created by {token_created_by}, who "
                                 f"requested or created {version_id}: one person cannot approve their own release "
                                 "through a second identity (two-person rule); ask another approver")
    return decision


def check_force(role: str, reason: str) -> None:
    """Whether ``role`` may force a rollback past the release rule (always with a reason)."""
    if role not in FORCE_ROLES:
        raise TwoPersonRuleError(f"only an admin may force a rollback (your role: {role})")
    if not reason.strip():
        raise LoopgateError("a forced rollback needs a reason (--reason): it is kept in the ledger")


def check_pin(role: str, reason: str, *, unpin: bool = False) -> None:
    """Whether ``role`` may pin (or unpin) a line; a pin needs a reason, kept in the ledger."""
    verb = "unpin" if unpin else "pin"
    if role not in PIN_ROLES:
        raise RoleError(f"only a releaser or an admin may {verb} a line (your role: {role})")
    if not unpin and not reason.strip():
        raise LoopgateError("a pin needs a reason (--reason): say why the line must stay on its parent version "
                            "(it is kept in the ledger and shown by status and plan)")


def record_approval(ws: Workspace, version_id: str, approver: str, reason: str,
                    overrides: list[str] | None = None, *, token_created_by: str | None = None) -> Decision:
    """Record an approval of the version's latest fresh decision (the one awaiting it) once
    :func:`check_approval` allows it; returns the decision approved."""
    from loopgate.loop.gating import bound_approvals

    decision = check_approval(ws, version_id, approver, reason, token_created_by=token_created_by)
    who = normalise_identity(approver, what="approver")
    if any(same_identity(a.approver, who) and a.decision_id == decision.id for a in bound_approvals(ws, version_id)):
        return decision  # an approval counts once: a repeated one (a retried request) records nothing
    ws.store.add_approval(version_id, normalise_identity(approver, what="approver"), reason, overrides,
                          decision_id=decision.id)  # type: ignore[arg-type]
    return decision


def may(token: TokenInfo | None, role: str) -> bool:
    """Whether the token's role satisfies ``role`` (the dashboard shows a button only when it does)."""
    return token is not None and token.role in ALLOWED[role]


def rating_refusal(request: RequestRecord, app: str | None, key_id: int | None) -> str | None:
    """Why the API key ``key_id`` of ``app`` may not rate ``request``'s answer, or None when it may (keys off:
    both None, anyone may)."""
    if app is not None and app not in (request.app, request.line):
        return f"request '{request.id}' was not made with this key's app"
    if key_id is not None and request.key_id is not None and key_id != request.key_id:
        return f"request '{request.id}' was made with another API key; the key that asked for an answer rates it"
    return None
