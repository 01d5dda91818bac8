"""Regression check: exit 0 no drop, 1 drop/missing (table of metric, baseline, value, delta), 2 bad files."""
from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from uae_eval.check import CheckMismatch, check, judge, run_check, write_baseline
from uae_eval.results import Results, read_results, write_results


def results(**kw) -> Results:
    base = dict(benchmark="geneval", benchmark_version="geneval@af4902f",
                model={"name": "scene-oracle", "path": None, "config": {}},
                metrics={"overall": 0.80, "counting": 0.70, "lpips": 0.20}, primary_metric="overall",
                higher_is_better=True, n_items=10, metric_higher_is_better={"lpips": False})
    return Results(**{**base, **kw})


def save(folder, **kw):
    write_results(folder, results(**kw), [{"i": 0}])
    return folder


def console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=200, color_system=None), buf


@pytest.fixture
def base_file(tmp_path):
    src = save(tmp_path / "base_run")
    out = tmp_path / "baselines" / "geneval.json"
    con, _ = console()
    assert write_baseline(src, out, console=con) == 0
    return out


def run(res_dir, base, **kw) -> tuple[int, str]:
    con, buf = console()
    code = run_check(res_dir, base, console=con, **kw)
    return code, buf.getvalue()


@pytest.mark.unit
def test_same_results_as_baseline_exit_0(tmp_path, base_file):
    code, text = run(save(tmp_path / "r"), base_file)
    assert code == 0 and "ok" in text


@pytest.mark.unit
def test_drop_beyond_tolerance_exit_1_and_table_lists_metric_baseline_value_delta(tmp_path, base_file):
    code, text = run(save(tmp_path / "r", metrics={"overall": 0.80, "counting": 0.60, "lpips": 0.20}), base_file)
    assert code == 1
    for col in ("metric", "baseline", "value", "delta"):
        assert col in text
    line = next(ln for ln in text.splitlines() if "counting" in ln and "drop" in ln)
    assert "0.7000" in line and "0.6000" in line and "-0.1000" in line
    assert "regression" in text and "1 dropped (counting)" in text


@pytest.mark.unit
def test_drop_within_tolerance_exit_0(tmp_path, base_file):
    code, _ = run(save(tmp_path / "r", metrics={"overall": 0.795, "counting": 0.70, "lpips": 0.20}), base_file,
                  tolerance=0.01)
    assert code == 0
    code, _ = run(tmp_path / "r", base_file, tolerance=0.001)
    assert code == 1


@pytest.mark.unit
def test_lower_is_better_metric_drops_when_it_rises(tmp_path, base_file):
    code, text = run(save(tmp_path / "up", metrics={"overall": 0.8, "counting": 0.7, "lpips": 0.30}), base_file)
    assert code == 1 and "lpips" in text
    code, text = run(save(tmp_path / "down", metrics={"overall": 0.8, "counting": 0.7, "lpips": 0.05}), base_file)
    assert code == 0 and "improved" in text


@pytest.mark.unit
def test_metric_missing_from_results_is_a_failure(tmp_path, base_file):
    code, text = run(save(tmp_path / "r", metrics={"overall": 0.8, "lpips": 0.2}), base_file)
    assert code == 1 and "missing" in text and "counting" in text


@pytest.mark.unit
def test_only_selected_metrics_are_checked(tmp_path, base_file):
    save(tmp_path / "r", metrics={"overall": 0.8, "counting": 0.1, "lpips": 0.2})
    assert run(tmp_path / "r", base_file, metrics=["overall"])[0] == 0
    assert run(tmp_path / "r", base_file, metrics=["counting"])[0] == 1
    code, text = run(tmp_path / "r", base_file, metrics=["fid"])
    assert code == 2 and "'fid' not in the baseline" in text


@pytest.mark.unit
@pytest.mark.parametrize("kw, word", [({"benchmark": "mmt-bench"}, "benchmark differs"),
                                      ({"benchmark_version": "geneval@other"}, "benchmark_version differs")])
def test_other_benchmark_or_version_exit_2(tmp_path, base_file, kw, word):
    code, text = run(save(tmp_path / "r", **kw), base_file)
    assert code == 2 and word in text and "Traceback" not in text
    assert len(text.strip().splitlines()) == 1


@pytest.mark.unit
def test_unreadable_json_exit_2_with_one_line_naming_the_file(tmp_path, base_file):
    bad = tmp_path / "bad.json"
    bad.write_text("{ this is not json")
    code, text = run(save(tmp_path / "r"), bad)
    assert code == 2 and str(bad) in text and "not valid JSON" in text
    assert len(text.strip().splitlines()) == 1
    code, text = run(tmp_path / "missing_run", base_file)
    assert code == 2 and "missing_run" in text


@pytest.mark.unit
def test_baseline_without_required_field_exit_2(tmp_path, base_file):
    data = json.loads(base_file.read_text())
    del data["metrics"]
    base_file.write_text(json.dumps(data))
    code, text = run(save(tmp_path / "r"), base_file)
    assert code == 2 and "'metrics'" in text


@pytest.mark.unit
def test_baseline_is_results_shaped_with_provenance_and_no_samples(tmp_path, base_file):
    data = json.loads(base_file.read_text())
    assert data["benchmark"] == "geneval" and data["metrics"]["overall"] == 0.8
    assert data["primary_metric"] == "overall" and data["higher_is_better"] is True
    assert data["metric_higher_is_better"] == {"lpips": False}
    assert data["source"].endswith("results.json") and "created" in data and "git_hash" in data
    assert not (base_file.parent / "samples.jsonl").exists()


@pytest.mark.unit
def test_write_baseline_from_bad_results_exit_2(tmp_path):
    con, buf = console()
    assert write_baseline(tmp_path / "nothing", tmp_path / "b.json", console=con) == 2
    assert not (tmp_path / "b.json").exists()


@pytest.mark.unit
def test_check_accepts_a_plain_dict_baseline():
    base = {"benchmark": "geneval", "benchmark_version": "geneval@af4902f", "metrics": {"overall": 0.9},
            "primary_metric": "overall", "higher_is_better": True}
    out = check(results(), base, tolerance=0.05)
    assert not out.passed and out.exit_code == 1
    (row,) = out.rows
    assert row.metric == "overall" and row.delta == pytest.approx(-0.1) and row.status == "drop"
    assert out.extra_metrics == ["counting", "lpips"]


@pytest.mark.unit
def test_check_raises_mismatch_for_other_benchmark():
    with pytest.raises(CheckMismatch):
        check(results(benchmark="recon"), results())


@pytest.mark.unit
def test_infinite_metrics_compare_sensibly():
    assert judge(float("inf"), float("inf"), True, 0.01) == "ok"
    assert judge(40.0, float("inf"), True, 0.01) == "drop"
    assert judge(float("inf"), 40.0, True, 0.01) == "improved"
    out = check(results(metrics={"overall": float("inf")}), results(metrics={"overall": float("inf")}))
    assert out.passed and out.rows[0].delta == 0.0


@pytest.mark.unit
def test_negative_tolerance_is_rejected():
    with pytest.raises(ValueError):
        check(results(), results(), tolerance=-1)


@pytest.mark.integration
def test_cli_check_exit_codes(tmp_path, uae):
    save(tmp_path / "run")
    base = tmp_path / "base.json"
    p = uae("check", str(tmp_path / "run"), "--write-baseline", str(base))
    assert p.returncode == 0, p.stderr
    assert read_results(tmp_path / "run").benchmark == json.loads(base.read_text())["benchmark"]
    assert uae("check", str(tmp_path / "run"), "--baseline", str(base)).returncode == 0
    save(tmp_path / "worse", metrics={"overall": 0.5, "counting": 0.7, "lpips": 0.2})
    p = uae("check", str(tmp_path / "worse"), "--baseline", str(base), "--tolerance", "0.01")
    assert p.returncode == 1 and "overall" in p.stdout
    (tmp_path / "junk.json").write_text("[]")
    p = uae("check", str(tmp_path / "run"), "--baseline", str(tmp_path / "junk.json"))
    assert p.returncode == 2 and "Traceback" not in p.stderr + p.stdout


@pytest.mark.unit
def test_results_of_another_item_set_are_refused_not_called_a_regression(tmp_path):
    write_results(tmp_path / "full", results(), [{"prompt_index": i, "prompt": f"p{i}"} for i in range(6)])
    con, _ = console()
    assert write_baseline(tmp_path / "full", tmp_path / "b.json", console=con) == 0
    assert json.loads((tmp_path / "b.json").read_text())["extra"]["scored"]["samples"] == 6
    write_results(tmp_path / "sub", results(metrics={"overall": 0.1, "counting": 0.1, "lpips": 0.9}),
                  [{"prompt_index": i, "prompt": f"p{i}"} for i in range(3)])
    code, _ = run(tmp_path / "sub", tmp_path / "b.json")
    assert code == 2
    write_results(tmp_path / "other", results(), [{"prompt_index": i, "prompt": f"q{i}"} for i in range(6)])
    with pytest.raises(CheckMismatch, match="different items"):
        check(read_results(tmp_path / "other"), json.loads((tmp_path / "b.json").read_text()))
    write_results(tmp_path / "same", results(), [{"prompt_index": i, "prompt": f"p{i}", "out": i} for i in reversed(range(6))])
    assert run(tmp_path / "same", tmp_path / "b.json")[0] == 0  # outputs and order do not change the set


@pytest.mark.unit
def test_a_baseline_from_a_partial_result_keeps_the_mark_and_refuses_complete_results(tmp_path):
    write_results(tmp_path / "part", results(extra={"partial": True}), [{"index": "1"}])
    con, _ = console()
    assert write_baseline(tmp_path / "part", tmp_path / "b.json", console=con) == 0
    assert json.loads((tmp_path / "b.json").read_text())["extra"]["scored"]["partial"] is True
    write_results(tmp_path / "whole", results(), [{"index": "1"}])
    with pytest.raises(CheckMismatch, match="complete but the baseline is partial"):
        check(read_results(tmp_path / "whole"), json.loads((tmp_path / "b.json").read_text()))


@pytest.mark.unit
def test_write_baseline_never_overwrites(tmp_path, base_file):
    before = base_file.read_text()
    con, buf = console()
    assert write_baseline(save(tmp_path / "r2", metrics={"overall": 0.1, "counting": 0.1, "lpips": 0.9}), base_file,
                          console=con) == 2
    assert base_file.read_text() == before and "exists" in buf.getvalue()


@pytest.mark.integration
def test_cli_a_six_prompt_geneval_run_is_refused_against_the_shipped_553_prompt_baseline(tmp_path, uae):
    from conftest import ROOT

    p = uae("eval", "geneval", "manifests/eval/geneval-scene.yaml", "--generator", "oracle", "limit=6",
            "--out", str(tmp_path / "g"))
    assert p.returncode == 0, p.stderr
    p = uae("check", str(tmp_path / "g"), "--baseline", str(ROOT / "manifests/baselines/geneval-scene-oracle.json"))
    assert p.returncode == 2 and "not comparable" in p.stderr and "Traceback" not in p.stderr, p.stdout + p.stderr
