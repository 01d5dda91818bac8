"""MMT-Bench answered by a VLM on an OpenAI-compatible server (uae_eval/vlm_judge.py), against the misbehaving
local server of tests/openai_server.py: every question is asked, the ones whose requests fail for good score as
failed extractions and are counted, and the rest are scored from the server's answers."""
from __future__ import annotations

import json

import pytest

from uae_eval.mmt_bench.data import decode_images, load_tsv
from uae_eval.mmt_bench.prompt import build_prompt
from uae_eval.vlm_judge import ServedVLM, ServedVLMConfig, _data_url

from conftest import ROOT
from openai_server import ALWAYS_FAILS, ChatServer, ServerState, digest_of

TSV = ROOT / "manifests/mmt_bench/scene_mmt.tsv"
N = 40


@pytest.mark.integration
def test_openai_judge_answers_mmt_bench_through_a_misbehaving_server(tmp_path, uae_in_process):
    rows = load_tsv(str(TSV)).head(N).to_dict("records")
    digest = {r["index"]: digest_of(_data_url(decode_images(r["image"])[0])) for r in rows}
    truth = {(digest[r["index"]], build_prompt(r)): r["answer"] for r in rows}
    with ChatServer(ServerState(answer=lambda d, prompt: f"The answer is {truth[(d, prompt)]}.")) as srv:
        r = uae_in_process("eval", "mmt-bench", f"limit={N}", f"server.endpoint={srv.url}", "server.timeout=1",
                           "server.retries=3", "server.concurrency=8", "--model", "served-judge", "--out",
                           str(tmp_path / "r"))
        assert r.returncode == 0, r.stdout
        fates = {d: srv.state.mode(d) for d in srv.state.asked}
    failed = [r for r in rows if fates[digest[r["index"]]] in ALWAYS_FAILS]
    assert 0 < len(failed) < N and set(fates) == set(digest.values())
    results = json.loads((tmp_path / "r/results.json").read_text())
    assert results["extra"]["n_request_failed"] == len(failed)
    assert results["metrics"]["overall"] == pytest.approx((N - len(failed)) / N)
    samples = [json.loads(line) for line in (tmp_path / "r/samples.jsonl").read_text().splitlines()]
    assert len(samples) == N and {s["index"] for s in samples if s["hit"] == 0} == {r["index"] for r in failed}


@pytest.mark.unit
def test_openai_judge_yes_no_and_refusals():
    with ChatServer(ServerState(modes=("ok",), answer=lambda d, p: "Yes." if "red" in p else "no, it is not")) as srv:
        judge = ServedVLM("j", ServedVLMConfig(endpoint=srv.url, retries=0))
        from PIL import Image

        im = [Image.new("RGB", (8, 8))]
        assert judge.yes_no([(im, "Is it red?"), (im, "Is it blue?")]) == [True, False]
    with pytest.raises(ValueError, match="http"):
        ServedVLMConfig(endpoint="localhost:8000").validate()


def _scene_server_answers(grids, csv, tiles: int):
    """(image digest, prompt) -> the scene judge's answer, as a served VLM would give it: the tiles the harness
    sends (each grid's, encoded as the client encodes them) read by the scene detector, the question mapped back to
    its Scene-DPG tuple. So a served judge must reproduce the scene judge's scores exactly."""
    from PIL import Image

    from uae_data.scene_detect import read_scene
    from uae_eval.dpg_bench.data import load_csv
    from uae_eval.dpg_bench.images import crop_tiles
    from uae_eval.dpg_bench.judges import VLM_PROMPT
    from uae_eval.dpg_bench.scene_dpg import answer

    scenes = {}
    for grid in sorted(grids.glob("*.png")):
        for tile in crop_tiles(Image.open(grid).convert("RGB"), tiles, None, grid.name):
            scenes[digest_of(_data_url(tile))] = read_scene(tile)
    fact = {VLM_PROMPT.format(question=q.question): q.tuple_text for it in load_csv(csv, False).items
            for q in it.questions}
    return lambda d, prompt: "Yes, it does." if answer(scenes[d], fact[prompt]) == "yes" else "No."


@pytest.mark.integration
def test_dpg_served_vlm_judge_reproduces_the_scene_judge_through_a_misbehaving_server(tmp_path, uae_in_process,
                                                                                    monkeypatch):
    csv = ROOT / "manifests/dpg_scene/dpg_bench.csv"
    # one tile an image (1,413 questions a run), all 100 items: a limit would mark every run partial
    paint = uae_in_process("eval", "dpg-bench", "tiles=1", "--generator", "random", "--out", str(tmp_path / "scene"))
    assert paint.returncode == 0, paint.stderr
    grids = tmp_path / "scene/images"
    scene = json.loads((tmp_path / "scene/results.json").read_text())
    recovers = ("ok", "slow", "429x2", "500x1", "drop", "cutbody", "malformed", "length")
    answers = _scene_server_answers(grids, csv, tiles=1)
    monkeypatch.setenv("UAE_TEST_JUDGE_KEY", "sk-test-judge-secret")
    served = ("tiles=1", "--images", str(grids), "server.api_key_env=UAE_TEST_JUDGE_KEY", "--judge", "vlm", "--judge-model", "served-judge",
              "server.retries=3", "server.concurrency=64")
    with ChatServer(ServerState(modes=recovers, answer=answers)) as srv:
        r = uae_in_process("eval", "dpg-bench", *served, f"server.endpoint={srv.url}", "--out", str(tmp_path / "v"))
        assert r.returncode == 0, r.stderr
        assert {srv.state.mode(d) for d in srv.state.asked} == set(recovers)  # every fate was met
    res = json.loads((tmp_path / "v/results.json").read_text())
    assert res["metrics"] == scene["metrics"] and 0 < scene["metrics"]["overall"] < 100 and res["n_items"] == 99
    judge = res["extra"]["judge"]
    assert judge["server"] == srv.url and judge["failed_requests"] == 0 and res["extra"]["partial"] is False
    rows = [json.loads(line) for line in (tmp_path / "v/answers.jsonl").read_text().splitlines()]
    exact = [json.loads(line) for line in (tmp_path / "scene/answers.jsonl").read_text().splitlines()]
    assert [r["answer"] for r in rows] == [r["answer"] for r in exact] and all("raw" in r for r in rows)

    # requests that never succeed: refused (nothing written) unless --allow-partial, where each is a "no", counted
    with ChatServer(ServerState(modes=("ok", "500always"), answer=answers)) as srv:
        refused = uae_in_process("eval", "dpg-bench", *served, f"server.endpoint={srv.url}", "--out", str(tmp_path / "x"))
        assert refused.returncode == 2 and "judge requests failed for good (HTTP 500" in refused.stderr
        assert "sk-test-judge-secret" not in refused.stderr and not (tmp_path / "x").exists()
        part = uae_in_process("eval", "dpg-bench", *served, f"server.endpoint={srv.url}", "--allow-partial", "--out",
                              str(tmp_path / "p"))
        assert part.returncode == 0, part.stderr
        attempts = sum(mode == "500always" for _, mode, _ in srv.state.log)  # both runs, 4 attempts a request
        # painting, not --images: --allow-partial is for the served judge's failures; --answers takes no judge
        painted = uae_in_process("eval", "dpg-bench", "tiles=1", "limit=3", "--generator", "random", "--judge", "vlm",
                                 "--judge-model", "j",
                                 f"server.endpoint={srv.url}", "server.retries=0", "--allow-partial", "--out",
                                 str(tmp_path / "g"))
        assert painted.returncode == 0, painted.stderr
        answers = uae_in_process("eval", "dpg-bench", "judge=vlm", "--answers", str(tmp_path / "v/answers.jsonl"),
                                 f"server.endpoint={srv.url}", "--out", str(tmp_path / "a"))
        assert answers.returncode == 2 and "--answers with server.endpoint" in answers.stderr
    assert json.loads((tmp_path / "g/results.json").read_text())["extra"]["judge"]["failed_requests"] > 0
    assert "judge requests failed (scored 'no')" in painted.stdout
    res = json.loads((tmp_path / "p/results.json").read_text())
    assert 0 < res["extra"]["judge"]["failed_requests"] == attempts / 8 and res["extra"]["partial"] is True


@pytest.mark.unit
def test_dpg_server_options_are_refused_where_they_would_be_ignored():
    from uae_eval.dpg_bench.harness import DPGConfig

    with pytest.raises(ValueError, match="server.endpoint is read by judge vlm only"):
        DPGConfig(judge="scene", server=ServedVLMConfig(endpoint="http://127.0.0.1:1/v1")).validate()
    with pytest.raises(ValueError, match="server.max_tokens"):
        DPGConfig(judge="vlm", judge_options={"model": "m", "max_new_tokens": 4},
                  server=ServedVLMConfig(endpoint="http://127.0.0.1:1/v1")).validate()
