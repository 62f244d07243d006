"""The performance page's chart, drawn from benchmarks/RESULTS.md: one SVG per language
(docs/assets/performance-en.svg, -zh.svg), written by hand so that the docs need nothing more.

Two panels: the logins each way of trading codes keeps through the WeChat browser's double
callback (section "Against the alternatives"), and what a login costs (section "Login
throughput"). The SVGs are committed; tests/test_docs.py checks that they are what this script
makes of the committed RESULTS.md, so after `python benchmarks/run_all.py` run this too:

    python benchmarks/chart.py            # writes the SVGs
    python benchmarks/chart.py --check    # exits 1 if they are out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
ASSETS = ROOT / "docs" / "assets"
LANGUAGES = ("en", "zh")

WIDTH = 760
FONT = "system-ui, -apple-system, 'Segoe UI', 'PingFang SC', 'Noto Sans CJK SC', sans-serif"
#: The variants' colours: the alternatives warm, the middleware cool.
COLOURS = {
    "naive": "#c0392b",
    "lock+dict": "#e67e22",
    "middleware, memory": "#2e8b57",
    "middleware, redis": "#1f6f8b",
    "bare httpx exchange": "#8c8c8c",
}

TEXT = {
    "en": {
        "title": "asgi-wechat-oauth: benchmarks",
        "kept": "Logins kept through the WeChat browser's double callback",
        "kept_note": "{logins} logins per row; callback #1 aborted, #2 sent 19 ms after it",
        "latency": "WeChat's latency per exchange",
        "share": "logins kept",
        "cost": "Time per login (µs, lower is better)",
        "cost_note": "distinct codes, {concurrency} at a time, in-process emulator, asyncio",
        "source": "From benchmarks/RESULTS.md: {machine}",
        "names": {
            "naive": "naive (trade the code in the handler)",
            "lock+dict": "lock + dict (one process)",
            "middleware, memory": "middleware, MemoryBackend",
            "middleware, redis": "middleware, RedisBackend (2 workers)",
            "bare httpx exchange": "the exchange alone (bare httpx)",
        },
    },
    "zh": {
        "title": "asgi-wechat-oauth：性能测试",
        "kept": "微信浏览器重复回调时，保住了多少次登录",
        "kept_note": "每行 {logins} 次登录；第一次回调被中断，19 ms 后发出第二次",
        "latency": "微信每次兑换的延迟",
        "share": "保住的登录",
        "cost": "每次登录的耗时（µs，越低越好）",
        "cost_note": "各不相同的 code，并发 {concurrency}，进程内模拟器，asyncio",
        "source": "数据来自 benchmarks/RESULTS.md：{machine}",
        "names": {
            "naive": "朴素写法（在处理函数里兑换 code）",
            "lock+dict": "锁 + 字典（单进程）",
            "middleware, memory": "中间件，MemoryBackend",
            "middleware, redis": "中间件，RedisBackend（2 个 worker）",
            "bare httpx exchange": "仅兑换本身（直接用 httpx）",
        },
    },
}


# --- reading RESULTS.md ------------------------------------------------------------------------


def section(text: str, title: str) -> str:
    """The body of the ``## ...`` section whose heading contains ``title``."""
    for part in re.split(r"^## ", text, flags=re.M)[1:]:
        heading, _, body = part.partition("\n")
        if title in heading:
            return body
    raise ValueError(f"RESULTS.md has no section {title!r}")


def tables(text: str) -> list[list[dict[str, str]]]:
    """The fixed-width tables of ``text`` (a header line, a line of dashes, rows up to a blank
    line), each as a list of rows keyed by the header's names."""
    lines = text.splitlines()
    found = []
    for index in range(1, len(lines)):
        rule = lines[index]
        if not re.fullmatch(r"-+( +-+)+", rule):
            continue
        spans = [match.span() for match in re.finditer(r"-+", rule)]
        # A column reaches from the end of the previous one: right-aligned cells overhang
        # their dashes on the left.
        bounds = [(spans[i - 1][1] if i else 0, end) for i, (_, end) in enumerate(spans)]
        bounds[-1] = (bounds[-1][0], max(len(line) for line in lines))

        def cells(line: str) -> list[str]:
            return [line[start:end].strip() for start, end in bounds]  # noqa: B023

        header = cells(lines[index - 1])
        rows = []
        for line in lines[index + 1 :]:
            if not line.strip():
                break
            rows.append(dict(zip(header, cells(line), strict=True)))
        found.append(rows)
    return found


def table_with(text: str, column: str) -> list[dict[str, str]]:
    for rows in tables(text):
        if rows and column in rows[0]:
            return rows
    raise ValueError(f"no table with a column {column!r}")


def read(results: str) -> dict[str, object]:
    """What the chart shows, from the text of RESULTS.md."""
    machine = re.search(r"^- Machine: (.+?)(?:, Linux|;|$)", results, re.M)
    alternatives = section(results, "Against the alternatives")
    kept = table_with(alternatives, "share")
    throughput = section(results, "Login throughput")
    costs = table_with(throughput, "µs/login")
    setup = re.search(r"x (\d+) logins per variant, (\d+) at a time", throughput)
    per_row = re.search(r"(\d+) logins per row", alternatives)
    return {
        "machine": machine.group(1) if machine else "",
        "kept": [
            (row["variant"], int(row["latency ms"]), float(row["share"].rstrip("%")))
            for row in kept
        ],
        "logins": per_row.group(1) if per_row else "",
        "costs": [(row["variant"], float(row["µs/login"])) for row in costs],
        "concurrency": setup.group(2) if setup else "",
    }


# --- drawing -----------------------------------------------------------------------------------


def _text(
    x: float,
    y: float,
    text: str,
    *,
    size: int = 13,
    anchor: str = "start",
    weight: str = "normal",
    fill: str = "#222",
    turned: bool = False,
) -> str:
    """A line of text at ``(x, y)``; ``turned``: read bottom to top (an axis title)."""
    turn = f' transform="rotate(-90 {x:g} {y:g})"' if turned else ""
    return (
        f'<text x="{x:g}" y="{y:g}"{turn} font-size="{size}" text-anchor="{anchor}" '
        f'font-weight="{weight}" fill="{fill}">{escape(text)}</text>'
    )


def _rect(x: float, y: float, width: float, height: float, fill: str) -> str:
    return f'<rect x="{x:g}" y="{y:g}" width="{width:g}" height="{height:g}" fill="{fill}"/>'


def _name(words: dict[str, object], variant: str) -> str:
    names = words["names"]
    assert isinstance(names, dict)
    return str(names.get(variant, variant))


def render(results: str, language: str) -> str:
    """The SVG for ``language`` (``en`` or ``zh``) from the text of RESULTS.md."""
    data = read(results)
    words = TEXT[language]
    parts: list[str] = []
    y = 34.0
    parts.append(_text(24, y, str(words["title"]), size=18, weight="bold"))

    # Panel 1: share of logins kept, grouped by WeChat's latency.
    kept = data["kept"]
    assert isinstance(kept, list)
    variants = list(dict.fromkeys(variant for variant, _, _ in kept))
    latencies = list(dict.fromkeys(latency for _, latency, _ in kept))
    y += 34
    parts.append(_text(24, y, str(words["kept"]), size=15, weight="bold"))
    y += 20
    note = str(words["kept_note"]).format(logins=data["logins"])
    parts.append(_text(24, y, note, size=12, fill="#555"))
    y += 16
    for index, variant in enumerate(variants):  # the legend, two to a line
        column, line = index % 2, index // 2
        lx, ly = 24 + column * 360, y + 8 + line * 20
        parts.append(_rect(lx, ly - 10, 12, 12, COLOURS.get(variant, "#999")))
        parts.append(_text(lx + 18, ly, _name(words, variant), size=12))
    y += 8 + 20 * ((len(variants) + 1) // 2) + 6
    left, plot_width, plot_height = 70.0, WIDTH - 70.0 - 24, 170.0
    top, bottom = y, y + plot_height
    for percent in (0, 25, 50, 75, 100):
        gy = bottom - plot_height * percent / 100
        parts.append(
            f'<line x1="{left:g}" y1="{gy:g}" x2="{left + plot_width:g}" y2="{gy:g}" '
            f'stroke="{"#999" if percent == 0 else "#e3e3e3"}" stroke-width="1"/>'
        )
        parts.append(_text(left - 8, gy + 4, f"{percent}%", size=11, anchor="end", fill="#555"))
    middle = top + plot_height / 2
    share_title = str(words["share"])
    parts.append(_text(20, middle, share_title, size=11, anchor="middle", fill="#555", turned=True))
    group_width = plot_width / len(latencies)
    bar_width = min(48.0, (group_width - 40) / len(variants))
    for group, latency in enumerate(latencies):
        start = left + group * group_width + (group_width - bar_width * len(variants)) / 2
        for index, variant in enumerate(variants):
            share = next(s for v, lat, s in kept if v == variant and lat == latency)
            height = plot_height * share / 100
            bx = start + index * bar_width
            parts.append(
                _rect(bx + 2, bottom - height, bar_width - 4, height, COLOURS.get(variant, "#999"))
            )
            parts.append(
                _text(bx + bar_width / 2, bottom - height - 5, f"{share:g}%", anchor="middle")
            )
        centre = left + (group + 0.5) * group_width
        parts.append(_text(centre, bottom + 20, f"{latency} ms", size=12, anchor="middle"))
    latency_title = str(words["latency"])
    parts.append(_text(left + plot_width / 2, bottom + 40, latency_title, size=12, anchor="middle"))
    y = bottom + 78

    # Panel 2: time per login, horizontal bars.
    costs = data["costs"]
    assert isinstance(costs, list)
    parts.append(_text(24, y, str(words["cost"]), size=15, weight="bold"))
    y += 20
    note = str(words["cost_note"]).format(concurrency=data["concurrency"])
    parts.append(_text(24, y, note, size=12, fill="#555"))
    y += 14
    label_width, bar_left = 290.0, 24 + 290.0 + 8
    longest = max(value for _, value in costs)
    scale = (WIDTH - bar_left - 90) / longest
    for variant, value in costs:
        y += 28
        parts.append(_text(24 + label_width, y, _name(words, variant), size=12, anchor="end"))
        parts.append(_rect(bar_left, y - 13, value * scale, 18, COLOURS.get(variant, "#999")))
        parts.append(_text(bar_left + value * scale + 6, y, f"{value:g} µs", size=12))
    y += 34
    source = str(words["source"]).format(machine=data["machine"])
    parts.append(_text(24, y, source, size=11, fill="#777"))
    height = y + 16

    title = escape(str(words["title"]))
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height:g}" '
            f'width="{WIDTH}" height="{height:g}" role="img" aria-label="{title}" '
            f'font-family="{FONT}">',
            f"<title>{title}</title>",
            f'<rect width="{WIDTH}" height="{height:g}" fill="#fff"/>',
            *parts,
            "</svg>",
            "",
        ]
    )


def path(language: str) -> Path:
    return ASSETS / f"performance-{language}.svg"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the SVGs are stale")
    args = parser.parse_args(argv)
    results = RESULTS.read_text(encoding="utf-8")
    stale = []
    for language in LANGUAGES:
        svg = render(results, language)
        target = path(language)
        if args.check:
            current = target.read_text(encoding="utf-8") if target.exists() else None
            if current != svg:
                stale.append(target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(svg, encoding="utf-8")
            print(f"wrote {target.relative_to(ROOT)}")
    for target in stale:
        print(f"{target.relative_to(ROOT)} is out of date: run python benchmarks/chart.py")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
