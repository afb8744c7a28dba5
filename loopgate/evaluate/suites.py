"""Suites: a JSONL file plus the scorer config declared for it in ``loopgate.yaml``.

A suite's identity (``Suite.sha256``) is the sha256 of its file content and of the spec fields that
change how it is scored, so editing either makes a new suite version while renaming or moving the file
does not.

A row carries a raw ``prompt`` or chat ``messages`` (OpenAI-style roles), rendered with the model's chat
template when it is evaluated (:func:`suite_prompts`). A suite owned by an app is evaluated through the app's
``prompt_template`` and decoding settings (:func:`with_app`), which are then part of its identity.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loopgate.errors import DataError
from loopgate.evaluate.graders import GraderModel, Resolver, grader_model
from loopgate.evaluate.lmeval_suite import lmeval_task_docs
from loopgate.evaluate.python_scorer import function_source_sha256
from loopgate.hashing import sha256_bytes, sha256_json
from loopgate.jsonl import json_objects
from loopgate.models.chat import check_messages, render_chat
from loopgate.spec import AppSpec, Ecosystem, SuiteSpec

# SuiteSpec fields that change a score; ``path`` and ``train_path`` do not (moving a file keeps its identity)
SCORING_FIELDS = (
    "kind",
    "scorer",
    "pattern",
    "normalize",
    "max_new_tokens",
    "stop",
    "refusal_markers",
    "refusal_regex",
)
# fields added since: part of the config only when set, so that the suites declared before them keep their identity
OPTIONAL_SCORING_FIELDS = ("function", "stride", "metric", "judge", "classifier")


@dataclass(frozen=True)
class GenerationRow:
    """A prompt and the text the model should produce."""

    id: str
    prompt: str
    target: str
    messages: tuple[tuple[str, str], ...] = ()  # (role, content) pairs: a chat row, rendered per model
    # the row as written (a python scorer receives it: teams keep aliases, rubrics, … beside the target)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class ChoiceRow:
    """A prompt, its candidate continuations and the index of the right one."""

    id: str
    prompt: str
    choices: tuple[str, ...]
    label: int
    messages: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SafetyRow:
    """A prompt and whether the model is expected to refuse or comply."""

    id: str
    prompt: str
    expect: str
    category: str | None = None
    messages: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class TextRow:
    """A held-out document whose likelihood is measured (``kind: perplexity``), or one document of an lm-eval
    task (``kind: lmeval``: its JSON, for the record)."""

    id: str
    text: str
    prompt: str = ""
    messages: tuple[tuple[str, str], ...] = ()


Row = GenerationRow | ChoiceRow | SafetyRow | TextRow


@dataclass(frozen=True)
class Suite:
    """A loaded, validated suite: its name, spec, rows and content identity."""

    name: str
    spec: SuiteSpec
    rows: tuple[Row, ...]
    sha256: str
    template: str = "{input}"  # an app's prompt_template; ``{input}`` is the row's prompt (or last user message)
    app: str | None = None  # the app line whose template and decoding settings apply
    file: str = ""  # the suite's file as it was read (an lm-eval task's YAML is run from it)
    grader: GraderModel | None = None  # scorer judge / classifier: the resolved model that grades (graders.py)

    @property
    def kind(self) -> str:
        return self.spec.kind

    def __len__(self) -> int:
        return len(self.rows)


def scorer_config(spec: SuiteSpec) -> dict[str, Any]:
    """The spec fields that affect scoring, as a JSON-able dict (part of the suite and cache identity)."""
    dumped = spec.model_dump(mode="json")
    return {k: dumped[k] for k in SCORING_FIELDS} | {k: dumped[k] for k in OPTIONAL_SCORING_FIELDS
                                                      if dumped.get(k) is not None}


def suite_sha256(content: bytes, spec: SuiteSpec) -> str:
    """sha256 of the suite file's bytes and its scorer config."""
    return sha256_json({"content": sha256_bytes(content), "scorer": scorer_config(spec)})


def load_suite(name: str, spec: SuiteSpec, root: str | Path = ".") -> Suite:
    """Read and validate a suite's JSONL file (relative paths resolve against the ecosystem root)."""
    path = Path(spec.path)
    if not path.is_absolute():
        path = Path(root) / path
    if not path.is_file():
        raise DataError(f"suite '{name}': file {path} does not exist; fix 'suites.{name}.path' in loopgate.yaml")
    rows: list[Row]
    if spec.kind == "lmeval":  # the file is a task's YAML; its rows are the task's documents
        docs, content = lmeval_task_docs(name, path)
        rows = [TextRow(id=doc_id, text=text) for doc_id, text in docs]
    else:
        content = path.read_bytes()
        rows = _parse_rows(name, spec, path, content)
    if not rows:
        raise DataError(f"suite '{name}': {path} has no rows; add at least one JSON object per line")
    if spec.scorer == "python" and spec.function is not None:  # the scorer's code scores: a new version when edited
        content += function_source_sha256(spec.function, f"suite '{name}'").encode()
    return Suite(name=name, spec=spec, rows=tuple(rows), sha256=suite_sha256(content, spec), file=str(path))


def load_ecosystem_suite(eco: Ecosystem, name: str, resolve: Resolver | None = None) -> Suite:
    """Load the suite ``name`` declared in an ecosystem (through its app's template when an app owns it); a judge
    or classifier line's channel is resolved to its version by ``resolve`` (the loop reads it from the registry)."""
    if name not in eco.suites:
        raise DataError(f"unknown suite '{name}'; suites: {', '.join(eco.suites) or '(none)'}")
    spec = eco.suites[name]
    suite = load_suite(name, spec, eco.root)
    app = suite_app(eco, name)
    suite = with_app(suite, app, eco.lines[app].app) if app is not None else suite  # type: ignore[arg-type]
    graded = spec.judge or spec.classifier
    if graded is None:
        return suite
    key = "judge" if spec.judge is not None else "classifier"
    return with_grader(suite, grader_model(graded, eco.root, resolve, where=f"suites.{name}.{key}"))


def with_grader(suite: Suite, grader: GraderModel) -> Suite:
    """The suite graded by ``grader``: the judge's (or classifier's) version, or URL and model, and its human labels
    become part of the suite's identity, so a new judge never reuses a score the previous one gave."""
    return replace(suite, grader=grader, sha256=sha256_json({"suite": suite.sha256, "grader": grader.identity}))


def suite_app(eco: Ecosystem, name: str) -> str | None:
    """The app line that owns suite ``name`` (None when a model line owns it too, or no app does)."""
    owners = [n for n, spec in eco.lines.items() if name in spec.suites]
    apps = [n for n in owners if eco.lines[n].app is not None]
    return apps[0] if apps and len(apps) == len(owners) else None


def with_app(suite: Suite, app_line: str, app: AppSpec) -> Suite:
    """The suite as the app asks it: prompts through ``app.prompt_template``, the app's ``max_new_tokens`` and
    ``stop``. The template and settings become part of the suite's identity (and so of every cache key)."""
    spec = suite.spec.model_copy(update={"max_new_tokens": app.max_new_tokens, "stop": list(app.stop)})
    sha = sha256_json({"suite": suite.sha256, "app": {"template": app.prompt_template, "scorer": scorer_config(spec)}})
    return Suite(name=suite.name, spec=spec, rows=suite.rows, sha256=sha, template=app.prompt_template, app=app_line,
                 file=suite.file)


def suite_prompts(suite: Suite, tokenizer: Any) -> list[str]:
    """The text each row's prompt is for this model: the raw prompt, or the messages through the tokenizer's chat
    template; an app's template wraps the prompt (or the last user message) first."""
    out: list[str] = []
    for row in suite.rows:
        if not row.messages:
            out.append(_apply_template(suite.template, row.prompt))
            continue
        msgs = [{"role": r, "content": c} for r, c in row.messages]
        users = [i for i, m in enumerate(msgs) if m["role"] == "user"]
        if users and suite.template != "{input}":
            msgs[users[-1]]["content"] = _apply_template(suite.template, msgs[users[-1]]["content"])
        out.append(render_chat(tokenizer, msgs, where=f"suite '{suite.name}' ({suite.spec.path}), row '{row.id}'"))
    return out


def _apply_template(template: str, text: str) -> str:
    # not str.format: a template may hold other braces (JSON examples) that are not fields
    return template.replace("{input}", text)


def _parse_rows(name: str, spec: SuiteSpec, path: Path, content: bytes) -> list[Row]:
    rows: list[Row] = []
    seen: dict[str, int] = {}
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err}); suites are JSONL files") from None
    index = 0
    for lineno, obj in json_objects(text, path):
        where = f"{path}:{lineno}"
        row = _row(spec.kind, obj, index, where)
        if row.id in seen:
            raise DataError(f"{where}: duplicate id '{row.id}' (first on line {seen[row.id]}); ids must be unique")
        seen[row.id] = lineno
        rows.append(row)
        index += 1
    return rows


def _field(obj: dict[str, Any], key: str, typ: type | tuple[type, ...], where: str, kind: str) -> Any:
    if key not in obj:
        raise DataError(f"{where}: missing field '{key}' (a {kind} row needs it)")
    value = obj[key]
    # bool is an int subclass; a label of `true` is a mistake, not index 1
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise DataError(f"{where}: field '{key}' must be {_type_name(typ)}, got {type(value).__name__}")
    return value


def _type_name(typ: type | tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in typ) if isinstance(typ, tuple) else typ.__name__


def _text_row(obj: dict[str, Any], index: int, where: str) -> TextRow:
    raw_id = obj.get("id", index)
    if not isinstance(raw_id, str | int) or isinstance(raw_id, bool):
        raise DataError(f"{where}: field 'id' must be a string or an integer")
    text = _field(obj, "text", str, where, "perplexity")
    if not text:
        raise DataError(f"{where}: field 'text' is empty; a perplexity row needs text to measure")
    return TextRow(id=str(raw_id), text=text)


def _row(kind: str, obj: dict[str, Any], index: int, where: str) -> Row:
    if kind == "perplexity":
        return _text_row(obj, index, where)
    raw_id = obj.get("id", index)
    if not isinstance(raw_id, str | int) or isinstance(raw_id, bool):
        raise DataError(f"{where}: field 'id' must be a string or an integer")
    row_id = str(raw_id)
    messages: tuple[tuple[str, str], ...] = ()
    if "messages" in obj and "prompt" not in obj:
        messages = tuple((m["role"], m["content"]) for m in check_messages(obj["messages"], where, last="user"))
        prompt = ""
    elif "messages" in obj:
        raise DataError(f"{where}: a row has 'prompt' or 'messages', not both")
    else:
        prompt = _field(obj, "prompt", str, where, kind)
    if kind == "generation":
        return GenerationRow(id=row_id, prompt=prompt, target=_field(obj, "target", str, where, kind),
                             messages=messages, raw=obj)
    if kind == "choice":
        choices = _field(obj, "choices", list, where, kind)
        if len(choices) < 2 or not all(isinstance(c, str) for c in choices):
            raise DataError(f"{where}: field 'choices' must be a list of at least two strings")
        label = _field(obj, "label", int, where, kind)
        if not 0 <= label < len(choices):
            raise DataError(f"{where}: field 'label' is {label} but there are {len(choices)} choices (0-based)")
        return ChoiceRow(id=row_id, prompt=prompt, choices=tuple(choices), label=label, messages=messages)
    if kind == "safety":
        expect = _field(obj, "expect", str, where, kind)
        if expect not in ("refuse", "comply"):
            raise DataError(f"{where}: field 'expect' must be 'refuse' or 'comply', got '{expect}'")
        category = obj.get("category")
        if category is not None and not isinstance(category, str):
            raise DataError(f"{where}: field 'category' must be a string")
        return SafetyRow(id=row_id, prompt=prompt, expect=expect, category=category, messages=messages)
    raise DataError(f"{where}: unknown suite kind '{kind}'")
