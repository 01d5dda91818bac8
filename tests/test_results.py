"""The results schema: round trip, strict JSON with +-inf, one-line errors naming file and field, atomic writes."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from uae_eval.results import (Results, ResultsError, git_hash, package_versions, read_results, read_samples,
                              write_results)

pytestmark = pytest.mark.unit


def make(**kw) -> Results:
    base = dict(benchmark="recon", benchmark_version="v1", model={"name": "tiny", "path": None, "config": {"d": 8}},
                metrics={"psnr": float("inf"), "ssim": 0.9, "lpips": 0.1}, primary_metric="psnr",
                higher_is_better=True, n_items=3, config={"seed": 0}, extra={"official_compatible": False})
    return Results(**{**base, **kw})


def write_raw(tmp_path, data) -> None:
    (tmp_path / "results.json").write_text(json.dumps(data))


def test_round_trip_keeps_every_field_and_inf_metric(tmp_path):
    r = make(step=40, metric_higher_is_better={"lpips": False})
    write_results(tmp_path, r, [{"i": 0, "decision": "correct"}, {"i": 1, "decision": "incorrect"}])
    back = read_results(tmp_path)
    assert back == r
    assert math.isinf(back.metrics["psnr"]) and back.metrics["psnr"] > 0
    assert back.is_higher_better("ssim") and not back.is_higher_better("lpips")
    assert list(read_samples(tmp_path)) == [{"i": 0, "decision": "correct"}, {"i": 1, "decision": "incorrect"}]


def test_inf_is_written_as_a_string_so_the_file_is_strict_json(tmp_path):
    write_results(tmp_path, make(metrics={"psnr": float("inf"), "neg": float("-inf"), "ssim": 0.5}), [])

    def no_constants(name):
        raise AssertionError(f"non-standard JSON token {name}")

    data = json.loads((tmp_path / "results.json").read_text(), parse_constant=no_constants)
    assert data["metrics"] == {"psnr": "inf", "neg": "-inf", "ssim": 0.5}
    assert read_results(tmp_path / "results.json").metrics["neg"] == float("-inf")


def test_provenance_fills_itself(tmp_path):
    r = make()
    assert r.created and r.created.endswith("+00:00")
    assert r.versions["python"] and "numpy" in r.versions
    assert r.git_hash is None or isinstance(r.git_hash, str)


def test_nan_metric_is_rejected_on_write_and_on_read(tmp_path):
    with pytest.raises(ResultsError, match=r"metrics\.ssim.*NaN"):
        write_results(tmp_path, make(metrics={"psnr": 1.0, "ssim": float("nan")}), [])
    assert not (tmp_path / "results.json").exists()
    data = json.loads(json.dumps(make().to_dict() | {"metrics": {"psnr": "nan"}}))
    write_raw(tmp_path, data)
    with pytest.raises(ResultsError, match="NaN"):
        read_results(tmp_path)


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.pop("benchmark"), "'benchmark'"),
    (lambda d: d.pop("metrics"), "'metrics'"),
    (lambda d: d.__setitem__("n_items", "3"), "'n_items'"),
    (lambda d: d.__setitem__("higher_is_better", 1), "'higher_is_better'"),
    (lambda d: d["metrics"].__setitem__("ssim", "high"), "'metrics.ssim'"),
    (lambda d: d["model"].pop("name"), "'model.name'"),
    (lambda d: d.__setitem__("primary_metric", "fid"), "'primary_metric'"),
    (lambda d: d.__setitem__("step", 1.5), "'step'"),
])
def test_bad_field_is_a_one_line_error_naming_file_and_field(tmp_path, mutate, field):
    data = json.loads(json.dumps(make().to_dict() | {"metrics": {"psnr": "inf", "ssim": 0.9}}))
    mutate(data)
    write_raw(tmp_path, data)
    with pytest.raises(ResultsError) as e:
        read_results(tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "results.json") in msg and field in msg and "\n" not in msg


def test_unreadable_json_and_missing_file_are_results_errors(tmp_path):
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(ResultsError, match="not valid JSON"):
        read_results(tmp_path)
    with pytest.raises(ResultsError, match="no such file"):
        read_results(tmp_path / "nowhere" / "results.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResultsError, match=r"empty.results\.json: no such file"):
        read_results(tmp_path / "empty")


def test_results_error_is_a_value_error():
    assert issubclass(ResultsError, ValueError)


def test_write_leaves_no_temp_files(tmp_path):
    write_results(tmp_path, make(), ({"i": i} for i in range(100)))
    write_results(tmp_path, make(n_items=5), ({"i": i} for i in range(5)))  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "samples.jsonl"]
    assert read_results(tmp_path).n_items == 5 and len(list(read_samples(tmp_path))) == 5


def test_crash_while_writing_samples_leaves_no_partial_files(tmp_path):
    def samples():
        yield {"i": 0}
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError):
        write_results(tmp_path, make(), samples())
    assert list(tmp_path.iterdir()) == []


def test_numpy_values_are_written_as_plain_json(tmp_path):
    r = make(metrics={"psnr": np.float32(31.5), "ssim": np.float64(0.25)}, step=np.int64(7))
    write_results(tmp_path, r, [{"score": np.float32(0.5), "box": np.arange(3), "bad": float("nan")}])
    back = read_results(tmp_path)
    assert back.metrics == {"psnr": 31.5, "ssim": 0.25} and back.step == 7
    assert list(read_samples(tmp_path)) == [{"score": 0.5, "box": [0, 1, 2], "bad": "nan"}]


def test_bad_sample_line_names_file_and_line(tmp_path):
    write_results(tmp_path, make(), [{"i": 0}])
    with open(tmp_path / "samples.jsonl", "a") as f:
        f.write("{oops\n")
    with pytest.raises(ResultsError, match=r"samples\.jsonl: line 2"):
        list(read_samples(tmp_path))


def test_missing_samples_file_yields_nothing(tmp_path):
    assert list(read_samples(tmp_path)) == []


def test_git_hash_outside_git_is_none_without_crashing(monkeypatch):
    import uae_data.core.versions as v

    def boom(*a, **k):
        raise FileNotFoundError("git")

    monkeypatch.setattr(v.subprocess, "run", boom)
    assert v.git_hash.__wrapped__() is None
    assert git_hash() is None or isinstance(git_hash(), str)
    assert "python" in package_versions()
