"""Reports: metric tables (one column per run), plots, escaped sample grid, self-contained HTML, markdown files."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from uae_eval.benchmarks import find, generic_tables
from uae_eval.report import ReportError, build_report, pick_samples, sample_ok, tables_for
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
    assert find("geneval") is not None and find("geneval").tables is not generic_tables
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


def screenshot(page: Path, tmp_path: Path, height: int) -> Path:
    """A 1200 px wide headless-Chromium screenshot of `page` (offline: no background networking)."""
    shot = tmp_path / "shot.png"
    subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", f"--window-size=1200,{height}",
                    page.resolve().as_uri()], capture_output=True, timeout=120)
    assert shot.is_file(), "chromium wrote no screenshot"
    return shot


@pytest.mark.integration
@pytest.mark.skipif(chromium() is None, reason="no headless chromium on this machine")
def test_html_report_renders_in_headless_chromium(runs, tmp_path):
    shot = screenshot(build_report(runs, tmp_path / "report.html"), tmp_path, 2000)
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


# ---------------------------------------------------------------- reads at a glance (issue #16)

HEADLINE = [
    {"metric": "MMT-scene caption-reader", "stage": "stage 1", "unit": "accuracy", "higher_is_better": True,
     "before": {"mean": 0.41, "sd": 0.03, "n": 3}, "after": {"mean": 0.52, "sd": 0.02, "n": 3},
     "gain": {"mean": 0.11, "ci95": [0.05, 0.17]}, "chance": 0.25,
     "controls": [{"name": "constant reward", "gain": {"mean": 0.0, "ci95": [-0.03, 0.03]}},
                  {"name": "blind encoder", "value": 0.27}]},
    {"metric": "GenEval-scene overall", "stage": "stage 2", "before": {"mean": 0.61, "sd": 0.04, "n": 3},
     "after": {"mean": 0.63, "sd": 0.05, "n": 3}, "gain": {"mean": 0.02, "ci95": [-0.04, 0.08]}},
    {"metric": "recon PSNR", "unit": "dB", "before": {"mean": 14.2, "sd": None, "n": 1}, "after": {"mean": 13.1},
     "gain": None, "chance": None, "controls": None},
    {"metric": "LPIPS", "higher_is_better": False, "before": 0.42, "after": 0.35,
     "gain": {"mean": -0.07, "ci95": [-0.1, -0.03]}},
]


def recon_run(folder: Path, name: str, scale: float) -> Path:
    (folder / "images").mkdir(parents=True)
    samples = []
    for i in range(3):
        Image.new("RGB", (16, 16), (80 * i, 40, 200)).save(folder / "images" / f"{i}_orig.png")
        Image.new("RGB", (16, 16), (80 * i, 90, 20)).save(folder / "images" / f"{i}_rec0.png")
        samples.append({"key": f"k{i}", "caption": f"caption number {i} <i>", "caption_words": 3,
                        "metrics": {"ssim": 0.1 * i, "psnr": 10.0 + i}, "original": f"images/{i}_orig.png",
                        "reconstructions": [f"images/{i}_rec0.png"], "image": f"images/{i}_orig.png",
                        "rank_worst_first": i})
    metrics = {"ssim": 0.5 * scale, "ssim_ci_low": 0.4 * scale, "ssim_ci_high": 0.6 * scale,
               "psnr": 14.6 * scale, "psnr_ci_low": 13.8 * scale, "psnr_ci_high": 15.5 * scale,
               "caption_words_mean": 107.85, "always_zero": 0.0}
    write_results(folder, Results(benchmark="recon", benchmark_version="recon-v1",
                                  model={"name": name, "path": None, "config": {}}, metrics=metrics,
                                  primary_metric="ssim", higher_is_better=True, n_items=3), samples)
    return folder


def stage_run(folder: Path, n_evals: int = 6) -> Path:
    """A Unified-GRPO stage folder as the RL loop writes it: eval.jsonl, metrics.jsonl, results/."""
    folder.mkdir(parents=True)
    rows = [{"step": 10 * i, "heldout_reward": 0.3 + 0.05 * i, "heldout_ssim": 0.5 + 0.01 * i,
             "heldout_psnr": 13.0 + 0.5 * i, "caption_exact_scene": 0.0} for i in range(n_evals)]
    (folder / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "reward_mean": 0.3 + 0.001 * s,
                                                              "reward_std": 0.1}) + "\n" for s in range(1, 51)))
    metrics = {}
    for k in ("heldout_reward", "heldout_ssim", "heldout_psnr", "caption_exact_scene"):
        metrics.update({f"{k}/start": rows[0][k], f"{k}/end": rows[-1][k], f"{k}/delta": rows[-1][k] - rows[0][k]})
    curves = {k: {"x": [rows[0]["step"], rows[-1]["step"]], "y": [rows[0][k], rows[-1][k]]} for k in ("heldout_reward",)}
    write_results(folder / "results", Results(
        benchmark="unified-grpo-stage1", benchmark_version="scene-heldout", model={"name": "s1:x", "path": None, "config": {}},
        metrics=metrics, primary_metric="heldout_reward/end", higher_is_better=True, n_items=n_evals,
        extra={"curves": curves}), rows)
    return folder / "results"


class Calls:
    """Records the charts report.py asks for (names per bar chart, series per line plot) and still draws them."""

    def __init__(self, monkeypatch):
        import uae_eval.report as rep

        self.bars, self.lines = [], []
        bar, line = rep.bar_chart, rep.line_plot

        def rec_bar(labels, metrics, names, title, unit, ci=None):
            self.bars.append({"names": list(names), "unit": unit, "ci": dict(ci or {}), "title": title})
            return bar(labels, metrics, names, title, unit, ci)

        def rec_line(series, title, *a, **kw):
            self.lines.append({"series": {k: (list(x), list(y)) for k, (x, y) in series.items()}, "title": title})
            return line(series, title, *a, **kw)

        monkeypatch.setattr(rep, "bar_chart", rec_bar)
        monkeypatch.setattr(rep, "line_plot", rec_line)


@pytest.fixture
def glance(tmp_path) -> list[Path]:
    return [recon_run(tmp_path / "r1", "oracle", 1.0), recon_run(tmp_path / "r2", "shuffled", 0.5),
            stage_run(tmp_path / "s1")]


@pytest.mark.unit
def test_headline_table_comes_first_with_ci_markers_and_colours(glance, tmp_path):
    html = build_report(glance, tmp_path / "r.html", headline=HEADLINE).read_text()
    cap = "<caption>Headline: before → after, gain with 95% CI, controls, chance</caption>"
    assert html.index(cap) < html.index("<caption>Runs</caption>") < html.index("Benchmark: recon")
    t = table_after(html, "Headline: before → after, gain with 95% CI, controls, chance")
    assert "<th>control: constant reward</th>" in t and "<th>control: blind encoder</th>" in t and "<th>chance</th>" in t
    rows = t.split("<tr>")[2:]
    assert "0.410 ± 0.030 → 0.520 ± 0.020 (n=3)" in rows[0]
    assert '<td class="sig">+0.110 [+0.050, +0.170] ▲ CI above 0</td>' in rows[0]
    assert '<td class="ns">+0.000 [-0.030, +0.030] ○ CI includes 0</td>' in rows[0]
    assert "<td>0.270</td>" in rows[0] and "<td>0.250</td>" in rows[0]
    assert '<td class="ns">+0.020 [-0.040, +0.080] ○ CI includes 0</td>' in rows[1]
    assert "14.20 → 13.10" in rows[2] and "no CI" in rows[2] and "class=" not in rows[2]  # one seed: no sd, no CI
    assert "LPIPS (lower better)" in rows[3] and '<td class="sig">-0.070 [-0.100, -0.030] ▼ CI below 0' in rows[3]


@pytest.mark.unit
def test_headline_from_a_json_file_in_markdown_and_bad_headlines_are_report_errors(glance, tmp_path):
    (tmp_path / "headline.json").write_text(json.dumps({"rows": HEADLINE}))
    md = build_report(glance, tmp_path / "r.md", headline=tmp_path / "headline.json").read_text()
    assert md.index("**Headline: before → after") < md.index("**Runs**")
    assert "+0.110 [+0.050, +0.170] ▲ CI above 0" in md
    (tmp_path / "old.json").write_text(json.dumps({"geneval": {"pretrain": 0.1}}))
    for bad, msg in ((tmp_path / "old.json", "rows"), (tmp_path / "none.json", "not found"),
                     ([{"before": 1}], "metric")):
        with pytest.raises(ReportError, match=msg):
            build_report(glance, tmp_path / "x.html", headline=bad)


@pytest.mark.unit
def test_one_unit_per_chart_ci_as_error_bars_and_no_chart_for_constant_metrics(glance, tmp_path, monkeypatch):
    calls = Calls(monkeypatch)
    html = build_report(glance[:2], tmp_path / "r.html").read_text()
    units = {c["unit"]: c["names"] for c in calls.bars}
    assert units == {"score (0-1)": ["ssim"], "dB": ["psnr"]}  # PSNR never shares an axis with 0-1 scores
    charted = [n for c in calls.bars for n in c["names"]]
    assert not any("ci_" in n for n in charted)  # the CI bounds are no bars of their own ...
    assert {c["unit"]: c["ci"] for c in calls.bars}["dB"]["psnr"] == ("psnr_ci_low", "psnr_ci_high")  # ... error bars
    assert "always_zero" not in charted and "caption_words_mean" not in charted  # equal in both runs: table only
    t = table_after(html, "metrics")
    assert "<td>always_zero</td>" in t and "<td>caption_words_mean</td>" in t and "psnr_ci_low" not in t
    assert "14.6000 [13.8000, 15.5000]" in t and "<td>psnr (dB)</td>" in t
    assert "Not charted (the same in every run): caption_words_mean, always_zero." in html
    assert 'alt="bar chart of recon metrics [dB]"' in html


@pytest.mark.unit
def test_units_are_inferred_from_names_and_values():
    from uae_eval.report_plots import ci_pairs, is_constant, metric_unit, unit_groups

    assert metric_unit("heldout_psnr/delta", [2.4]) == "dB" and metric_unit("caption_words_mean", [100]) == "count"
    assert metric_unit("ssim", [0.5, 1.0]) == "score (0-1)" and metric_unit("heldout_reward/delta", [-0.2]) == "change in score"
    assert metric_unit("fid", [23.0]) == "fid"  # unknown unit: a chart of its own ...
    assert metric_unit("u/cknna/layer_03", [-0.1]) == metric_unit("u/cknna/mean", [2.0]) == "u/cknna"  # ... per family
    fam = {f"u/cknna/layer_{i}": [v] for i, v in enumerate((-0.1, 0.2, 0.5))} | {"u/knn/layer_0": [0.4]}
    assert unit_groups(list(fam), fam) == {"u/cknna": ["u/cknna/layer_0", "u/cknna/layer_1", "u/cknna/layer_2"],
                                           "score (0-1)": ["u/knn/layer_0"]}  # a family stays on one axis
    assert ci_pairs(["a", "a_ci_low", "a_ci_high", "b", "b/ci_low", "b/ci_high", "c_ci_low"]) == {
        "a": ("a_ci_low", "a_ci_high"), "b": ("b/ci_low", "b/ci_high")}
    assert is_constant([0.0, 0.0]) and is_constant([0.3, 0.3]) and is_constant([0.0]) and is_constant([float("inf")])
    assert not is_constant([0.3, 0.4]) and not is_constant([0.7])


@pytest.mark.unit
def test_stage_curves_plot_every_heldout_eval_point_one_unit_per_chart(glance, tmp_path, monkeypatch):
    calls = Calls(monkeypatch)
    html = build_report([glance[2]], tmp_path / "r.html").read_text()
    held = [c["series"] for c in calls.lines if "held-out" in c["title"]]
    assert [sorted(s) for s in held] == [["heldout_reward", "heldout_ssim"], ["heldout_psnr"]]
    for s in held:
        for x, y in s.values():
            assert x == [0, 10, 20, 30, 40, 50] and len(y) == 6  # all six evals, not start and end
    assert any(c["title"].startswith("s1:x: training reward") and len(c["series"]["reward_mean"][0]) == 50
               for c in calls.lines)
    assert not calls.bars and "curve heldout_reward" not in html  # no start/end bars, no two-point extra curve
    assert "Constant over every eval (not charted): caption_exact_scene = 0.0000" in html
    t = table_after(html, "held-out eval: first and last eval of the stage")
    assert "<th>start</th><th>end</th><th>Δ</th>" in t and "<td>heldout_psnr (dB)</td><td>13.0000</td><td>15.5000</td><td>+2.5000</td>" in t


@pytest.mark.unit
def test_recon_samples_show_original_caption_reconstruction_rows(glance, tmp_path):
    html = build_report(glance[:1], tmp_path / "r.html").read_text()
    rows = re.findall(r'<tr class="triple">(.*?)</tr>', html)
    assert len(rows) == 3
    first = rows[0]
    assert first.index('alt="original #0 k0"') < first.index("caption number 0 &lt;i&gt;") < first.index(
        'alt="reconstruction #0 k0"')
    assert "psnr 10.0000 dB" in first and 'class="card' not in html  # the triple rows replace the card grid
    md = build_report(glance[:1], tmp_path / "r.md").read_text()
    assert "| original | caption | reconstruction |" in md


@pytest.mark.integration
def test_cli_report_takes_a_headline_file(glance, tmp_path, uae):
    (tmp_path / "h.json").write_text(json.dumps({"rows": HEADLINE[:1]}))
    p = uae("report", str(glance[0]), "--headline", str(tmp_path / "h.json"), "--out", str(tmp_path / "r.html"))
    assert p.returncode == 0, p.stderr
    assert "▲ CI above 0" in (tmp_path / "r.html").read_text()
