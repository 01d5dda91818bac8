"""The report's document model (blocks) and its two renderers: self-contained HTML and markdown + files folder.

Blocks: ("h", level, text) | ("p", text) | Table | Figure | ("cards", title, [Card]) | ("triples", title, [Triple])
| ("details", summary, text). HTML embeds every image as a data:image/png;base64 URI, uses inline CSS and no
script or external URL.
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from uae_eval.results import ResultsError, utc_now


class ReportError(ResultsError):
    """Bad report request (unknown output type, no results, unreadable headline). One line for users."""


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    title: str = ""
    bold: set = field(default_factory=set)  # {(row, col)}
    cls: dict = field(default_factory=dict)  # {(row, col): css class}, e.g. "sig" / "ns" / "worse" in the headline
    css: str = ""  # class of the whole <table>
    note: str = ""  # a line under the table


@dataclass
class Figure:
    png: bytes
    alt: str


@dataclass
class Card:
    title: str
    ok: bool | None  # True correct, False incorrect, None unknown
    decision: str
    lines: list[tuple[str, str]]
    png: bytes | None = None


@dataclass
class Triple:
    """One reconstruction: original | caption (+ per-sample scores) | reconstruction."""
    title: str
    original: bytes | None
    caption: str
    scores: list[tuple[str, str]]
    reconstruction: bytes | None


Block = tuple

CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#1f2328;max-width:1400px}
h1{font-size:1.6em}h2{border-bottom:1px solid #d0d7de;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}caption{text-align:left;font-weight:600;padding:4px 0}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:right}th{background:#f6f8fa}
td:first-child,th:first-child{text-align:left}img.plot{max-width:100%;display:block;margin:8px 0 24px}
table.headline{font-size:15px}table.headline td{text-align:left;vertical-align:top;white-space:pre-line}
td.warn{background:#fff8c5;color:#7d4e00;font-weight:600}
td.sig{background:#dafbe1;color:#116329;font-weight:600}td.worse{background:#ffebe9;color:#a40e26;font-weight:600}
td.ns{background:#f6f8fa;color:#57606a}p.note{font-size:12px;color:#57606a;margin:-8px 0 16px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:12px}
.card{border:1px solid #d0d7de;border-radius:6px;padding:8px;font-size:12px;overflow-wrap:anywhere}
.card img{width:160px;height:160px;object-fit:contain;image-rendering:pixelated;background:#eee;display:block;margin:0 auto 6px}
.ok{border-left:5px solid #1a7f37}.bad{border-left:5px solid #cf222e}.unk{border-left:5px solid #8c959f}
.badge{display:inline-block;padding:1px 6px;border-radius:10px;color:#fff;font-weight:600}
.ok .badge{background:#1a7f37}.bad .badge{background:#cf222e}.unk .badge{background:#8c959f}
table.triples td,table.triples th{vertical-align:top;text-align:left}table.triples td.cap{max-width:520px;font-size:12px;overflow-wrap:anywhere}
table.triples img{width:160px;height:160px;object-fit:contain;image-rendering:pixelated;background:#eee;display:block}
.k{color:#57606a}pre{background:#f6f8fa;padding:8px;overflow:auto;font-size:12px}"""


def _esc(s) -> str:
    return html.escape(str(s), quote=True)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _html_table(b: Table) -> list[str]:
    attr = f" class=\"{b.css}\"" if b.css else ""
    out = [f"<table{attr}>" + (f"<caption>{_esc(b.title)}</caption>" if b.title else "")]
    out.append("<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in b.headers) + "</tr>")
    for ri, row in enumerate(b.rows):
        cells = []
        for ci, c in enumerate(row):
            cls = b.cls.get((ri, ci))
            td = f"<td class=\"{cls}\">" if cls else "<td>"
            cells.append(f"{td}<b>{_esc(c)}</b></td>" if (ri, ci) in b.bold else f"{td}{_esc(c)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    if b.note:
        out.append(f"<p class=\"note\">{_esc(b.note)}</p>")
    return out


def render_html(title: str, blocks: list[Block]) -> str:
    out = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_esc(title)}</title>",
           f"<style>{CSS}</style></head><body>", f"<h1>{_esc(title)}</h1>",
           f"<p class=\"k\">generated {_esc(utc_now())} by uae report</p>"]
    for b in blocks:
        if isinstance(b, Table):
            out += _html_table(b)
        elif isinstance(b, Figure):
            out.append(f"<img class=\"plot\" alt=\"{_esc(b.alt)}\" src=\"{_data_uri(b.png)}\">")
        elif b[0] == "h":
            out.append(f"<h{b[1]}>{_esc(b[2])}</h{b[1]}>")
        elif b[0] == "p":
            out.append(f"<p>{_esc(b[1])}</p>")
        elif b[0] == "cards":
            out.append(f"<h3>{_esc(b[1])}</h3><div class=\"grid\">")
            for c in b[2]:
                cls = {True: "ok", False: "bad", None: "unk"}[c.ok]
                img = f"<img alt=\"sample {_esc(c.title)}\" src=\"{_data_uri(c.png)}\">" if c.png else ""
                body = "".join(f"<div><span class=\"k\">{_esc(k)}:</span> {_esc(v)}</div>" for k, v in c.lines)
                out.append(f"<div class=\"card {cls}\">{img}<div>{_esc(c.title)} <span class=\"badge\">"
                           f"{_esc(c.decision)}</span></div>{body}</div>")
            out.append("</div>")
        elif b[0] == "triples":
            out.append(f"<h3>{_esc(b[1])}</h3><table class=\"triples\">"
                       "<tr><th>original</th><th>caption</th><th>reconstruction</th></tr>")
            for t in b[2]:
                def img(png, what):
                    return (f"<img alt=\"{what} {_esc(t.title)}\" src=\"{_data_uri(png)}\">" if png
                            else f"<span class=\"k\">{what} missing</span>")
                scores = " · ".join(f"{_esc(k)} {_esc(v)}" for k, v in t.scores)
                out.append(f"<tr class=\"triple\"><td>{img(t.original, 'original')}</td><td class=\"cap\">"
                           f"<div class=\"k\">{_esc(t.title)}{' · ' + scores if scores else ''}</div>{_esc(t.caption)}</td>"
                           f"<td>{img(t.reconstruction, 'reconstruction')}</td></tr>")
            out.append("</table>")
        elif b[0] == "details":
            out.append(f"<details><summary>{_esc(b[1])}</summary><pre>{_esc(b[2])}</pre></details>")
    out.append("</body></html>\n")
    return "\n".join(out)


def _md_cell(s) -> str:
    return _esc(s).replace("|", "\\|").replace("\n", "<br>")


def render_markdown(title: str, blocks: list[Block], files: Path, rel: str) -> str:
    """Markdown text; PNGs go to `files` and are linked as `rel/NAME`."""
    files.mkdir(parents=True, exist_ok=True)
    n = 0

    def save(png: bytes, stem: str) -> str:
        nonlocal n
        n += 1
        (files / f"{stem}-{n:03d}.png").write_bytes(png)
        return f"{rel}/{stem}-{n:03d}.png"

    out = [f"# {_md_cell(title)}", "", f"_generated {utc_now()} by uae report_", ""]
    for b in blocks:
        if isinstance(b, Table):
            if b.title:
                out += [f"**{_md_cell(b.title)}**", ""]
            out.append("| " + " | ".join(_md_cell(h) for h in b.headers) + " |")
            out.append("|" + "|".join(":---" if i == 0 or b.css else "---:" for i in range(len(b.headers))) + "|")
            for ri, row in enumerate(b.rows):
                out.append("| " + " | ".join(f"**{_md_cell(c)}**" if (ri, ci) in b.bold else _md_cell(c)
                                             for ci, c in enumerate(row)) + " |")
            out.append("")
            if b.note:
                out += [f"_{_md_cell(b.note)}_", ""]
        elif isinstance(b, Figure):
            out += [f"![{_md_cell(b.alt)}]({save(b.png, 'plot')})", ""]
        elif b[0] == "h":
            out += ["#" * b[1] + " " + _md_cell(b[2]), ""]
        elif b[0] == "p":
            out += [_md_cell(b[1]), ""]
        elif b[0] == "cards":
            out += [f"### {_md_cell(b[1])}", "", "| image | decision | details |", "|:---:|:---|:---|"]
            for c in b[2]:
                mark = {True: "✅", False: "❌", None: "•"}[c.ok]
                img = f"<img src=\"{save(c.png, 'sample')}\" width=\"128\">" if c.png else ""
                body = "<br>".join(f"{_md_cell(k)}: {_md_cell(v)}" for k, v in c.lines)
                out.append(f"| {img} | {mark} {_md_cell(c.decision)} {_md_cell(c.title)} | {body} |")
            out.append("")
        elif b[0] == "triples":
            out += [f"### {_md_cell(b[1])}", "", "| original | caption | reconstruction |", "|:---:|:---|:---:|"]
            for t in b[2]:
                orig = f"<img src=\"{save(t.original, 'sample')}\" width=\"128\">" if t.original else "missing"
                rec = f"<img src=\"{save(t.reconstruction, 'sample')}\" width=\"128\">" if t.reconstruction else "missing"
                scores = ", ".join(f"{k} {v}" for k, v in t.scores)
                out.append(f"| {orig} | {_md_cell(t.title)}{' (' + _md_cell(scores) + ')' if scores else ''}: "
                           f"{_md_cell(t.caption)} | {rec} |")
            out.append("")
        elif b[0] == "details":
            out += [f"<details><summary>{_esc(b[1])}</summary>", "", "```json", b[2], "```", "", "</details>", ""]
    return "\n".join(out) + "\n"
