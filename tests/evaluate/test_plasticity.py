"""Plasticity figures on real tiny models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from seed import SEED

from loopgate.evaluate.plasticity import (
    dormant_ratio,
    effective_rank,
    plasticity_headroom,
    plasticity_profile,
    weight_norm,
)
from loopgate.models import TinyConfig, build_tiny_model, set_threads

SMALL = TinyConfig(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256, seed=SEED)


@pytest.fixture(scope="module")
def tiny():  # type: ignore[no-untyped-def]
    set_threads()
    return build_tiny_model(SMALL)


def test_effective_rank_of_hand_made_matrices() -> None:
    # singular values (1, 1, 0) → p = (½, ½) → exp(ln 2) = 2
    assert effective_rank(np.diag([1.0, 1.0, 0.0])) == pytest.approx(2.0)
    # singular values (3, 1) → p = (¾, ¼)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert effective_rank(np.diag([3.0, 1.0])) == pytest.approx(math.exp(h))
    # rank one, whatever its size
    assert effective_rank(np.outer(np.arange(1, 6), np.arange(1, 4))) == pytest.approx(1.0)
    assert effective_rank(np.zeros((3, 3))) == 0.0


def test_dead_mlp_units_raise_the_dormant_ratio(tiny) -> None:  # type: ignore[no-untyped-def]
    model, tok = tiny
    fresh = dormant_ratio(model, tok)
    assert fresh < 0.05  # seeds 0-5 measured: 0.0
    killed = build_tiny_model(SMALL)[0]
    with torch.no_grad():
        for layer in killed.model.layers:
            layer.mlp.up_proj.weight[:64] = 0  # a quarter of the units can no longer fire
    assert dormant_ratio(killed, tok) >= 0.25
    assert dormant_ratio(killed, tok, tau=0.0) == pytest.approx(0.25)


def test_profile_is_deterministic_and_leaves_the_model_untouched(tiny) -> None:  # type: ignore[no-untyped-def]
    model, tok = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    p1 = plasticity_profile(model, tok, probe_steps=5, seed=SEED)
    p2 = plasticity_profile(model, tok, probe_steps=5, seed=SEED)
    assert p1 == p2
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert set(p1) >= {"dormant_ratio", "effective_rank", "weight_norm", "probe_loss_start", "probe_loss_end",
                       "probe_improvement"}
    # seeds 0-5 measured: 5 probe steps take the held-out loss from ≈4.6 down by 0.56-0.58
    assert p1["probe_loss_end"] < p1["probe_loss_start"] - 0.25
    assert p1["weight_norm"] == pytest.approx(weight_norm(model))
    assert 1.0 < p1["effective_rank"] <= SMALL.hidden_size


def test_headroom_is_relative_to_the_reference(tiny) -> None:  # type: ignore[no-untyped-def]
    model, tok = tiny
    profile = plasticity_profile(model, tok, seed=SEED)
    assert plasticity_headroom(profile, profile) == pytest.approx(1.0)
    # a model whose weights were scaled down learns the probe more slowly than its reference
    slow = build_tiny_model(SMALL)[0]
    with torch.no_grad():
        for p in slow.parameters():
            p.mul_(0.05)
    # seeds 0-5 measured: 0.042-0.044
    assert plasticity_headroom(plasticity_profile(slow, tok, seed=SEED), profile) < 0.5
    assert math.isnan(plasticity_headroom(profile, {**profile, "probe_improvement": 0.0}))


def test_cached_profiles_are_keyed_on_the_code_that_computes_them(workspace, tiny_model_dir,  # type: ignore[no-untyped-def]
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A profile is computed once per weights, probe length and profile code: a recalibrated probe must not be
    answered from a cache filled by the old one."""
    import loopgate.evaluate.plasticity as plasticity
    from loopgate.executors import jobs
    from loopgate.loop.evaluation import profile_dir

    runs: list[int] = []
    real = jobs.profile

    def counted(**kw):  # type: ignore[no-untyped-def]
        runs.append(1)
        return real(**kw)

    monkeypatch.setattr(jobs, "profile", counted)
    first = profile_dir(workspace, tiny_model_dir, probe_steps=2)
    assert profile_dir(workspace, tiny_model_dir, probe_steps=2) == first and len(runs) == 1  # from the cache
    monkeypatch.setattr(plasticity, "profile_code_version", lambda: "f" * 64)  # as after an edit of the probe
    assert profile_dir(workspace, tiny_model_dir, probe_steps=2) == first and len(runs) == 2  # computed again
    assert len(list(workspace.store.cache_dir("profiles").glob("*.json"))) == 2
