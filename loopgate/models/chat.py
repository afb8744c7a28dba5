"""Chat formats: ``messages`` rows (OpenAI-style roles) rendered with the model's own chat template.

A suite row or an update row may carry ``messages`` instead of a raw ``prompt``. The text the model sees is then
``tokenizer.apply_chat_template(messages, add_generation_prompt=True)`` — the format an instruct model was
trained on — and training and evaluation render it the same way, so the trained boundary is the one generation
sees. ``prompt`` rows stay raw strings.
"""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedTokenizerBase

from loopgate.errors import DataError

ROLES = ("system", "user", "assistant")


def check_messages(value: Any, where: str, *, last: str | None = None) -> list[dict[str, str]]:
    """``value`` as a list of ``{"role", "content"}`` messages (roles system/user/assistant), or a ``DataError``
    naming ``where``; ``last`` is the role the final message must have."""
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: field 'messages' must be a non-empty list of {{\"role\", \"content\"}} objects")
    out: list[dict[str, str]] = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise DataError(f"{where}: messages[{i}] must be an object with string fields 'role' and 'content'")
        if m["role"] not in ROLES:
            raise DataError(f"{where}: messages[{i}] has role {m['role']!r}; roles are {', '.join(ROLES)}")
        out.append({"role": m["role"], "content": m["content"]})
    if last is not None and out[-1]["role"] != last:
        raise DataError(f"{where}: the last message must be the {last}'s (it is the {out[-1]['role']}'s)")
    return out


def render_chat(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], where: str = "") -> str:
    """The prompt text for ``messages``: the tokenizer's chat template with the generation prompt appended.

    A template that writes the tokenizer's bos token itself would get a second one when the text is tokenised
    with special tokens (as every prompt is); the rendered bos is dropped in that case.
    """
    if not getattr(tokenizer, "chat_template", None):
        where_ = f"{where}: " if where else ""
        raise DataError(f"{where_}this row has 'messages' but the model's tokenizer has no chat template; give the "
                        "row a raw 'prompt' instead, or use a model whose tokenizer_config.json (or "
                        "chat_template.jinja) defines one")
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert isinstance(text, str)
    bos = tokenizer.bos_token
    if bos and text.startswith(bos):
        ids = tokenizer("")["input_ids"]
        if ids and ids[0] == tokenizer.bos_token_id:
            text = text[len(bos):]
    return text
