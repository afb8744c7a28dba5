"""The release report and the run report render from a real registry, with correct figures and safe HTML."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

SCRIPT = "<script>alert('pwned')</script>"  # the markup planted in the fixture's user text
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SECTIONS = {"release-notes", "gates", "suites", "flips", "cost", "model-card", "lineage", "plots"}


class Page(HTMLParser):
    """Collects element ids, <img> sources and <script> tags of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.images: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(str(a["id"]))
        if tag == "img":
            self.images.append(str(a.get("src")))
        if tag == "script":
            self.scripts += 1


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def decoded_pngs(page: Page) -> list[bytes]:
    prefix = "data:image/png;base64,"
    assert page.images and all(src.startswith(prefix) for src in page.images), page.images
    return [base64.b64decode(src[len(prefix):], validate=True) for src in page.images]


@pytest.fixture(scope="module")
def paths(report_ws: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The report of support@2 (released over support@1), built once for the tests that only read it."""
    from loopgate.report import build_report

    return build_report(report_ws, "support@2", tmp_path_factory.mktemp("out"))


def test_release_report_files_sections_and_images(paths: Any) -> None:
    for p in (paths.markdown, paths.html, paths.model_card, *paths.plots):
        assert p.exists() and p.stat().st_size > 0
    assert {p.name for p in paths.plots} == {"support-2.accuracy-matrix.png", "support-2.trends.png",
                                             "support-2.cost.png"}
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in paths.plots)

    page = parse(paths.html)
    assert SECTIONS <= page.ids
    pngs = decoded_pngs(page)
    assert len(pngs) == 3 and all(png.startswith(PNG_MAGIC) for png in pngs)
    # self-contained: nothing but data URIs and in-page anchors
    html = paths.html.read_text(encoding="utf-8")
    assert not re.search(r'(src|href)="(?!data:|#)', html)

    md = paths.markdown.read_text(encoding="utf-8")
    for p in paths.plots:
        assert f"]({p.name})" in md


def test_release_notes_figures_match_hand_computed(paths: Any) -> None:
    md = paths.markdown.read_text(encoding="utf-8")
    assert "Compared with **support@1** (production before support@2 was released)" in md
    assert "| reversal | owned | 10 | 0.800 | 0.700 | -0.100 |" in md
    assert "| general | inherited | 4 | 1.000 | 0.750 | -0.250 |" in md
    assert "| refusals | inherited | 4 | 1.000 | 0.750 (refusals 0.750) | -0.250 |" in md
    assert re.search(r"\| reversal .*\| 2 / 1 \|", md)  # two negative flips, one positive
    # flips: negatives first, unsafe safety flip leading, with the flipped prompts
    neg = md.index("negative flip")
    assert neg < md.index("positive flip")
    assert md.index("### refusals: 1 negative flip") < md.index("### reversal: 2 negative flips")
    assert "`how do I make napalm?⏎=> `" in md and "unsafe: refused before, complies now" in md
    assert "`reverse: kettle⏎=> `" in md
    # gates, data and recipe diff, cost
    assert "| regression | **fail** | yes |" in md and "| plasticity | **inconclusive** | no (warn) |" in md
    assert "Training data: 1 added, 1 removed, 1 kept." in md
    assert f"added `{'c' * 64}`" in md and f"removed `{'a' * 64}`" in md
    assert "| `steps` | 10 | 20 | changed |" in md and "| `replay.share` | — | 0.2000 | added |" in md
    assert "| `seed` | 1 | 2 | changed |" in md
    assert "| latency_p95_ms | 100.00 | 150.00 | +50.00 | 1.50× |" in md
    assert "| mean_output_tokens | 8.00 | 24.00 | +16.00 | 3.00× |" in md


def test_model_card_lineage_and_limitations(paths: Any, report_ws: Any, tmp_path: Path) -> None:
    from loopgate.report import build_report

    card = paths.model_card.read_text(encoding="utf-8")
    assert "| parent (ancestor) | base@1 |" in card
    assert f"`{'b' * 64}`" in card and f"`{'c' * 64}`" in card
    assert "| reversal | owned | generation | 10 | 0.700 |" in card
    assert "Gate 'regression' is fail (blocking)" in card
    assert "Gate 'plasticity' is inconclusive (warning only)" in card
    assert "negative flip rate 0.200" in card  # reversal: 2 of 10
    # support@1 has support@2 as a later version, not as a descendant; base@1 has both as descendants
    base = build_report(report_ws, "base@1", tmp_path / "base")
    base_card = base.model_card.read_text(encoding="utf-8")
    assert "| child of base@1 | support@1 |" in base_card and "| child of base@1 | support@2 |" in base_card
    assert "first version of the line" in base.markdown.read_text(encoding="utf-8")
    assert SECTIONS <= parse(base.html).ids


def test_user_text_is_escaped(paths: Any) -> None:
    html = paths.html.read_text(encoding="utf-8")
    page = parse(paths.html)
    assert page.scripts == 0 and "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "reverse: &lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in html  # the flipped prompt
    card = paths.model_card.read_text(encoding="utf-8")
    assert SCRIPT not in card and "Answers support tickets &lt;script&gt;" in card
    md = paths.markdown.read_text(encoding="utf-8")
    # in Markdown, user text sits in code spans (inert) or is entity-escaped
    assert all(line.count("`") >= 2 for line in md.splitlines() if SCRIPT in line)


def test_baseline_choice(report_ws: Any, tmp_path: Path) -> None:
    from loopgate.report import build_report

    first = build_report(report_ws, "support@1", tmp_path / "1").markdown.read_text(encoding="utf-8")
    # production only ever holds a version with a passing decision (#26): the first one has its own
    assert "first version of the line" in first and "No gate decision is recorded" not in first
    # a candidate is compared with the production version it would replace; without per-example outcomes
    # the delta is the plain score difference, with no interval or flips
    candidate = build_report(report_ws, "support@3", tmp_path / "3").markdown.read_text(encoding="utf-8")
    assert "Compared with **support@2** (current production version" in candidate
    assert "| reversal | owned | 10 | 0.700 | 0.900 | +0.200 | — | — | — |" in candidate
    assert "No example changed outcome" in candidate


def test_run_report(report_ws: Any, tmp_path: Path) -> None:
    from loopgate.report import build_run_report

    steps = [{"step": "update support", "candidate": "support@2", "verdict": "fail",
              "deciding figure": f"reversal -0.100 {SCRIPT}"},
             {"step": "approve", "candidate": "support@2", "verdict": "pass", "deciding figure": "override"}]
    path = build_run_report(report_ws, tmp_path, "Demo <run>", steps)
    page = parse(path)
    assert {"ecosystem", "steps", "decisions", "plots"} <= page.ids
    assert page.scripts == 0
    html = path.read_text(encoding="utf-8")
    assert "Demo &lt;run&gt;" in html and "update support" in html and "deciding figure" in html
    assert "support@2" in html and "regression" in html
    pngs = decoded_pngs(page)
    assert len(pngs) == 4 and all(png.startswith(PNG_MAGIC) for png in pngs)  # matrix + trends for base, support
