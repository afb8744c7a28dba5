"""Every parameter eval clients send, through the real ``openai`` SDK against a live gateway: ``echo`` and
``logprobs`` on completions, chat ``logprobs``/``top_logprobs``, token-id prompts, ``max_tokens: 0``, ``n`` with
seeded sampling, ``stream_options.include_usage``, ``finish_reason`` at the token limit, the stop-list limit,
``response_format``, ``/v1/responses`` and per-choice feedback ids."""

from __future__ import annotations

import math
from collections.abc import Iterator

import openai
import pytest
from gateway_world import Server, copy_workspace, template_workspace

from loopgate.evaluate.engine import choice_loglikelihoods
from loopgate.store import gateway as gw


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("sdk")
    srv = Server(copy_workspace(template_workspace(root / "t"), root / "ws"), require_keys=False, max_n=4)
    yield srv
    srv.stop()


def test_echo_scores_the_prompt_as_the_engine_does(server: Server) -> None:
    client = server.client()
    r = client.completions.create(model="base", prompt="apple?x", echo=True, logprobs=2, max_tokens=0)
    c = r.choices[0]
    lp = c.logprobs
    assert c.text == "apple?x" and c.finish_reason == "length" and r.usage is not None
    assert r.usage.completion_tokens == 0 and r.usage.prompt_tokens == 7
    assert lp is not None and lp.tokens == list("apple?x") and lp.text_offset == list(range(7))
    assert lp.token_logprobs is not None and lp.token_logprobs[0] is None and lp.top_logprobs is not None
    assert lp.top_logprobs[0] is None and all(len(t) >= 2 for t in lp.top_logprobs[1:])
    # the answer letter after "apple?", as the evaluation engine scores it, and nearly certain for this model
    srv = server.gateway.servers["base@1"]
    engine = choice_loglikelihoods(srv.model, srv.tokenizer, ["apple?"], [["x"]])[0].loglikelihoods[0]
    assert lp.token_logprobs[-1] == pytest.approx(engine, rel=1e-6, abs=1e-6) and engine > math.log(0.5)
    assert max(lp.top_logprobs[-1].values()) == lp.token_logprobs[-1]  # "x" is the model's top choice
    # lm-eval's own request: max_tokens 1, logprobs 1 — one more token after the prompt, the prompt's unchanged
    one = client.completions.create(model="base", prompt="apple?x", echo=True, logprobs=1, max_tokens=1)
    assert one.choices[0].logprobs is not None and one.choices[0].logprobs.token_logprobs is not None
    assert one.choices[0].logprobs.token_logprobs[:7] == lp.token_logprobs
    assert len(one.choices[0].logprobs.token_logprobs) == 8


def test_logprobs_of_the_answer_and_token_id_prompts(server: Server) -> None:
    client = server.client()
    r = client.completions.create(model="base", prompt="river?", logprobs=3, max_tokens=4)
    c = r.choices[0]
    assert c.text == "y" and c.logprobs is not None and c.logprobs.tokens == ["y", ""]  # the answer, then EOS
    assert c.logprobs.token_logprobs is not None and c.logprobs.top_logprobs is not None
    assert all(len(t) == 3 and max(t.values()) == v
               for t, v in zip(c.logprobs.top_logprobs, c.logprobs.token_logprobs, strict=True))
    tokenizer = server.gateway.servers["base@1"].tokenizer  # loaded by the request above
    ids = tokenizer("river?")["input_ids"]
    by_ids = client.completions.create(model="base", prompt=ids, max_tokens=4)
    assert by_ids.choices[0].text == "y" and by_ids.usage is not None and by_ids.usage.prompt_tokens == len(ids)
    several = client.completions.create(model="base", prompt=[ids, tokenizer("apple?")["input_ids"]], max_tokens=4)
    assert [ch.text for ch in several.choices] == ["y", "x"]
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model="base", prompt=[10_000], max_tokens=4)
    assert bad.value.body["param"] == "prompt"  # type: ignore[index]


def test_chat_logprobs_in_openais_shape(server: Server) -> None:
    r = server.client().chat.completions.create(model="base", messages=[{"role": "user", "content": "stone?"}],
                                               logprobs=True, top_logprobs=2, max_tokens=4)
    content = r.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and r.choices[0].message.content == "z"
    first = content[0]
    assert first.token == "z" and first.bytes == list(b"z") and first.logprob > math.log(0.5)
    assert len(first.top_logprobs) == 2 and first.top_logprobs[0].token == "z"
    assert first.top_logprobs[0].logprob == first.logprob and first.top_logprobs[1].logprob < first.logprob
    plain = server.client().chat.completions.create(model="base", messages=[{"role": "user", "content": "stone?"}],
                                                   max_tokens=4)
    assert plain.choices[0].logprobs is None


def test_n_samples_with_temperature_top_p_and_seed(server: Server) -> None:
    client = server.client()

    def sample(seed: int, **kw: object) -> list[str]:
        r = client.completions.with_raw_response.create(model="plain", prompt="apple?", n=3, max_tokens=6,
                                                        temperature=1.0, seed=seed, **kw)  # type: ignore[arg-type]
        assert r.headers["x-loopgate-seed"] == str(seed)
        return [c.text for c in r.parse().choices]

    first = sample(7)
    assert len(first) == 3 and len(set(first)) > 1  # sampled: an untrained model's choices differ
    assert sample(7) == first  # the same seed, the same answers
    assert sample(8) != first
    greedy = client.completions.create(model="plain", prompt="apple?", max_tokens=6).choices[0].text
    assert sample(9, top_p=1e-9) == [greedy] * 3  # top_p keeps only the most likely token: greedy again
    drawn = client.completions.with_raw_response.create(model="plain", prompt="apple?", n=2, max_tokens=6,
                                                        temperature=0.7)
    seed = int(drawn.headers["x-loopgate-seed"])  # no seed sent: the one drawn is returned, to reproduce it
    again = client.completions.create(model="plain", prompt="apple?", n=2, max_tokens=6, temperature=0.7, seed=seed)
    assert [c.text for c in again.choices] == [c.text for c in drawn.parse().choices]
    chat = client.chat.completions.create(model="base", messages=[{"role": "user", "content": "apple?"}], n=2,
                                          max_tokens=4)
    assert [c.message.content for c in chat.choices] == ["x", "x"] and [c.index for c in chat.choices] == [0, 1]
    with pytest.raises(openai.BadRequestError) as over:
        client.completions.create(model="base", prompt="apple?", n=5)
    assert over.value.body["param"] == "n"  # type: ignore[index]


def test_stream_options_include_usage(server: Server) -> None:
    client = server.client()
    chunks = list(client.chat.completions.create(model="base", messages=[{"role": "user", "content": "river?"}],
                                                 max_tokens=4, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 6 and chunks[-1].usage.completion_tokens == 2  # "y" and EOS
    assert all(c.usage is None for c in chunks[:-1])
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == "y"
    text = list(client.completions.create(model="base", prompt="river?", max_tokens=4, stream=True,
                                          stream_options={"include_usage": True}))
    assert text[-1].choices == [] and text[-1].usage is not None and text[-1].usage.total_tokens == 8
    without = list(client.completions.create(model="base", prompt="river?", max_tokens=4, stream=True))
    assert all(c.usage is None and c.choices for c in without)


def test_finish_reason_is_stop_when_eos_is_the_last_allowed_token(server: Server) -> None:
    client = server.client()
    two = client.completions.create(model="base", prompt="apple?", max_tokens=2).choices[0]
    assert (two.text, two.finish_reason) == ("x", "stop")  # "x" then EOS: complete, though it used both tokens
    one = client.completions.create(model="base", prompt="apple?", max_tokens=1).choices[0]
    assert (one.text, one.finish_reason) == ("x", "length")  # cut before its EOS
    stopped = client.completions.create(model="base", prompt="apple?", max_tokens=1, stop=["x"]).choices[0]
    assert (stopped.text, stopped.finish_reason) == ("", "stop")  # a stop string ended it, on the last token
    chat = client.chat.completions.create(model="base", messages=[{"role": "user", "content": "apple?"}],
                                          max_tokens=2)
    assert chat.choices[0].finish_reason == "stop"


def test_limits_and_refusals_use_openais_error_body(server: Server) -> None:
    client = server.client()
    assert client.completions.create(model="base", prompt="apple?", stop=["a", "b", "c", "d"]).choices[0].text
    with pytest.raises(openai.BadRequestError) as stops:
        client.completions.create(model="base", prompt="apple?", stop=["a", "b", "c", "d", "e"])
    assert stops.value.body["param"] == "stop" and "at most 4" in stops.value.body["message"]  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as fmt:
        client.chat.completions.create(model="base", messages=[{"role": "user", "content": "apple?"}],
                                       response_format={"type": "json_object"})
    assert fmt.value.body["code"] == "unsupported_value"  # type: ignore[index]
    ok = client.chat.completions.create(model="base", messages=[{"role": "user", "content": "apple?"}],
                                        response_format={"type": "text"}, max_tokens=4)
    assert ok.choices[0].message.content == "x"
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="base", prompt="apple?", max_tokens=0)  # 0 only with echo
    with pytest.raises(openai.NotFoundError) as responses:
        client.responses.create(model="base", input="apple?")
    assert "chat/completions" in responses.value.body["message"]  # type: ignore[index]
    assert responses.value.body["code"] == "unknown_url"  # type: ignore[index]


def test_every_choice_has_an_id_feedback_takes(server: Server) -> None:
    client = server.client()
    raw = client.completions.with_raw_response.create(model="base", prompt=["apple?", "river?"], max_tokens=4)
    r = raw.parse()
    ids = [c.model_extra["request_id"] for c in r.choices]  # type: ignore[index]
    assert ids == [f"{r.id}-0", f"{r.id}-1"] and raw.headers["x-loopgate-choice-ids"] == ",".join(ids)
    status, body = server.post("/feedback", {"request_id": ids[1], "score": 0.0})
    assert status == 200 and body["request_id"] == ids[1], body
    assert server.post("/feedback", {"request_id": r.id, "index": 0, "score": 1.0})[0] == 200
    logged = gw.request(server.ws.store, ids[1])
    assert logged is not None and logged.prompt == "river?" and logged.output == "y"
    single = client.completions.create(model="base", prompt="apple?", max_tokens=4)
    assert single.choices[0].model_extra["request_id"] == single.id  # type: ignore[index]
    sampled = client.completions.create(model="plain", prompt="apple?", n=2, temperature=1.0, seed=1, max_tokens=3)
    for i, c in enumerate(sampled.choices):
        assert c.model_extra["request_id"] == f"{sampled.id}-{i}"  # type: ignore[index]
        assert server.post("/feedback", {"request_id": f"{sampled.id}-{i}", "score": 1.0})[0] == 200
