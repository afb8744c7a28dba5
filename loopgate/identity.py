"""Who someone is: one normal form for every name that acts (``--as``, ``LOOPGATE_USER``, a token's name).

The two-person rule compares identities, so two spellings of one person must compare equal: ``Alice``,
``alice`` and ``alice`` followed by a zero-width space are the same approver. A name is normalised with
Unicode NFKC and casefolded, and refused when it holds a control or format character (the zero-width and
bidi marks are format characters) or anything outside the documented alphabet. Written here, not taken from
a library, because the rule is ours: which characters an identity may hold is a policy choice.
"""

from __future__ import annotations

import unicodedata

from loopgate.errors import LoopgateError

MAX_IDENTITY = 64
# besides letters and digits (any script), the characters of logins and e-mail addresses
_EXTRA = frozenset("-_.@+")


class IdentityError(LoopgateError):
    """A name that cannot identify a person or a service (empty, too long, invisible or odd characters)."""


def normalise_identity(name: str, *, what: str = "name") -> str:
    """The canonical form of an identity (NFKC, casefolded), or :class:`IdentityError` naming the problem."""
    if not isinstance(name, str):
        raise IdentityError(f"{what} must be text")
    hidden = [c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn")]
    if hidden:
        shown = ", ".join(f"U+{ord(c):04X}" for c in dict.fromkeys(hidden))
        raise IdentityError(f"{what} {name!r} holds invisible or control characters ({shown}); identities are "
                            "letters, digits and - _ . @ + only")
    norm = unicodedata.normalize("NFKC", name).strip().casefold()
    if not norm:
        raise IdentityError(f"{what} is empty: say who acts, e.g. --as alice")
    if len(norm) > MAX_IDENTITY:
        raise IdentityError(f"{what} is {len(norm)} characters long; an identity has at most {MAX_IDENTITY}")
    bad = [c for c in norm if not (c.isalnum() or c in _EXTRA)]
    if bad:
        raise IdentityError(f"{what} {name!r} holds {''.join(dict.fromkeys(bad))!r}; identities are letters, "
                            "digits and - _ . @ + only (no spaces)")
    return norm


def same_identity(a: str | None, b: str | None) -> bool:
    """Whether two recorded names are one identity (records written before normalisation included)."""
    if a is None or b is None:
        return False
    return _loose(a) == _loose(b)


def _loose(name: str) -> str:
    """A comparison form that never raises: what old, un-normalised records are compared by."""
    kept = "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cf"))
    return unicodedata.normalize("NFKC", kept).strip().casefold()
