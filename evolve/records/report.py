"""The campaign report: what each round tried, what was kept, where runs failed, and what was learned.

It is for a person looking at a campaign after (or during) the fact, rebuilt from the ledger's RoundRecords.
It comes as markdown (for the repository and a terminal) and as one self-contained HTML page (for a browser).
The search tree (records/tree.py) shows which round each round's edit was made on; a workload may add sections
of its own (WORKLOAD_SECTIONS: a competition's final medal, records/medal.py).
The objective plot is inline SVG written as text: no plotting dependency to install on a training box, and the
page opens offline (attached to an MLflow run, mailed, copied off a cluster) with nothing to fetch and no script.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from evolve.campaign.spec import better
from evolve.files import write_atomic
from evolve.records.ledger import RoundRecord
from evolve.records.lessons import describe_proposal
from evolve.records.tree import nested_ul, phase, walk

if TYPE_CHECKING:
    from evolve.campaign.spec import CampaignSpec

Section = tuple[str, list[str]]  # a title and its lines, written as a list in both formats

MAX_LESSONS = 20
_HEADERS = ("round", "commit", "change", "status", "kind", "objective", "verdict", "wall time")
_LEGEND = ("green dot: kept · grey ring: reverted · red cross: crashed or no objective (drawn at the bottom) "
           "· line: best kept objective so far")
_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}td{vertical-align:top}figure{margin:1em 0}svg{max-width:100%;height:auto}
figcaption{color:#666;font-size:.9em}ul.tree,ul.tree ul{padding-left:1.4em}"""
_TREE_NOTE = "Each round under the round its edit was made on; the top level was built on the start."


# ---------------------------------------------------------------------------------------- facts

def _check_mode(mode: str) -> None:
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")


def _value(r: RoundRecord) -> float | None:
    # a NaN or inf objective can be neither ranked nor plotted: it counts as no objective
    x = r.objective
    return float(x) if x is not None and math.isfinite(x) else None


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.4g}"


def _duration(seconds: float) -> str:
    h, rem = divmod(int(round(max(seconds, 0.0))), 3600)
    m, s = divmod(rem, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def _ordered(records: list[RoundRecord]) -> list[RoundRecord]:
    return sorted(records, key=lambda r: r.round)


def _best(records: list[RoundRecord], mode: str) -> tuple[RoundRecord | None, bool]:
    """The best round, and whether it was kept (with no keep at all, the best over every scored round)."""
    scored = [r for r in _ordered(records) if _value(r) is not None]
    kept = [r for r in scored if r.verdict == "keep"]
    best: RoundRecord | None = None
    for r in kept or scored:
        if best is None or better(_value(r), _value(best), mode):  # strict: ties go to the round that got there
            best = r
    return best, bool(kept)


def _summary(records: list[RoundRecord], metric: str, mode: str) -> list[str]:
    rs = _ordered(records)
    counts = Counter(r.verdict for r in rs)
    best, kept = _best(rs, mode)
    best_text = "none" if best is None else f"{_num(_value(best))} at round {best.round}"
    if best is not None and not kept:
        best_text += " (no round was kept; best over all rounds)"
    return [
        f"Rounds: {len(rs)} ({counts['keep']} keep, {counts['revert']} revert, {counts['crash']} crash)",
        f"Best {metric} ({mode}): {best_text}",
        f"Starting {metric}: {_num(_value(rs[0])) if rs else 'none'}",
        f"Total run wall time: {_duration(sum(r.wall_s for r in rs))}",
    ]


def _change(r: RoundRecord) -> str:
    return describe_proposal(r.proposal)


def _rows(records: list[RoundRecord]) -> list[list[str]]:
    return [[str(r.round), r.commit[:8], _change(r), r.status, r.kind, _num(_value(r)), r.verdict,
             _duration(r.wall_s)] for r in _ordered(records)]


def _failures(records: list[RoundRecord]) -> list[tuple[str, int]]:
    counts = Counter(r.kind or "unknown" for r in records if r.kind != "healthy")
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _node(r: RoundRecord) -> str:
    """A tree node's text: round · phase · proposal id · status/kind · objective · verdict."""
    run = f"{r.status}/{r.kind}" if r.kind else r.status
    return " · ".join([f"round {r.round}", *filter(None, [phase(r)]), str(r.proposal.get("id") or "—"), run,
                       _num(_value(r)), r.verdict])


def _tree(records: list[RoundRecord], mode: str) -> list[tuple[int, str, bool]]:
    """(depth, node text, whether it is the best round) in walk order."""
    best, _ = _best(records, mode)
    return [(depth, _node(r), best is not None and r.round == best.round) for depth, r in walk(records)]


def _lessons(records: list[RoundRecord]) -> list[str]:
    out = [f"round {r.round} ({r.verdict}): {(r.criticism or {}).get('lesson')}"
           for r in reversed(_ordered(records)) if (r.criticism or {}).get("lesson")]
    return out[:MAX_LESSONS]


# ---------------------------------------------------------------------------------------- markdown

def _md(text: str) -> str:
    # escape HTML as well: markdown viewers pass raw tags through, and a change or lesson may hold anything
    return " ".join(html.escape(str(text), quote=False).split()).replace("|", "\\|")


def _md_table(headers: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]


def render_markdown(records: list[RoundRecord], *, name: str, metric: str, mode: str = "max",
                    sections: Sequence[Section] = ()) -> str:
    _check_mode(mode)
    fails, lessons = _failures(records), _lessons(records)
    lines = [f"# Campaign report: {_md(name)}", ""] + [f"- {_md(s)}" for s in _summary(records, metric, mode)]
    for title, body in sections:
        lines += ["", f"## {_md(title)}", ""] + [f"- {_md(s)}" for s in body]
    lines += ["", "## Search tree", ""]
    lines += [_TREE_NOTE, ""] + [f"{'  ' * depth}- {_md(text)}" + (" · **best**" if best else "")
                                 for depth, text, best in _tree(records, mode)] if records else ["No rounds yet."]
    lines += ["", "## Rounds", ""] + (_md_table(_HEADERS, _rows(records)) if records else ["No rounds yet."])
    lines += ["", "## Failures by kind", ""]
    lines += _md_table(("kind", "count"), [[k, str(n)] for k, n in fails]) if fails else ["No failures."]
    lines += ["", "## Lessons (newest first)", ""] + ([f"- {_md(s)}" for s in lessons] or ["No lessons yet."])
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------- SVG plot

def _h(text: object) -> str:
    return html.escape(str(text), quote=True)  # valid for both XML and HTML


def _nice_step(span: float, count: int) -> float:
    raw = span / count
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 5, 10) if raw <= m * mag * (1 + 1e-9))


def _y_ticks(lo: float, hi: float) -> tuple[list[float], int]:
    """Round tick values inside [lo, hi], and how many decimals tell them apart."""
    step = _nice_step(hi - lo, 5)
    first = math.ceil(lo / step - 1e-9)
    ticks = [(first + i) * step + 0.0 for i in range(int((hi - lo) / step) + 2)]
    return [t for t in ticks if t <= hi + step * 1e-9], max(0, -math.floor(math.log10(step) + 1e-9))


def _y_range(values: list[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 1.0
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 or abs(lo) * 0.1 or 1.0  # equal values would make a zero-height axis
    return lo - pad, hi + pad


def _best_steps(rs: list[RoundRecord], mode: str) -> list[tuple[float, float]]:
    pts: list[tuple[float, float]] = []
    best: float | None = None
    for r in rs:
        v = _value(r)
        if r.verdict == "keep" and v is not None and (best is None or better(v, best, mode)):
            if best is not None:
                pts.append((r.round, best))  # hold the old best up to the round that beat it: a step
            best = v
            pts.append((r.round, v))
    return pts + [(rs[-1].round, best)] if pts else pts


def _marker(r: RoundRecord, x: float, y: float | None, floor_y: float) -> str:
    v = _value(r)
    tip = f"<title>{_h(f'round {r.round}: {r.verdict}, {r.kind}, {_num(v)}')}</title>"
    if r.verdict == "crash" or y is None:
        y, d = floor_y, 5
        path = f"M{x - d:.1f},{y - d:.1f}L{x + d:.1f},{y + d:.1f}M{x - d:.1f},{y + d:.1f}L{x + d:.1f},{y - d:.1f}"
        return f'<g class="crash"><path d="{path}" stroke="#c62828" stroke-width="2.5"/>{tip}</g>'
    paint = 'fill="#2e7d32" stroke="#1b5e20"' if r.verdict == "keep" else 'fill="#fff" stroke="#888" stroke-width="1.5"'
    return f'<circle class="{_h(r.verdict)}" cx="{x:.1f}" cy="{y:.1f}" r="5" {paint}>{tip}</circle>'


def objective_svg(records: list[RoundRecord], *, metric: str, mode: str = "max", width: int = 720,
                  height: int = 320) -> str:
    _check_mode(mode)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{_h(metric)} by round" '
           'font-family="sans-serif" font-size="11">']
    rs = _ordered(records)
    if not rs:
        return out[0] + (f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" fill="#666">'
                         "no rounds yet</text></svg>")
    left, right, top, bottom = 64.0, width - 16.0, 16.0, height - 44.0
    x0, x1 = rs[0].round - 0.5, rs[-1].round + 0.5  # half a round of margin keeps markers off the frame
    y0, y1 = _y_range([v for r in rs if (v := _value(r)) is not None])

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (right - left)

    def py(y: float) -> float:
        return bottom - (y - y0) / (y1 - y0) * (bottom - top)

    out.append(f'<path d="M{left},{top}V{bottom}H{right}" fill="none" stroke="#444"/>')
    xstep = max(1, round(_nice_step(x1 - x0, 6)))
    for t in range(math.ceil(x0 / xstep) * xstep, math.floor(x1) + 1, xstep):
        out.append(f'<path d="M{px(t):.1f},{bottom}v4" stroke="#444"/><text x="{px(t):.1f}" y="{bottom + 16}" '
                   f'text-anchor="middle">{t}</text>')
    ticks, decimals = _y_ticks(y0, y1)
    for t in ticks:
        label = f"{t:.{decimals}f}" if decimals <= 6 and abs(t) < 1e7 else f"{t:.6g}"
        out.append(f'<path d="M{left - 4},{py(t):.1f}H{right}" stroke="#ddd"/><text x="{left - 7}" '
                   f'y="{py(t) + 4:.1f}" text-anchor="end">{_h(label)}</text>')
    out.append(f'<text x="{(left + right) / 2:.1f}" y="{height - 8}" text-anchor="middle">round</text>')
    out.append(f'<text transform="translate(14,{(top + bottom) / 2:.1f}) rotate(-90)" text-anchor="middle">'
               f"{_h(metric)} ({_h(mode)})</text>")
    steps = _best_steps(rs, mode)
    if steps:
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in steps)
        out.append(f'<polyline class="best" points="{points}" fill="none" stroke="#2e7d32" stroke-width="1.5"/>')
    for r in rs:
        v = _value(r)
        out.append(_marker(r, px(r.round), None if v is None else py(v), bottom - 8))
    return "\n".join(out + ["</svg>"])


# ---------------------------------------------------------------------------------------- HTML and files

def _html_table(headers: tuple[str, ...], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_h(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_h(c)}</td>" for c in row) + "</tr>\n" for row in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"


def _html_tree(records: list[RoundRecord], mode: str) -> str:
    if not records:
        return "<p>No rounds yet.</p>"
    items = [(depth, _h(text) + (" · <strong>best</strong>" if best else "")) for depth, text, best in
             _tree(records, mode)]
    return f"<p>{_h(_TREE_NOTE)}</p>\n" + nested_ul(items)


def render_html(records: list[RoundRecord], *, name: str, metric: str, mode: str = "max",
                sections: Sequence[Section] = ()) -> str:
    _check_mode(mode)
    fails, lessons = _failures(records), _lessons(records)
    extra = [f"<h2>{_h(title)}</h2>\n<ul>\n" + "".join(f"<li>{_h(s)}</li>\n" for s in body) + "</ul>"
             for title, body in sections]
    parts = [
        "<!doctype html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>Campaign report: {_h(name)}</title>", f"<style>\n{_CSS}\n</style>", "</head>", "<body>",
        f"<h1>Campaign report: {_h(name)}</h1>",
        "<ul>\n" + "".join(f"<li>{_h(s)}</li>\n" for s in _summary(records, metric, mode)) + "</ul>", *extra,
        "<figure>", objective_svg(records, metric=metric, mode=mode), f"<figcaption>{_h(_LEGEND)}</figcaption>",
        "</figure>",
        "<h2>Search tree</h2>", _html_tree(records, mode),
        "<h2>Rounds</h2>", _html_table(_HEADERS, _rows(records)) if records else "<p>No rounds yet.</p>",
        "<h2>Failures by kind</h2>",
        _html_table(("kind", "count"), [[k, str(n)] for k, n in fails]) if fails else "<p>No failures.</p>",
        "<h2>Lessons (newest first)</h2>",
        "<ul>\n" + "".join(f"<li>{_h(s)}</li>\n" for s in lessons) + "</ul>" if lessons else "<p>No lessons yet.</p>",
        "</body>", "</html>",
    ]
    return "\n".join(parts) + "\n"


def write_report(records: list[RoundRecord], out_dir: str | Path, *, name: str, metric: str,
                 mode: str = "max", sections: Sequence[Section] = ()) -> tuple[Path, Path]:
    """Write out_dir/report.md and out_dir/report.html; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, page = out / "report.md", out / "report.html"
    write_atomic(md, render_markdown(records, name=name, metric=metric, mode=mode, sections=sections))
    write_atomic(page, render_html(records, name=name, metric=metric, mode=mode, sections=sections))
    return md, page


# ---------------------------------------------------------------------------------------- workload sections

def _medal(spec: CampaignSpec, best: RoundRecord | None, run_dir: Callable[[int], Path]) -> list[str]:
    from evolve.records.medal import medal_lines  # the graders are imported only for a competition's report

    return medal_lines(spec, best, run_dir)


# what a workload adds to its campaign's report, by workload kind: a section's title and the function of its
# lines (spec, the best round, round n → its run directory); a kind without a row adds nothing
WORKLOAD_SECTIONS: dict[str, tuple[str, Callable[..., list[str]]]] = {"competition": ("Final medal", _medal)}


def workload_sections(spec: CampaignSpec, records: list[RoundRecord],
                      run_dir: Callable[[int], Path]) -> list[Section]:
    if spec.workload.kind not in WORKLOAD_SECTIONS:
        return []
    title, lines = WORKLOAD_SECTIONS[spec.workload.kind]
    return [(title, lines(spec, _best(records, spec.objective.mode)[0], run_dir))]
