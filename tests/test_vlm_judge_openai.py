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
