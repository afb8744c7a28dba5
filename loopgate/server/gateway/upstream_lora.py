"""vLLM's runtime LoRA registry, kept in step with a line's channels (``serving: {lora: vllm}``).

vLLM started with ``--enable-lora`` and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` takes ``POST
/v1/load_lora_adapter`` and ``POST /v1/unload_lora_adapter`` with ``{lora_name, lora_path}``. An adapter version
is registered under a name carrying its content hash (:func:`adapter_name`): vLLM caches adapters by name, so a
name reused for other weights could answer with the old ones; a hash in the name makes that impossible.

Registration is lazy and idempotent: a version is loaded before the first request routed to it (after the
channel move that put it there), and a registered version no channel of the line holds any more is unloaded
on the next request to the line. ``lora_path`` is the version's adapter folder as this workspace checked it
out: the vLLM server must see the same path (a shared volume).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from loopgate.hashing import sha256_json
from loopgate.loop.versions import version_ref
from loopgate.loop.workspace import Workspace

# (path under base_url, JSON body) → (status, body text); the caller maps transport failures to its errors
Post = Callable[[str, dict[str, str]], Awaitable[tuple[int, str]]]


def adapter_name(line: str, number: int, files: dict[str, str]) -> str:
    """``LINE-vN-HASH12``: the version's number to read, the hash of its files (path → sha256) to trust."""
    return f"{line}-v{number}-{sha256_json(files)[:12]}"


class LoraRegistry:
    """The adapters of one line registered in its vLLM server by this gateway (version → adapter name)."""

    def __init__(self, ws: Workspace, line: str, post: Post) -> None:
        self.ws, self.line, self.post = ws, line, post
        self.registered: dict[str, str] = {}
        self._lock = asyncio.Lock()

    def _describe(self, version: str) -> tuple[str, Path] | None:
        """(adapter name, adapter folder) of an adapter version; None for a full version (served by name)."""
        v = self.ws.store.version(version)
        if v.kind != "adapter":
            return None
        ref = version_ref(self.ws, version)
        assert ref.adapter is not None
        return adapter_name(v.line, v.number, v.files), Path(ref.adapter).resolve()

    async def ensure(self, version: str) -> str | None:
        """The adapter name ``version`` is served under, loaded into vLLM first if it is not yet; None for a full
        version. Raises ``RuntimeError`` with vLLM's answer when it refuses the adapter."""
        async with self._lock:
            if version in self.registered:
                return self.registered[version]
            described = await asyncio.to_thread(self._describe, version)
            if described is None:
                return None
            name, path = described
            status, text = await self.post("load_lora_adapter", {"lora_name": name, "lora_path": str(path)})
            # vLLM answers 400 "... has already been loaded" for a name it holds (another gateway loaded it):
            # the name carries the content hash, so what it holds is these weights
            if status != 200 and not (status == 400 and "already" in text.lower()):
                raise RuntimeError(f"vLLM refused to load adapter {name} ({status}): {text[:300]}")
            self.registered[version] = name
            return name

    async def release_unheld(self, held: set[str]) -> None:
        """Unload the adapters this gateway registered for versions no channel in ``held`` serves any more."""
        async with self._lock:
            for version in [v for v in self.registered if v not in held]:
                name = self.registered.pop(version)
                status, text = await self.post("unload_lora_adapter", {"lora_name": name})
                if status not in (200, 404):  # 404: vLLM no longer has it, which is what was asked
                    self.registered[version] = name  # try again on a later request
