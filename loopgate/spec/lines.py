"""Lines and where their work runs: the line entry, an app's section, upstream serving, the executor."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from loopgate.spec.common import _ENV_NAME, MAX_TOKENS, Tier, _Strict
from loopgate.spec.recipes import Recipe


class AppSpec(_Strict):
    """An LLM-powered app: a prompt template + decoding config pinned to a model line's channel."""

    prompt_template: str = "{input}"
    channel: Literal["production", "canary", "staging"] = "production"
    max_new_tokens: int = Field(32, ge=1, le=MAX_TOKENS)
    stop: list[str] = Field(default_factory=lambda: ["\n"])  # a factory: no deep copy per app line


class ServingSpec(_Strict):
    """Where a line's versions are served when not by the gateway's own engine: an OpenAI-compatible server
    (vLLM, another ``loopgate serve``, …). The gateway still does keys, the canary split, shadow, logging,
    feedback and canary analysis; it forwards generation there, asking for the version's upstream model name:
    ``models[VERSION]`` when listed, else ``model`` with ``{version}`` and ``{line}`` filled in. With
    ``lora: vllm`` an adapter version is registered in the server under a name carrying its content hash
    (``{adapter}`` in ``model``; the default then) before it serves, and unregistered when no channel holds it."""

    backend: Literal["openai"] = "openai"
    base_url: str
    model: str | None = None
    models: dict[str, str] = Field(default_factory=dict)  # version id → the upstream's model name
    api_key_env: str | None = None  # the environment variable that holds the server's key (never the key itself)
    lora: Literal["vllm"] | None = None
    timeout_s: float = Field(30.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _check(self) -> ServingSpec:
        if not re.match(r"^https?://[^\s]+$", self.base_url):
            raise ValueError(f"serving base_url {self.base_url!r} must be an http(s) URL, e.g. http://vllm:8000/v1")
        if self.model is None and not self.models and self.lora is None:
            raise ValueError("serving needs 'model:' (the upstream's model name; {version} and {line} are filled "
                             "in) or 'models:' (version → upstream model name), or 'lora: vllm'")
        if self.api_key_env is not None and not _ENV_NAME.match(self.api_key_env):
            raise ValueError(f"api_key_env {self.api_key_env!r} must name an environment variable "
                             "(letters, digits, underscores)")
        return self

    def model_for(self, line: str, version: str, adapter: str | None = None) -> str | None:
        """The upstream's name for ``version`` (``adapter``: its vLLM adapter name); None when none is given."""
        if version in self.models:
            return self.models[version]
        if self.model is None:
            return adapter
        return self.model.replace("{version}", version).replace("{line}", line).replace("{adapter}", adapter or "")


class LineSpec(_Strict):
    tier: Tier
    parent: str | None = None
    description: str = ""
    recipe: str | Recipe | None = None
    # factories, not ``[]``: pydantic deep-copies a list default per line (a third of validating 10,000 lines)
    suites: list[str] = Field(default_factory=list)
    data: list[str] = Field(default_factory=list)
    app: AppSpec | None = None
    # capability-transfer strategies to try when the parent gets a new version, cheapest first
    # (default: every one that applies: reattach, diff_vector, diff_vector_finetune, rerun, distill)
    transfer: list[Literal["reattach", "diff_vector", "diff_vector_finetune", "rerun", "distill"]] | None = None
    # an upstream OpenAI-compatible server that serves this line's versions (unset: the gateway's own engine)
    serving: ServingSpec | None = None


JobKind = Literal["train", "evaluate", "profile", "serving", "load_check", "transfer_candidate"]


class JobResources(_Strict):
    """What one job of a kind asks the cluster for (unset: the executor's default)."""

    num_cpus: float | None = Field(None, ge=0)
    num_gpus: float | None = Field(None, ge=0)


class ExecutorSpec(_Strict):
    """Where the loop's jobs run. ``LOOPGATE_EXECUTOR`` overrides ``kind``, ``LOOPGATE_RAY_ADDRESS`` the address."""

    kind: Literal["in-process", "ray"] = "in-process"
    # a running Ray cluster ("host:6379", "ray://host:10001", "auto"); unset: the cluster this process already
    # joined, else a local one started on this machine
    address: str | None = None
    # what each job asks for, unless its kind says otherwise in ``jobs``
    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    jobs: dict[JobKind, JobResources] = {}
