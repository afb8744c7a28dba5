"""The content-keyed evaluation cache: hits, misses, atomic entries, and zero work when warm."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import loopgate.evaluate.cache as cache_module
import loopgate.evaluate.runner as runner
from loopgate.evaluate.cache import EvaluationCache, cache_key, directory_model_key
from loopgate.evaluate.engine import ENGINE_LIBRARIES, ENGINE_SOURCES, code_hash, engine_version
from loopgate.evaluate.runner import evaluate_model
from loopgate.evaluate.suites import Suite, load_suite
from loopgate.models import load_model
from loopgate.records import Evaluation


def _count_loads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []

    def counting(path: Path, adapter: Path | None = None, **kw: object) -> object:
        calls.append(Path(path))
        return load_model(path, adapter)

    monkeypatch.setattr(runner, "load_model", counting)
    return calls


def _no_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a: object, **kw: object) -> None:
        raise AssertionError("a fully cached run must not load the model")

    monkeypatch.setattr(runner, "load_model", refuse)


def _outcomes(evs: list[Evaluation]) -> list[list[tuple[str, bool, str | None]]]:
    return [[(e.id, e.correct, e.output) for e in ev.examples] for ev in evs]


def test_warm_run_loads_nothing_and_relabels_the_version(tmp_path: Path, model_dir: Path, gen_suite: Suite,
                                                         safety_suite: Suite, choice_suite: Suite,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    suites = [gen_suite, choice_suite, safety_suite]
    calls = _count_loads(monkeypatch)
    cold = evaluate_model(model_dir, suites, version="v1", model_key=None, cache_dir=tmp_path / "c", progress=True)
    assert len(calls) == 1 and [e.suite for e in cold] == [s.name for s in suites]
    assert len(list((tmp_path / "c").rglob("*.json"))) == 3
    _no_loads(monkeypatch)
    warm = evaluate_model(model_dir, suites, version="v1-again", model_key=None, cache_dir=tmp_path / "c")
    assert _outcomes(warm) == _outcomes(cold)
    assert [e.version for e in warm] == ["v1-again"] * 3
    assert [e.cache_key for e in warm] == [e.cache_key for e in cold] != [""] * 3


def test_a_changed_weight_byte_is_a_miss(tmp_path: Path, model_dir: Path, gen_suite: Suite,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    calls = _count_loads(monkeypatch)
    [first] = evaluate_model(copy, [gen_suite], version="v1", model_key=None, cache_dir=tmp_path / "c")
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # the last byte lies in a tensor (the header comes first): one weight's lowest bit
    weights.write_bytes(bytes(data))
    [second] = evaluate_model(copy, [gen_suite], version="v2", model_key=None, cache_dir=tmp_path / "c")
    assert len(calls) == 2
    assert second.cache_key != first.cache_key
    assert len(list((tmp_path / "c").rglob("*.json"))) == 2


def test_keys_separate_models_suites_and_scorer_config(tmp_path: Path, model_dir: Path, gen_suite: Suite,
                                                        suite_dir: Path) -> None:
    key = directory_model_key(model_dir)
    assert key == directory_model_key(model_dir)
    assert cache_key(key, gen_suite) != cache_key("another-checkpoint", gen_suite)
    lenient = load_suite(gen_suite.name, gen_suite.spec.model_copy(update={"scorer": "contains"}), suite_dir)
    assert cache_key(key, lenient) != cache_key(key, gen_suite)
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"x")
    assert directory_model_key(model_dir, tmp_path / "adapter") != key


@pytest.mark.parametrize("change", [{"max_new_tokens": 13}, {"stop": ["\n", "."]}, {"normalize": False},
                                    {"refusal_markers": ["no"]}], ids=lambda c: next(iter(c)))
def test_a_changed_generation_or_scoring_setting_changes_the_key(gen_suite: Suite, suite_dir: Path,
                                                                 change: dict[str, object]) -> None:
    changed = load_suite(gen_suite.name, gen_suite.spec.model_copy(update=change), suite_dir)
    assert cache_key("m", changed) != cache_key("m", gen_suite)


def test_a_moved_suite_file_keeps_its_key(gen_suite: Suite, suite_dir: Path, tmp_path: Path) -> None:
    shutil.copy(suite_dir / gen_suite.spec.path, tmp_path / "moved.jsonl")
    moved = load_suite(gen_suite.name, gen_suite.spec.model_copy(update={"path": "moved.jsonl"}), tmp_path)
    assert cache_key("m", moved) == cache_key("m", gen_suite)


def test_the_engine_code_hash_is_part_of_the_key(gen_suite: Suite, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache_key("m", gen_suite) == cache_key("m", gen_suite, engine=engine_version())
    assert cache_key("m", gen_suite, engine="a") != cache_key("m", gen_suite, engine="b")
    before = cache_key("m", gen_suite)
    monkeypatch.setattr(cache_module, "engine_version", lambda: "edited-engine")
    assert cache_key("m", gen_suite) != before


@pytest.mark.parametrize("source", ENGINE_SOURCES)
def test_editing_any_engine_source_changes_the_code_hash(tmp_path: Path, source: str) -> None:
    package = Path(cache_module.__file__).resolve().parents[1]
    for s in ENGINE_SOURCES:
        (tmp_path / s).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(package / s, tmp_path / s)
    assert code_hash(tmp_path, ENGINE_SOURCES, ENGINE_LIBRARIES) == engine_version()
    with (tmp_path / source).open("a") as f:
        f.write("\n# a one-line edit\n")
    assert code_hash(tmp_path, ENGINE_SOURCES, ENGINE_LIBRARIES) != engine_version()


def test_a_library_upgrade_changes_the_code_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    import loopgate.evaluate.code_version as engine

    root = Path(engine.__file__).resolve().parents[1]
    real = engine.metadata.version
    monkeypatch.setattr(engine.metadata, "version", lambda name: "0.0.0" if name == "torch" else real(name))
    assert code_hash(root, ENGINE_SOURCES, ENGINE_LIBRARIES) != engine_version()


def test_an_evaluation_records_the_engine_code_hash(model_dir: Path, gen_suite: Suite, tmp_path: Path) -> None:
    [ev] = evaluate_model(model_dir, [gen_suite], version="v1", model_key="k", cache_dir=tmp_path)
    assert ev.engine_version == engine_version() and len(ev.engine_version) == 64


def test_a_corrupt_entry_is_a_miss_and_is_replaced(tmp_path: Path, model_dir: Path, gen_suite: Suite,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_loads(monkeypatch)
    [ev] = evaluate_model(model_dir, [gen_suite], version="v1", model_key="k1", cache_dir=tmp_path)
    [entry] = list(tmp_path.rglob("*.json"))
    entry.write_text(entry.read_text()[:100])  # a torn write from a crashed process
    assert EvaluationCache(tmp_path).get(ev.cache_key) is None
    [again] = evaluate_model(model_dir, [gen_suite], version="v1", model_key="k1", cache_dir=tmp_path)
    assert len(calls) == 2 and _outcomes([again]) == _outcomes([ev])
    assert EvaluationCache(tmp_path).get(ev.cache_key, version="v9").version == "v9"  # type: ignore[union-attr]
    assert not list(tmp_path.rglob("*.tmp"))


def test_another_process_reuses_the_cache(tmp_path: Path, model_dir: Path, gen_suite: Suite, suite_dir: Path) -> None:
    [ev] = evaluate_model(model_dir, [gen_suite], version="v1", model_key=None, cache_dir=tmp_path / "c")
    script = textwrap.dedent(f"""
        import loopgate.evaluate.runner as runner
        from loopgate.evaluate.suites import load_suite
        from loopgate.spec import SuiteSpec
        def refuse(*a, **k):
            raise SystemExit("loaded the model")
        runner.load_model = refuse
        spec = SuiteSpec.model_validate_json({gen_suite.spec.model_dump_json()!r})
        suite = load_suite({gen_suite.name!r}, spec, {str(suite_dir)!r})
        [ev] = runner.evaluate_model({str(model_dir)!r}, [suite], version="v1", model_key=None,
                                     cache_dir={str(tmp_path / "c")!r})
        print(ev.cache_key, ev.score)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [ev.cache_key, str(ev.score)]
