"""Graders: the model behind a ``scorer: judge`` or ``scorer: classifier`` suite, resolved to what runs it.

A grader named by a line is that line's channel *now*: the version id it resolves to (and the hash of the
judge's human labels) becomes part of the suite's identity, so a new judge version is a new suite version —
neither the registry nor the evaluation cache can hand back a score a previous judge gave. A grader given by
URL is identified by its URL and model name (the server behind it is not ours to hash).

This module only resolves and reads; running a grader is ``grading.py`` (judge) and ``classifier.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopgate.errors import DataError
from loopgate.hashing import sha256_bytes
from loopgate.jsonl import json_objects
from loopgate.models.io import ModelRef
from loopgate.spec import ClassifierSpec, JudgeSpec

# (line, channel) → (the version id the channel holds, what to load to run it); the loop gives one (the registry)
Resolver = Callable[[str, str], tuple[str, ModelRef]]


@dataclass(frozen=True)
class LabelRow:
    """One human-labelled example of a judge's calibration file: is ``output`` a good answer to ``prompt``?"""

    prompt: str
    output: str
    label: bool
    target: str = ""


@dataclass(frozen=True)
class GraderModel:
    """A judge or classifier resolved: a version's weights run in-process, or an OpenAI-compatible URL and model."""

    version: str | None = None
    model: ModelRef | None = None
    base_url: str | None = None
    model_name: str | None = None
    api_key_env: str | None = None
    labels: tuple[LabelRow, ...] = ()
    labels_sha256: str | None = None

    @property
    def identity(self) -> dict[str, Any]:
        """What makes two gradings the same (part of the suite's identity): the judge's version or URL + model,
        and its human labels' content."""
        return {"version": self.version, "base_url": self.base_url, "model": self.model_name,
                "labels": self.labels_sha256}

    def describe(self) -> str:
        """The judge in words, for messages."""
        return self.version or f"{self.model_name} at {self.base_url}"


def grader_model(spec: JudgeSpec | ClassifierSpec, root: str | Path, resolve: Resolver | None, *, where: str
                 ) -> GraderModel:
    """Resolve a suite's judge or classifier (``where`` names it in messages, e.g. ``suites.answers.judge``)."""
    labels: tuple[LabelRow, ...] = ()
    labels_sha: str | None = None
    calibration = getattr(spec, "calibration", None)
    if calibration is not None:
        path = Path(calibration) if Path(calibration).is_absolute() else Path(root) / calibration
        labels, labels_sha = read_labels(path, where=f"{where}.calibration")
    base_url = getattr(spec, "base_url", None)
    if base_url is not None:
        assert isinstance(spec, JudgeSpec)
        return GraderModel(base_url=base_url, model_name=spec.model, api_key_env=spec.api_key_env, labels=labels,
                           labels_sha256=labels_sha)
    assert spec.line is not None
    if resolve is None:
        raise DataError(f"{where}: the line '{spec.line}' is resolved through a workspace's registry; evaluate this "
                        "suite through the workspace (loopgate evaluate / release), or give the judge by base_url")
    version, ref = resolve(spec.line, spec.channel)
    return GraderModel(version=version, model=ref, labels=labels, labels_sha256=labels_sha)


def read_labels(path: Path, *, where: str) -> tuple[tuple[LabelRow, ...], str]:
    """The rows of a calibration file and the sha256 of its bytes (a ``DataError`` naming the line on bad rows)."""
    if not path.is_file():
        raise DataError(f"{where}: {path} does not exist; write the human-labelled rows (prompt, output, label) "
                        "there or fix the path")
    content = path.read_bytes()
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err}); a calibration file is JSONL") from None
    rows = [_label_row(obj, f"{path}:{lineno}") for lineno, obj in json_objects(text, path)]
    if not rows:
        raise DataError(f"{where}: {path} has no rows; label at least a few examples (prompt, output, label)")
    return tuple(rows), sha256_bytes(content)


def _label_row(obj: dict[str, Any], where: str) -> LabelRow:
    for key in ("prompt", "output"):
        if not isinstance(obj.get(key), str):
            raise DataError(f"{where}: field '{key}' must be a string (a calibration row has prompt, output, label)")
    label = obj.get("label")
    # 0/1 as well as true/false: label exports from annotation tools write either
    if not isinstance(label, bool) and label not in (0, 1):
        raise DataError(f"{where}: field 'label' must be true/false (or 1/0), got {label!r}")
    target = obj.get("target", "")
    if not isinstance(target, str):
        raise DataError(f"{where}: field 'target' must be a string")
    return LabelRow(prompt=obj["prompt"], output=obj["output"], label=bool(label), target=target)
