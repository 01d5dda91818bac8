"""Reports: metric tables (one column per run), plots, escaped sample grid, self-contained HTML, markdown files."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from uae_eval.report import (METRIC_TABLES, ReportError, build_report, generic_tables, pick_samples, sample_ok,
                             tables_for)
from uae_eval.results import Results, write_results

REASON = 'expected 2 <b>"cats"</b> & found <script>alert(1)</script>'
TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")


def geneval_run(folder: Path, name: str, step: int, scale: float) -> Path:
    (folder / "images").mkdir(parents=True)
    samples = []
    for i in range(4):
        Image.new("RGB", (32, 32), (60 * i, 255 - 60 * i, 90)).save(folder / "images" / f"{i}.png")
        ok = i % 2 == 1
        samples.append({"prompt": f"a photo of {i} circles", "tag": "counting", "image": f"images/{i}.png",
                        "decision": "correct" if ok else "incorrect", "reason": "ok" if ok else REASON})
    samples.append({"prompt": "lost", "decision": "incorrect", "reason": "gone", "image": "images/missing.png"})
    metrics = {t: round(scale * (k + 1) / 7, 4) for k, t in enumerate(TAGS)}
    metrics["overall"] = round(sum(metrics.values()) / 6, 4)
    metrics["images_correct"] = 0.5
    write_results(folder, Results(
        benchmark="geneval", benchmark_version="geneval@af4902f", model={"name": name, "path": None, "config": {}},
        metrics=metrics, primary_metric="overall", higher_is_better=True, n_items=len(samples), step=step,
        config={"seed": 123456789}, extra={"official_compatible": False,
                                           "curves": {"alignment": {"x": [0, 1, 2], "y": [0.1, 0.5 * scale, "inf"]}}},
    ), samples)
    return folder


def mmt_run(folder: Path) -> Path:
    metrics = {"overall": 0.41, "category/counting": 0.55, "category/colour": 0.66,
               "l2-category/visual recognition": 0.77}
    write_results(folder, Results(
        benchmark="mmt-bench", benchmark_version="MMT-Bench_VAL", model={"name": "tiny-vlm", "path": None, "config": {}},
        metrics=metrics, primary_metric="overall", higher_is_better=True, n_items=2),
        [{"question": "How many circles?", "answer": "B", "prediction": "C", "decision": "incorrect",
          "reason": "picked C"}, {"question": "Colour?", "answer": "A", "prediction": "A", "decision": "correct"}])
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("runs")
    return [geneval_run(root / "a", "scene-oracle", 100, 1.0), geneval_run(root / "b", "scene-oracle", 200, 0.9),
            mmt_run(root / "m")]


@pytest.fixture(scope="module")
def html(runs, tmp_path_factory) -> str:
    out = build_report(runs, tmp_path_factory.mktemp("rep") / "report.html")
    return out.read_text()


def table_after(html: str, caption: str) -> str:
    i = html.index(f"<caption>{caption}</caption>")
    return html[i:html.index("</table>", i)]


@pytest.mark.unit
def test_html_holds_metric_values_with_one_column_per_run(html):
    t = table_after(html, "GenEval tags and overall")
    assert "<th>scene-oracle @100</th>" in t and "<th>scene-oracle @200</th>" in t
    for tag in TAGS + ("overall",):
        assert f"<td>{tag}</td>" in t
    assert "0.4286" in t and "0.3857" in t  # counting = 3/7 and 0.9 * 3/7
    assert "<b>0.4286</b>" in t  # best per row in bold


@pytest.mark.unit
def test_summary_has_one_row_per_run_with_provenance(html):
    t = table_after(html, "Runs")
    assert t.count("<tr>") == 4
    assert "mmt-bench" in t and "tiny-vlm" in t and "overall" in t and "MMT-Bench_VAL" in t


@pytest.mark.unit
def test_mmt_like_metrics_are_grouped_into_category_tables(html):
    assert "0.5500" in table_after(html, "category")
    assert "0.7700" in table_after(html, "l2-category")
    assert "category/counting" not in table_after(html, "metrics")


@pytest.mark.unit
def test_reason_text_is_escaped(html):
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;b&gt;&quot;cats&quot;&lt;/b&gt;" in html


@pytest.mark.unit
def test_html_is_self_contained_with_embedded_images_and_plots(html):
    srcs = re.findall(r'<img[^>]*src="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r'(src|href)="(https?:)?//', html) and "<link" not in html and "<script" not in html
    alts = re.findall(r'<img class="plot" alt="([^"]*)"', html)
    assert any("bar chart" in a for a in alts)
    assert any("over steps" in a for a in alts)  # two runs carry step
    assert any("curve alignment" in a for a in alts)
    assert html.count('alt="sample') == 2 * 4  # 4 images per geneval run; the missing file shows as text
    assert "image missing" in html


@pytest.mark.unit
def test_sample_grid_shows_failures_first(html):
    grid = html[html.index("scene-oracle @100 (geneval)</h3>"):]
    grid = grid[:grid.index("<h3>")]
    badges = re.findall(r'<span class="badge">(\w+)</span>', grid)
    assert badges[:3] == ["incorrect"] * 3 and badges[3:] == ["correct"] * 2


@pytest.mark.unit
def test_provenance_is_collapsed_details(html):
    assert html.count("<details>") == 3 and "123456789" in html and "&quot;python&quot;" in html


@pytest.mark.unit
def test_markdown_writes_plots_and_images_to_a_files_folder(runs, tmp_path):
    out = build_report(runs, tmp_path / "rep.md")
    md = out.read_text()
    links = re.findall(r'(?:\]\(|src=")(rep_files/[^)"]+)', md)
    assert links and all((tmp_path / link).is_file() for link in links)
    assert any("plot" in link for link in links) and any("sample" in link for link in links)
    assert "| metric | scene-oracle @100 | scene-oracle @200 |" in md
    assert "<script>" not in md and "<details>" in md


@pytest.mark.unit
def test_unknown_output_type_and_no_results_are_report_errors(runs, tmp_path):
    with pytest.raises(ReportError, match=r"\.html or \.md"):
        build_report(runs, tmp_path / "r.pdf")
    with pytest.raises(ReportError):
        build_report([], tmp_path / "r.html")


@pytest.mark.unit
def test_metric_table_registry_has_geneval_and_a_generic_fallback():
    assert "geneval" in METRIC_TABLES
    assert tables_for("geneval", ["images_correct", "overall", "counting", "colors"])[0] == (
        "GenEval tags and overall", ["counting", "colors", "overall"])
    assert generic_tables(["acc", "category/a", "l2-category/b", "category/c"]) == [
        ("metrics", ["acc"]), ("category", ["category/a", "category/c"]), ("l2-category", ["l2-category/b"])]
    assert tables_for("never-registered", ["x"]) == [("metrics", ["x"])]


@pytest.mark.unit
def test_sample_decisions_and_picking_order():
    assert sample_ok({"decision": "correct"}) is True and sample_ok({"decision": "incorrect"}) is False
    assert sample_ok({"correct": False}) is False and sample_ok({"decision": "maybe"}) is None
    samples = [{"decision": "correct", "image": "a"}, {"decision": "wrong", "image": "b"}, {"decision": "wrong"}]
    assert [i for i, _ in pick_samples(samples, 5)] == [1, 0]  # image samples only, failures first
    assert [i for i, _ in pick_samples([{"decision": "ok"}, {"decision": "fail"}], 1)] == [1]


def chromium() -> str | None:
    return next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if p and Path(p).exists()), None)


@pytest.mark.integration
@pytest.mark.skipif(chromium() is None, reason="no headless chromium on this machine")
def test_html_report_renders_in_headless_chromium(runs, tmp_path):
    page = build_report(runs, tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
                    page.resolve().as_uri()], capture_output=True, timeout=120)
    assert shot.is_file(), "chromium wrote no screenshot"
    with Image.open(shot) as im:
        assert im.size == (1200, 2000)
        colours = im.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 50  # tables, text and plots, not a blank page


@pytest.mark.integration
def test_cli_report_writes_html(runs, tmp_path, uae):
    p = uae("report", str(runs[0]), str(runs[2] / "results.json"), "--out", str(tmp_path / "r.html"))
    assert p.returncode == 0, p.stderr
    assert "data:image/png;base64," in (tmp_path / "r.html").read_text()
    p = uae("report", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.html"))
    assert p.returncode == 2 and "Traceback" not in p.stderr
