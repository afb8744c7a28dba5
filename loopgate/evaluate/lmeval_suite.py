"""``kind: lmeval``: a team's lm-evaluation-harness task, declared by its YAML, as a Loopgate suite.

The suite's ``path`` is the task's YAML file. Only local data is allowed (nothing is downloaded): ``dataset_path:
json`` with ``dataset_kwargs.data_files`` naming JSONL files, relative to the YAML's folder. The YAML is read with
``yaml.safe_load``: lm-eval's ``!function`` tags (code run on load) and ``include:`` are refused. The suite's
identity is the YAML's bytes and every data file's bytes, so editing either makes a new suite version.

The task is run by :mod:`loopgate.evaluate.lmeval_run`; this module only reads and checks it (``suites`` loads
suites through it, so it must not import them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from loopgate.errors import DataError
from loopgate.hashing import sha256_bytes
from loopgate.jsonl import json_objects

SPLIT_KEYS = ("test_split", "validation_split", "training_split")  # the split lm-eval evaluates: the first one set


def task_config(name: str, path: Path) -> dict[str, Any]:
    """The task's YAML as a dict, checked to be local, with its data files made absolute."""
    where = f"suite '{name}' ({path})"
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.constructor.ConstructorError as err:
        raise DataError(f"{where}: {err.problem} — tags such as '!function' run code when the task loads and "
                        "are not accepted; write the prompt with doc_to_text / doc_to_target templates") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise DataError(f"{where}: not a readable YAML task file ({err})") from None
    if not isinstance(config, dict) or not isinstance(config.get("task"), str):
        raise DataError(f"{where}: an lm-eval task YAML needs 'task: <name>' at the top level")
    if "include" in config:
        raise DataError(f"{where}: 'include' is not supported; write the whole task in one file")
    if config.get("dataset_path") != "json":
        raise DataError(f"{where}: 'dataset_path' must be 'json' with local 'dataset_kwargs.data_files' (nothing "
                        f"is downloaded), got {config.get('dataset_path')!r}")
    files = (config.get("dataset_kwargs") or {}).get("data_files")
    if isinstance(files, str | list):
        files = {"train": files}
    if not isinstance(files, dict) or not files:
        raise DataError(f"{where}: 'dataset_kwargs.data_files' must name the task's JSONL files, e.g. "
                        "{test: data.jsonl}")
    config["dataset_kwargs"] = {**config["dataset_kwargs"], "data_files": {
        split: _local_files(where, path.parent, split, value) for split, value in files.items()}}
    return config


def _local_files(where: str, root: Path, split: str, value: Any) -> list[str]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise DataError(f"{where}: data_files.{split} must be a file name or a list of them")
    out: list[str] = []
    for n in names:
        if "://" in n:
            raise DataError(f"{where}: data file {n!r} is remote; nothing is downloaded, keep the file beside the YAML")
        p = Path(n) if Path(n).is_absolute() else root / n
        if not p.is_file():
            raise DataError(f"{where}: data file {p} does not exist")
        out.append(str(p.resolve()))
    return out


def evaluated_split(config: dict[str, Any]) -> str:
    """The split whose documents the task scores."""
    for key in SPLIT_KEYS:
        if isinstance(config.get(key), str):
            split: str = config[key]
            return split
    raise DataError(f"lm-eval task '{config['task']}': set 'test_split' (or validation_split) to a data_files key")


def lmeval_task_docs(name: str, path: Path) -> tuple[list[tuple[str, str]], bytes]:
    """The evaluated split's documents as ``(doc_id, JSON text)`` and the bytes that identify the task (its YAML and
    every data file)."""
    config = task_config(name, path)
    files: dict[str, list[str]] = config["dataset_kwargs"]["data_files"]
    split = evaluated_split(config)
    if split not in files:
        raise DataError(f"suite '{name}' ({path}): the evaluated split '{split}' is not in data_files "
                        f"({', '.join(files)})")
    docs: list[tuple[str, str]] = []
    for f in files[split]:
        try:
            text = Path(f).read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise DataError(f"{f}: not UTF-8 text ({err}); lm-eval json data files are JSONL") from None
        docs += [(str(len(docs) + i), json.dumps(obj, sort_keys=True))
                 for i, (_, obj) in enumerate(json_objects(text, Path(f)))]
    identity = {"yaml": sha256_bytes(path.read_bytes()),
                "data": {s: [sha256_bytes(Path(f).read_bytes()) for f in fs] for s, fs in sorted(files.items())}}
    return docs, json.dumps(identity, sort_keys=True).encode()
