"""A version's architecture, read from its stored config.json (no model library): what registering checks
against the line's other versions, and what planning uses to leave out transfer strategies that cannot apply."""

from __future__ import annotations

import json
from typing import Any

from loopgate.loop.workspace import Workspace

# the config fields that decide tensor names and shapes (Llama/Qwen names and GPT-2's)
ARCH_KEYS = ("model_type", "architectures", "vocab_size", "hidden_size", "num_hidden_layers", "n_embd", "n_layer")
# strategies that move weights or an adapter between parents, so need the same shapes and tokenizer
SAME_SHAPE_STRATEGIES = frozenset({"reattach", "diff_vector", "diff_vector_finetune"})


def architecture(ws: Workspace, version_id: str) -> dict[str, Any] | None:
    """The architecture fields of a version's config.json (an adapter: its base's); None when not stored."""
    v = ws.store.version(version_id)
    if v.kind == "adapter" and v.base_version:
        return architecture(ws, v.base_version)
    sha = v.files.get("config.json")
    if not sha or not ws.store.artifacts.has(sha):
        return None
    try:
        cfg = json.loads(ws.store.artifacts.path_for(sha).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {k: cfg[k] for k in ARCH_KEYS if k in cfg} if isinstance(cfg, dict) else None


def differences(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, tuple[Any, Any]]:
    """Fields known on both sides that differ: field → (a's value, b's value)."""
    if a is None or b is None:
        return {}
    return {k: (a[k], b[k]) for k in ARCH_KEYS if k in a and k in b and a[k] != b[k]}


def architecture_warning(ws: Workspace, version_id: str) -> str:
    """A warning when a version's architecture differs from its line's other versions (empty when it does not)."""
    v = ws.store.version(version_id)
    mine = architecture(ws, version_id)
    for other in reversed(ws.store.versions(v.line)):
        if other.id == version_id:
            continue
        diff = differences(architecture(ws, other.id), mine)
        if diff:
            what = ", ".join(f"{k} {b!r} (not {a!r})" for k, (a, b) in diff.items())
            return (f"{version_id} has another architecture than {other.id} of line '{v.line}': {what}. The "
                    "gates compare them as versions of one line, and weight-moving transfer strategies "
                    f"({', '.join(sorted(SAME_SHAPE_STRATEGIES))}) cannot apply between them")
        if architecture(ws, other.id) is not None:
            return ""  # compared with the newest version that has a config: the same
    return ""
