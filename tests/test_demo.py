"""`uae demo` end to end at toy size: every stage runs, the report and headline numbers appear, a re-run resumes."""
from __future__ import annotations

import json

import pytest

TOY = ["corpus_size=64", "recon_limit=8", "geneval_limit=3", "geneval_images_per_prompt=1", "mmt_limit=4",
       "sampling_steps=2",
       "pretrain=[encoder_steps=2, decoder_steps=2, batch_size=4, warmup_steps=1, 'decoder_options={patch_size: 4}']",
       "stage1=[steps=1, images_per_step=2, group_size=2, max_new_tokens=12, decoder_steps=2, eval_images=2, mmt_limit=2]",
       "stage2=[steps=1, images_per_step=2, group_size=2, max_new_tokens=12, rollout_steps=2, eval_images=2, eval_steps=2]"]


@pytest.mark.integration
def test_demo_runs_the_whole_loop_and_resumes(tmp_path, uae):
    r = uae("demo", *TOY, "--out", str(tmp_path / "d"), timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    d = tmp_path / "d"
    for part in ("pre/encoder", "pre/decoder", "s1/encoder", "s2/decoder", "s1/results/results.json",
                 "s2/results/results.json", "eval/pretrain/geneval/results.json", "eval/unified-grpo/recon/results.json",
                 "eval/unified-grpo/mmt-bench/results.json", "report.html"):
        assert (d / part).exists(), part
    head = json.loads((d / "headline.json").read_text())
    assert {"geneval", "mmt-bench", "recon", "unified-grpo-stage1", "unified-grpo-stage2"} <= head.keys()
    assert 0 <= head["geneval"]["pretrain"] <= 1 and 0 <= head["mmt-bench"]["unified-grpo"] <= 1
    assert "pretrain" in r.stdout and "report:" in r.stdout
    html = (d / "report.html").read_text()
    assert "unified-grpo-stage1" in html and "heldout_reward" in html
    before = (d / "report.html").stat().st_mtime_ns
    r2 = uae("demo", *TOY, "--out", str(tmp_path / "d"), timeout=900)  # everything done: only the report is rebuilt
    assert r2.returncode == 0 and "pretrain ->" not in r2.stdout and (d / "report.html").stat().st_mtime_ns >= before
