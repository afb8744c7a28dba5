"""Update data: load and validate JSONL, tokenise for causal LM training, draw batches with replay.

Three row shapes, one per method family:

- ``{"prompt", "completion"}`` for ``sft`` / ``lora`` (loss on the completion only),
- ``{"prompt", "chosen", "rejected"}`` for ``dpo``,
- ``{"text"}`` for ``pretrain`` (loss on every token).

``sft`` and ``dpo`` rows may carry chat ``messages`` (OpenAI-style roles) instead of ``prompt``: for ``sft`` the
last message is the assistant's answer (the target) and the ones before it are the prompt; for ``dpo``
``chosen``/``rejected`` answer the messages. They are rendered with the model's chat template
(:mod:`loopgate.models.chat`), exactly as evaluation renders chat suite rows.

Every problem is a :class:`~loopgate.errors.DataError` that names the file, the line and the field, because
the person who fixes it is looking at the JSONL file, not at a traceback.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from loopgate.errors import DataError
from loopgate.hashing import sha256_file
from loopgate.jsonl import json_objects
from loopgate.models.chat import check_messages, render_chat
from loopgate.train.trained import RowKind

FIELDS: dict[RowKind, tuple[str, ...]] = {
    "sft": ("prompt", "completion"),
    "dpo": ("prompt", "chosen", "rejected"),
    "text": ("text",),
}
IGNORE_INDEX = -100  # the label value torch's cross-entropy (and transformers) skips


def load_rows(path: Path, kind: RowKind | None = None) -> list[dict[str, Any]]:
    """Read a JSONL file and check every row has the fields of ``kind`` as strings.

    With ``kind=None`` the shape is taken from the first row (replay files may hold either
    prompt/completion rows or raw text), and every later row must have the same shape.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a folder; update data is JSONL files (name each one)")
    if not path.is_file():
        raise DataError(f"{path}: no such data file; check the path in the update's data list")
    rows: list[dict[str, Any]] = []
    for lineno, row in json_objects(_utf8_text(path), path):
        _check_strings(row, f"{path}:{lineno}")
        if kind is None:
            kind = _guess_kind(row, path, lineno)
        if "messages" in row and kind != "text":
            rows.append(_chat_row(row, kind, f"{path}:{lineno}"))
            continue
        for field in FIELDS[kind]:
            if field not in row:
                raise DataError(
                    f"{path}:{lineno}: missing field '{field}'; {kind} rows need "
                    + ", ".join(f"'{f}'" for f in FIELDS[kind])
                )
            if not isinstance(row[field], str):
                raise DataError(
                    f"{path}:{lineno}: field '{field}' must be a string, got {type(row[field]).__name__}"
                )
        rows.append({k: row[k] for k in FIELDS[kind]})
    if not rows:
        raise DataError(f"{path}: the file has no rows; an update needs at least one example")
    return rows


def _utf8_text(path: Path) -> str:
    """The file's text (a leading BOM dropped); bytes that are not UTF-8 are a ``DataError`` naming ``path:line``."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror}); check its permissions") from None
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[err.start]:02x}); update data is JSONL in UTF-8 — "
                        "was the file saved in another encoding?") from None


def _check_strings(value: Any, where: str, field: str = "") -> None:
    """Every string of a row is text a tokenizer can take: JSON's ``\\ud800`` escape parses to a lone surrogate,
    which no UTF-8 tokenizer can encode (it failed inside training, far from the file)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:
            what = f"field '{field}'" if field else "a key"
            raise DataError(f"{where}: {what} holds a lone surrogate ({value[err.start]!r} at character {err.start}); "
                            "\\ud800-\\udfff escapes must come in pairs — fix what wrote this row") from None
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_strings(k, where, field)
            _check_strings(v, where, f"{field}.{k}" if field else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_strings(v, where, f"{field}[{i}]")


def _chat_row(row: dict[str, Any], kind: RowKind, where: str) -> dict[str, Any]:
    """A ``messages`` row, checked: ``{"messages": prompt messages, "completion" | "chosen"/"rejected", "source"}``."""
    if "prompt" in row:
        raise DataError(f"{where}: a row has 'prompt' or 'messages', not both")
    if kind == "sft":
        msgs = check_messages(row["messages"], where, last="assistant")
        if len(msgs) < 2:
            raise DataError(f"{where}: 'messages' needs the conversation before the assistant's answer")
        return {"messages": msgs[:-1], "completion": msgs[-1]["content"], "source": where}
    msgs = check_messages(row["messages"], where)
    for field in ("chosen", "rejected"):
        if not isinstance(row.get(field), str):
            raise DataError(f"{where}: field '{field}' must be a string answering the messages")
    return {"messages": msgs, "chosen": row["chosen"], "rejected": row["rejected"], "source": where}


def rendered_prompt(row: dict[str, Any], tokenizer: PreTrainedTokenizerBase) -> str:
    """The row's prompt text: its raw ``prompt``, or its ``messages`` through the tokenizer's chat template."""
    if "messages" in row:
        return render_chat(tokenizer, row["messages"], where=str(row.get("source", "")))
    return str(row["prompt"])


def _guess_kind(row: dict[str, object], path: Path, lineno: int) -> RowKind:
    if "chosen" in row or "rejected" in row:
        return "dpo"
    if "prompt" in row or "completion" in row or "messages" in row:
        return "sft"
    if "text" in row:
        return "text"
    raise DataError(f"{path}:{lineno}: cannot tell the row shape; expected 'prompt'/'completion', "
                    "'prompt'/'chosen'/'rejected' or 'text'")


def data_sha256(paths: Sequence[Path]) -> list[str]:
    """sha256 of each data file, in the order given (part of a version's provenance)."""
    return [sha256_file(p) for p in paths]


# --------------------------------------------------------------------------- tokenisation


@dataclass(frozen=True)
class Example:
    """One tokenised training example; ``labels`` is ``IGNORE_INDEX`` where no loss is taken."""

    input_ids: list[int]
    labels: list[int]


def tokenize_row(row: dict[str, Any], tokenizer: PreTrainedTokenizerBase, max_length: int) -> Example:
    """Tokenise one prompt/completion or text row for causal LM training, with eos appended.

    The prompt is tokenised exactly as inference will tokenise it (default special tokens), the completion
    without special tokens, so the trained boundary is the one generation sees. Prompt tokens get label
    ``IGNORE_INDEX``: the model is taught to answer, not to predict the question.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise DataError("the tokenizer has no eos token; Loopgate appends eos so a model learns where to stop")
    if "text" in row:
        ids = list(tokenizer(row["text"])["input_ids"]) + [eos]
        return Example(ids[:max_length], ids[:max_length])
    prompt = list(tokenizer(rendered_prompt(row, tokenizer))["input_ids"])
    completion = list(tokenizer(row["completion"], add_special_tokens=False)["input_ids"]) + [eos]
    return fit_example(prompt, completion, max_length)


def fit_example(prompt: list[int], completion: list[int], max_length: int) -> Example:
    """A prompt/completion example of at most ``max_length`` tokens that keeps the answer.

    The loss is taken on the completion only, so a long row gives up prompt tokens first, from the left: the end of
    the prompt is what the answer follows, and evaluation cuts a long prompt the same way. Only a completion that
    cannot fit on its own is cut, at its end, after one prompt token (the first answer token needs something to be
    predicted from): greedy decoding produces an answer from its start, so its start is the part worth learning.
    """
    if len(prompt) + len(completion) <= max_length:
        keep = len(prompt)
    else:
        keep = max(max_length - len(completion), min(len(prompt), 1))
    kept = prompt[len(prompt) - keep:]
    answer = completion[: max_length - keep]
    return Example(kept + answer, [IGNORE_INDEX] * len(kept) + answer)


def tokenize_rows(rows: Sequence[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, max_length: int
                  ) -> list[Example]:
    """Tokenise rows exactly as :func:`tokenize_row` does, dropping none; a row longer than ``max_length`` is cut as
    :func:`fit_example` says (a text row keeps its start).

    The texts go to the tokenizer in three batched calls (texts, prompts, completions) rather than one or two
    calls per row: a fast tokenizer encodes a list in parallel in Rust, 10× faster than row by row on
    thousands of rows, and an update's tokenisation sits inside its wall time.
    """
    if not rows:
        return []
    eos = tokenizer.eos_token_id
    if eos is None:
        raise DataError("the tokenizer has no eos token; Loopgate appends eos so a model learns where to stop")
    texts = [i for i, r in enumerate(rows) if "text" in r]
    pairs = [i for i, r in enumerate(rows) if "text" not in r]

    def encode(strings: list[str], **kwargs: Any) -> list[list[int]]:
        return [list(ids) for ids in tokenizer(strings, **kwargs)["input_ids"]] if strings else []

    out: list[Example | None] = [None] * len(rows)
    for i, ids in zip(texts, encode([str(rows[i]["text"]) for i in texts]), strict=True):
        ids = ids + [eos]
        out[i] = Example(ids[:max_length], list(ids)[:max_length])
    prompts = encode([rendered_prompt(rows[i], tokenizer) for i in pairs])
    completions = encode([str(rows[i]["completion"]) for i in pairs], add_special_tokens=False)
    for i, prompt, completion in zip(pairs, prompts, completions, strict=True):
        out[i] = fit_example(prompt, completion + [eos], max_length)
    return [e for e in out if e is not None]


def count_long_rows(rows: Sequence[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, max_length: int) -> int:
    """How many rows are longer than ``max_length`` tokens with their eos (a dpo row: its prompt and its longer
    answer), i.e. how many training cuts; one batched tokenisation per kind, as in :func:`tokenize_rows`."""
    if not rows:
        return 0

    def lengths(strings: list[str], **kwargs: Any) -> list[int]:
        return [len(ids) for ids in tokenizer(strings, **kwargs)["input_ids"]] if strings else []

    texts = [r for r in rows if "text" in r]
    pairs = [r for r in rows if "text" not in r]
    long = sum(n + 1 > max_length for n in lengths([str(r["text"]) for r in texts]))
    answers = [[str(r[f]) for f in ("completion", "chosen", "rejected") if f in r] for r in pairs]
    flat = iter(lengths([a for per_row in answers for a in per_row], add_special_tokens=False))
    longest = [max(next(flat) for _ in per_row) for per_row in answers]
    prompts = lengths([rendered_prompt(r, tokenizer) for r in pairs])
    return long + sum(p + a + 1 > max_length for p, a in zip(prompts, longest, strict=True))


@dataclass
class Batch:
    """A right-padded batch ready for ``model(**batch.model_inputs())``."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    n_tokens: int  # real (non-pad) tokens, the unit of tokens/s and of the FLOPs estimate

    def model_inputs(self, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        inputs = {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "labels": self.labels}
        if device is not None and torch.device(device).type != "cpu":
            inputs = {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
        return inputs

    def split(self, parts: int) -> list[tuple[Batch, float]]:
        """``parts`` micro-batches of consecutive rows, each with its share of the batch's loss tokens, so the
        weighted sum of their mean losses is the batch's mean loss (gradient accumulation)."""
        if parts <= 1:
            return [(self, 1.0)]
        total = max(int((self.labels[:, 1:] != IGNORE_INDEX).sum()), 1)
        out = []
        for rows in torch.arange(self.input_ids.shape[0]).chunk(parts):
            ids, mask, labels = self.input_ids[rows], self.attention_mask[rows], self.labels[rows]
            share = int((labels[:, 1:] != IGNORE_INDEX).sum()) / total
            out.append((Batch(ids, mask, labels, int(mask.sum())), share))
        return out


def collate(examples: Sequence[Example], pad_id: int) -> Batch:
    """Right-pad to the longest example in the batch (dynamic padding keeps tiny batches cheap)."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        mask[i, :n] = 1
        labels[i, :n] = torch.tensor(e.labels)
    return Batch(ids, mask, labels, int(mask.sum()))


class _Cycler:
    """Endless, seeded, epoch-shuffled order over a list: every example is seen once per epoch."""

    def __init__(self, n: int, rng: random.Random) -> None:
        self.n, self.rng, self.order, self.pos = n, rng, list(range(n)), n

    def take(self, k: int) -> list[int]:
        out: list[int] = []
        while len(out) < k:
            if self.pos >= self.n:
                self.rng.shuffle(self.order)
                self.pos = 0
            out.append(self.order[self.pos])
            self.pos += 1
        return out


def replay_count(batch_size: int, share: float, has_replay: bool) -> int:
    """How many rows of each batch come from replay data (at least one when any share is asked for)."""
    if not has_replay or share <= 0:
        return 0
    return min(batch_size - 1, max(1, round(share * batch_size)))


def batches(new: Sequence[Example], replay: Sequence[Example], *, batch_size: int, share: float, steps: int,
            seed: int, pad_id: int) -> Iterator[Batch]:
    """Yield ``steps`` batches: ``share`` of each drawn from ``replay``, the rest from ``new``.

    Order depends only on ``seed`` (a private ``random.Random``, not torch's global RNG), so the same
    inputs always give the same batches — one half of bit-for-bit reproducible training.
    """
    n_replay = replay_count(batch_size, share, bool(replay))
    new_order = _Cycler(len(new), random.Random(f"{seed}:new"))
    replay_order = _Cycler(len(replay), random.Random(f"{seed}:replay")) if replay else None
    for _ in range(steps):
        rows = [new[i] for i in new_order.take(batch_size - n_replay)]
        if replay_order is not None and n_replay:
            rows += [replay[i] for i in replay_order.take(n_replay)]
        yield collate(rows, pad_id)
