"""Reading ``loopgate.yaml``: a safe YAML parse (no Python tags, duplicate keys or exploding aliases), the parse
cache kept as JSON by content hash, and :func:`load_ecosystem`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from loopgate.errors import DataError, SpecError
from loopgate.jsonl import read_text
from loopgate.spec.checks import parse_ecosystem
from loopgate.spec.common import SPEC_FILE
from loopgate.spec.ecosystem import Ecosystem

# Aliases (``*name``) share one node; constructing Python objects and writing the JSON cache expand every
# use. A few KB of nested aliases ("billion laughs") expand to 10⁹ nodes: 18 s and 1.45 GB before this check.
# A document without aliases is bounded by its own text, so only what aliases *add* is limited.
MAX_ALIAS_NODES = 1_000_000
MAX_ALIAS_CHARS = 10_000_000
_MERGE_TAG = "tag:yaml.org,2002:merge"
# bump to drop parses cached by an older (less strict) loader
_CACHE_SALT = b"loopgate-spec-v2\n"


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _check_nodes(root: yaml.Node, source: str) -> None:
    """Refuse duplicate mapping keys, recursive aliases and aliases that expand the document beyond the budget.

    One iterative walk over the composed node graph (no recursion: nesting depth is the document's to choose);
    a node's expanded size is memoised, so the walk is linear in the text, never in the expansion."""
    size: dict[int, tuple[int, int]] = {}  # id(node) → (nodes, scalar characters) once every alias is expanded
    uses: dict[int, int] = {}
    nodes: dict[int, yaml.Node] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            kids = [size[id(k)] for k in _children(node)]
            own = len(node.value) if isinstance(node, yaml.ScalarNode) else 0
            size[key] = (1 + sum(k[0] for k in kids), own + sum(k[1] for k in kids))
            continue
        uses[key] = uses.get(key, 0) + 1
        if key in size:
            continue  # an alias of a node already measured
        if key in on_path:
            raise SpecError(f"{source}: line {_line(node)}: an alias refers to the node that contains it "
                            "(a recursive alias); write the value out instead")
        nodes[key] = node
        on_path.add(key)
        stack.append((node, True))
        if isinstance(node, yaml.MappingNode):
            _check_duplicate_keys(node, source)
        stack.extend((k, False) for k in reversed(_children(node)))
    unique_nodes = len(size)
    unique_chars = sum(len(n.value) for n in nodes.values() if isinstance(n, yaml.ScalarNode))
    total_nodes, total_chars = size[id(root)]
    if total_nodes - unique_nodes > MAX_ALIAS_NODES or total_chars - unique_chars > MAX_ALIAS_CHARS:
        shared = [k for k, n in uses.items() if n > 1]
        worst = max(shared, key=lambda k: uses[k] * size[k][0] + size[k][1], default=id(root))
        raise SpecError(
            f"{source}: aliases (*name) expand the document to {total_nodes:,} values and {total_chars:,} "
            f"characters; aliases may add at most {MAX_ALIAS_NODES:,} values and {MAX_ALIAS_CHARS:,} characters "
            f"(the largest shared value starts at line {_line(nodes[worst])}); write the repeated sections out "
            "instead of nesting aliases")


def _check_duplicate_keys(node: yaml.MappingNode, source: str) -> None:
    first: dict[tuple[str, str], int] = {}
    for k, _ in node.value:
        if not isinstance(k, yaml.ScalarNode) or k.tag == _MERGE_TAG:
            continue  # a merge key (<<) may be overridden by design; complex keys cannot collide by text
        if (k.tag, k.value) in first:
            raise SpecError(f"{source}: line {_line(k)}: duplicate key '{k.value}' (first at line "
                            f"{first[(k.tag, k.value)]}); YAML would keep only the last one and silently drop the "
                            "first: merge the two or rename one")
        first[(k.tag, k.value)] = _line(k)


def parse_yaml_text(text: str, source: str = SPEC_FILE) -> Any:
    """Parse YAML safely: no Python tags, no duplicate keys, no recursive or exploding aliases (``SpecError``)."""
    # libyaml's parser when PyYAML has it (several times faster than the pure-Python one)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        root = loader.get_single_node()  # composing is linear: an alias is a reference to one shared node
        if root is None:
            return None
        _check_nodes(root, source)
        return loader.construct_document(root)
    except yaml.YAMLError as err:
        raise SpecError(f"{source}: not valid YAML: {err}") from None
    except RecursionError:  # the pure-Python composer on a very deeply nested document
        raise SpecError(f"{source}: nested too deeply; flatten the document") from None
    finally:
        loader.dispose()


def _parse_yaml(text: str, cache_dir: Path | None, source: str = SPEC_FILE) -> Any:
    """The YAML document, parsed once per content: PyYAML builds Python objects in pure Python (~0.4 s for a
    10,000-line spec), so a parse is kept as JSON under ``cache_dir``, keyed by the text's hash, and read back
    with the C JSON parser. Only documents JSON keeps exactly are kept; the cache is safe to delete. The
    checks of :func:`parse_yaml_text` run before anything is expanded or written."""
    import json
    import os

    from loopgate.hashing import sha256_bytes

    cached = cache_dir / f"{sha256_bytes(_CACHE_SALT + text.encode('utf-8'))}.json" if cache_dir is not None else None
    if cached is not None and cached.exists():
        try:
            return json.loads(cached.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass  # a damaged entry: parse again and rewrite it
    data = parse_yaml_text(text, source)
    if cached is not None:
        try:
            dumped = json.dumps(data)
            if json.loads(dumped) == data:  # dates, non-string keys…: not cached, parsed each time
                cached.parent.mkdir(parents=True, exist_ok=True)
                tmp = cached.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(dumped, encoding="utf-8")
                os.replace(tmp, cached)
        except (OSError, TypeError, ValueError):
            pass  # a read-only workspace, or a document JSON cannot hold: no cache, same result
    return data


def load_ecosystem(path: str | Path, cache_dir: Path | None = None, *, check_files: bool = False) -> Ecosystem:
    """Read and validate ``loopgate.yaml`` (a file, or a folder that holds one); ``cache_dir`` keeps parses.

    ``check_files``: also refuse suites whose files do not exist (:meth:`Ecosystem.check_suite_files`). Off by
    default: a workspace is declared before its suite files are written, and rollback or ``audit verify`` must
    not stop working because an evaluation file went missing."""
    p = Path(path)
    if p.is_dir():
        p = p / SPEC_FILE
    if not p.exists():
        raise SpecError(f"no {SPEC_FILE} at {p.parent}; run 'loopgate init {p.parent}' or pass --workspace")
    try:
        data = _parse_yaml(read_text(p, SPEC_FILE), cache_dir, source=str(p))
    except DataError as err:  # not UTF-8 text: the message names the file and the first bad byte
        raise SpecError(str(err)) from None
    eco = parse_ecosystem(data, root=p.parent, source=str(p.name))
    if check_files:
        eco.check_suite_files()
    return eco
