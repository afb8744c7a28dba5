"""The HTTP side of upstream serving (:mod:`.upstream`): one pooled ``httpx`` client per line served by an
OpenAI-compatible server, its answers read or turned into :class:`UpstreamError` (status, OpenAI error fields),
and, with ``lora: vllm``, the line's adapters registered in vLLM (:mod:`.upstream_lora`)."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import httpx

from loopgate.errors import LoopgateError
from loopgate.loop.workspace import Workspace
from loopgate.server.gateway.upstream_lora import LoraRegistry
from loopgate.spec import ServingSpec


class UpstreamError(Exception):
    """The upstream could not answer: the status and OpenAI error fields the client gets."""

    def __init__(self, status: int, message: str, type_: str = "server_error", *, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type_, code


def upstream_key(spec: ServingSpec, where: str) -> str | None:
    """The upstream's API key from ``serving.api_key_env`` (None: the server takes none); a ``LoopgateError``
    naming the variable when it is not set."""
    if spec.api_key_env is None:
        return None
    key = os.environ.get(spec.api_key_env, "")
    if not key:
        raise LoopgateError(f"{where}.serving takes the upstream's key from ${spec.api_key_env}, which is not set; "
                            "export it before serving or evaluating")
    return key


class Upstreams:
    """The upstream servers of a workspace's lines: one pooled ``httpx`` client and one LoRA registry per line."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._lora: dict[str, LoraRegistry] = {}
        self._held: dict[str, tuple[str | None, str | None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def spec(self, line: str) -> ServingSpec | None:
        """The line's ``serving`` section (None: its versions are served here)."""
        return self.ws.eco.lines[line].serving

    def _client(self, line: str) -> httpx.AsyncClient:
        client = self._clients.get(line)
        if client is None:
            spec = self.spec(line)
            assert spec is not None
            key = upstream_key(spec, f"lines.{line}")
            client = httpx.AsyncClient(base_url=spec.base_url.rstrip("/") + "/", timeout=spec.timeout_s,
                                       headers={"Authorization": f"Bearer {key}"} if key else {})
            self._clients[line] = client
        return client

    async def _post(self, line: str, path: str, body: dict[str, Any]) -> tuple[int, str]:
        """(status, body text) of a POST to the line's upstream; 503 (unreachable) or 504 (timeout) otherwise."""
        try:
            client = self._client(line)
            r = await client.post(path, json=body)
        except LoopgateError as e:  # the key variable is not set: the upstream cannot be asked
            raise UpstreamError(503, str(e), "server_error", code="upstream_unavailable") from None
        except httpx.TimeoutException:
            raise UpstreamError(504, f"the upstream server of line '{line}' did not answer within "
                               f"{self._timeout(line):g} s; retry later", "timeout", code="timeout") from None
        except httpx.HTTPError as e:
            raise UpstreamError(503, f"the upstream server of line '{line}' is unavailable "
                               f"({type(e).__name__}); retry later", "server_error",
                               code="upstream_unavailable") from None
        return r.status_code, r.text

    def _timeout(self, line: str) -> float:
        spec = self.spec(line)
        return spec.timeout_s if spec is not None else 0.0

    async def model(self, line: str, version: str) -> str:
        """The upstream's name for ``version`` (its adapter registered in vLLM first with ``lora: vllm``)."""
        spec = self.spec(line)
        assert spec is not None
        adapter = None
        if spec.lora == "vllm":
            registry = self._lora.get(line)
            if registry is None:
                registry = self._lora[line] = LoraRegistry(self.ws, line, self._lora_post(line))
            try:
                adapter = await registry.ensure(version)
            except (RuntimeError, UpstreamError) as e:
                raise UpstreamError(503, f"{version} cannot be served upstream: {getattr(e, 'message', e)}",
                                   "server_error", code="model_unavailable") from None
        name = spec.model_for(line, version, adapter)
        if not name:
            raise UpstreamError(503, f"lines.{line}.serving names no upstream model for {version}; list it under "
                               "serving.models or set serving.model", "server_error", code="model_unavailable")
        return name

    def _lora_post(self, line: str) -> Any:
        async def post(path: str, body: dict[str, str]) -> tuple[int, str]:
            return await self._post(line, path, body)
        return post

    async def complete(self, line: str, version: str, payload: dict[str, Any], chat: bool) -> dict[str, Any]:
        """The upstream's answer (a completion or chat completion body) for ``version``; a ``UpstreamError``
        (OpenAI's body) for every way it can fail."""
        name = await self.model(line, version)
        status, text = await self._post(line, "chat/completions" if chat else "completions",
                                        {**payload, "model": name})
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if status >= 500 or (status == 200 and not _well_formed(data)):
            raise UpstreamError(503 if status >= 500 else 502, f"the upstream server of line '{line}' failed "
                               f"({status}): {_message(data, text)}", "server_error", code="upstream_error")
        if status != 200:
            err = data.get("error") if isinstance(data, dict) else None
            raise UpstreamError(status, f"the upstream server of line '{line}' refused the request: "
                               f"{_message(data, text)}", str((err or {}).get("type") or "invalid_request_error"),
                               code=str((err or {}).get("code") or "upstream_error"))
        assert isinstance(data, dict)
        return data

    async def sync_adapters(self, line: str, production: str | None, canary: str | None) -> None:
        """With ``lora: vllm``, after a channel move: unload the adapters no channel of the line holds now."""
        if line not in self._lora or self._held.get(line) == (production, canary):
            return
        self._held[line] = (production, canary)
        channels = await asyncio.to_thread(self.ws.store.channels, line)
        await self._lora[line].release_unheld({v for v in channels.values() if v is not None})

    def background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)  # a reference, so the task is not collected before it ends
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


def _well_formed(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("choices"), list) and all(
        isinstance(c, dict) for c in data["choices"])


def _message(data: Any, text: str) -> str:
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and err.get("message"):
        return str(err["message"])[:500]
    return text[:200] or "(empty body)"
