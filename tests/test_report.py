"""The campaign report: markdown and HTML carry the same facts, escaped, with a well-formed inline SVG plot."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from evolve.records.ledger import RoundRecord
from evolve.records.report import objective_svg, render_html, render_markdown, write_report


def rec(n: int, verdict: str = "keep", objective: float | None = 0.5, kind: str = "healthy",
        changes: object = None, wall_s: float = 60.0, lesson: str | None = None) -> RoundRecord:
    proposal = {"id": f"p{n}", "hypothesis": f"h{n}", "expected": "up", "source": "rules",
                "changes": [{"file": "train.yaml", "key": "rl.lr", "value": n}] if changes is None else changes}
    status = "failed" if verdict == "crash" else "succeeded"
    return RoundRecord(round=n, parent=f"parent{n}", commit=f"{n:02d}abcdef0123456789", proposal=proposal,
                       status=status, kind=kind, objective=objective, verdict=verdict,
                       criticism={"lesson": f"lesson {n}" if lesson is None else lesson}, wall_s=wall_s)


def campaign() -> list[RoundRecord]:
    return [rec(1, "keep", 0.40), rec(2, "revert", 0.35), rec(3, "crash", None, kind="nan_loss"),
            rec(4, "keep", 0.52), rec(5, "revert", 0.60, kind="router_collapse"),
            rec(6, "crash", None, kind="nan_loss"), rec(7, "keep", 0.30)]


def section(md: str, title: str) -> list[str]:
    body = md.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in body.splitlines() if line.strip()]


def markers(svg: str) -> dict[str, int]:
    root = ET.fromstring(svg)
    classes = [el.get("class") for el in root.iter()]
    return {c: classes.count(c) for c in ("keep", "revert", "crash")}


def test_markdown_has_one_row_per_round_in_order_and_the_counts():
    md = render_markdown(list(reversed(campaign())), name="demo", metric="accuracy")
    rows = section(md, "Rounds")[2:]  # after header and rule
    assert [r.split("|")[1].strip() for r in rows] == [str(n) for n in range(1, 8)]
    assert "# Campaign report: demo" in md
    assert "Rounds: 7 (3 keep, 2 revert, 2 crash)" in md
    assert "| 04abcdef |" in rows[3]  # commit cut to 8 characters
    assert "Starting accuracy: 0.4" in md
    assert "Total run wall time: 7m 00s" in md


def test_best_is_over_kept_rounds_for_max_and_min():
    md_max = render_markdown(campaign(), name="demo", metric="accuracy", mode="max")
    assert "Best accuracy (max): 0.52 at round 4" in md_max  # round 5's 0.60 was reverted
    md_min = render_markdown(campaign(), name="demo", metric="loss", mode="min")
    assert "Best loss (min): 0.3 at round 7" in md_min  # round 2's 0.35 was reverted, 0.3 was kept


def test_best_without_a_keep_says_so_and_none_without_objective():
    md = render_markdown([rec(1, "revert", 0.2), rec(2, "revert", 0.7)], name="d", metric="m")
    assert "Best m (max): 0.7 at round 2 (no round was kept" in md
    md = render_markdown([rec(1, "crash", None)], name="d", metric="m")
    assert "Best m (max): none" in md


def test_objective_and_wall_time_formatting():
    md = render_markdown([rec(1, "keep", 0.123456, wall_s=723.4), rec(2, "crash", None, wall_s=3600)],
                         name="d", metric="m")
    rows = section(md, "Rounds")[2:]
    assert "| 0.1235 |" in rows[0] and "| 12m 03s |" in rows[0]
    assert "| — |" in rows[1] and "| 1h 00m 00s |" in rows[1]


def test_failures_by_kind_are_counted_and_sorted():
    md = render_markdown(campaign(), name="demo", metric="accuracy")
    assert section(md, "Failures by kind")[2:] == ["| nan_loss | 2 |", "| router_collapse | 1 |"]
    healthy = render_markdown([rec(1), rec(2, "revert", 0.1)], name="d", metric="m")
    assert section(healthy, "Failures by kind") == ["No failures."]
    assert "<td>nan_loss</td><td>2</td>" in render_html(campaign(), name="demo", metric="accuracy")


def test_lessons_are_newest_first_and_capped():
    md = render_markdown([rec(n, "revert", 0.1) for n in range(1, 26)], name="d", metric="m")
    lessons = section(md, "Lessons (newest first)")
    assert len(lessons) == 20
    assert lessons[0] == "- round 25 (revert): lesson 25" and lessons[-1].startswith("- round 6 ")


def test_hostile_change_text_is_escaped():
    bad = "a|b <script>alert(1)</script>"
    records = [rec(1, changes={"note": bad}, lesson=bad), rec(2, "revert", 0.1, kind="<b>odd</b>")]
    md = render_markdown(records, name="x|<i>", metric="m")
    assert "<script>" not in md and "<b>" not in md
    assert "note=a\\|b &lt;script&gt;" in md
    assert all(line.count("|") - line.count("\\|") == 9 for line in section(md, "Rounds"))  # no extra cell
    page = render_html(records, name="x|<i>", metric="<m>")
    assert "<script" not in page and "<b>odd" not in page and "<i>" not in page
    assert "note=a|b &lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_change_falls_back_to_the_proposal_id():
    md = render_markdown([rec(1, changes=[])], name="d", metric="m")
    assert "| p1 |" in section(md, "Rounds")[2]


def test_svg_parses_and_has_one_marker_per_round_by_verdict():
    svg = objective_svg(campaign(), metric="accuracy")
    assert markers(svg) == {"keep": 3, "revert": 2, "crash": 2}
    root = ET.fromstring(svg)
    titles = [el.text for el in root.iter() if el.tag.endswith("title")]
    assert "round 3: crash, nan_loss, —" in titles and "round 4: keep, healthy, 0.52" in titles
    assert any(el.get("class") == "best" for el in root.iter())


def test_a_round_without_objective_is_drawn_as_a_cross_even_if_not_a_crash():
    assert markers(objective_svg([rec(1), rec(2, "revert", None)], metric="m")) == {"keep": 1, "revert": 0,
                                                                                   "crash": 1}


@pytest.mark.parametrize("records", [
    [],
    [rec(1)],
    [rec(1, "crash", None), rec(2, "revert", None)],
    [rec(1, "keep", 0.5), rec(2, "revert", 0.5), rec(3, "keep", 0.5)],
    [rec(1, "keep", 0.0), rec(2, "revert", 0.0)],
    [rec(1, "keep", float("nan")), rec(2, "keep", 1e9), rec(3, "revert", 1e9 + 1e-3)],
], ids=["empty", "one", "all-none", "all-equal", "all-zero", "nan-and-huge"])
def test_svg_edge_cases_are_well_formed(records):
    for mode in ("max", "min"):
        svg = objective_svg(records, metric="a<b", mode=mode, width=400, height=200)
        root = ET.fromstring(svg)
        assert root.tag.endswith("svg") and "nan" not in svg.lower() and "inf" not in svg.lower()
        assert sum(markers(svg).values()) == len(records)
    if not records:
        assert "no rounds yet" in objective_svg(records, metric="m")


def test_bad_mode_is_refused():
    with pytest.raises(ValueError, match="mode"):
        render_markdown(campaign(), name="d", metric="m", mode="best")


def test_write_report_writes_both_files(tmp_path):
    md_path, html_path = write_report(campaign(), tmp_path / "out", name="demo", metric="accuracy")
    assert (md_path, html_path) == (tmp_path / "out" / "report.md", tmp_path / "out" / "report.html")
    assert md_path.read_text(encoding="utf-8") == render_markdown(campaign(), name="demo", metric="accuracy")
    page = html_path.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert "<svg" in page and "</svg>" in page and "<script" not in page.lower()
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing to fetch
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.html", "report.md"]  # no temp left
    write_report([], tmp_path / "out", name="demo", metric="accuracy")  # overwrites in place
    assert "No rounds yet." in md_path.read_text(encoding="utf-8")
