"""Errors a user can cause. The CLI turns each into one paragraph and exit code 2; bugs stay tracebacks."""


def printable(text: str) -> str:
    """Text safe to print or send back: control characters and lone surrogates a user's input carried are shown
    escaped (a terminal or a JSON encoder would choke on them, or a message would break into paragraphs)."""
    return "".join(c if c.isprintable() and not 0xD800 <= ord(c) <= 0xDFFF else ascii(c)[1:-1] for c in text)


class LoopgateError(Exception):
    """Base class: the message says what went wrong and what to do about it."""

    exit_code = 2


class SpecError(LoopgateError):
    """The ecosystem YAML is invalid."""


class NotFoundError(LoopgateError):
    """A line, version, suite or artifact that the command names does not exist."""


class ImmutableError(LoopgateError):
    """Something tried to change a record that is immutable once written (a version, a ledger entry)."""


class ArtifactError(LoopgateError):
    """An artifact is missing or its content no longer matches its sha256."""


class DataError(LoopgateError):
    """Update data or a suite file is malformed."""


class UnsafeModelError(LoopgateError):
    """A model directory holds only pickle weights, or otherwise cannot be loaded safely."""


class ModelFileError(UnsafeModelError):
    """A model file is truncated or unreadable, or its tensors disagree with the model's config.json."""


class DeviceError(LoopgateError):
    """The device or dtype asked for (``--device``/``--dtype``, ``LOOPGATE_DEVICE``/``LOOPGATE_DTYPE``) is unknown
    or not available on this machine."""


class TransferError(LoopgateError):
    """A capability-transfer strategy cannot be applied (shapes or tokenizers differ, no adapter...)."""


class GateBlocked(LoopgateError):
    """A release was blocked by a gate (exit code 3)."""

    exit_code = 3


class ConflictError(LoopgateError):
    """Another writer changed the registry between this command's read and its write (a channel moved, a
    version number was taken); nothing was written: look at the new state and run the command again."""


class MoveRefused(ConflictError):
    """A channel move that the release rule forbids (a version not gated for that move, a collected one, a
    rollback to a version production never held); nothing moved and the refusal is in the ledger."""
