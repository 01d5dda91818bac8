import math

import pytest

from uae_eval.mmt_bench.extract import extract_choice
from uae_eval.mmt_bench.prompt import build_prompt

OPTS = {"A": "apple", "B": "banana", "C": "cherry", "D": "date"}


@pytest.mark.parametrize("pred,expected", [
    ("B", "B"),
    ("(C)", "C"),
    ("The answer is: A.", "A"),
    ("b", None),                                  # case-sensitive letters, "b" is no option text
    ("Banana", "B"),                              # text rule, lower-cased substring
    ("I think it is a banana or a cherry", None),  # two option texts
    ("Apples And Bananas", None),                  # letters inside words don't count; two texts
    ("A or B", None),                             # several letters
    ("Cannot determine the answer", "Z"),         # refusal
    ("Z", "Z"),                                   # bare Z
    ("no idea", None),
])
def test_extract_choice_follows_vlmevalkit_head(pred, expected):
    assert extract_choice(pred, OPTS) == expected


def test_letter_far_from_the_end_only_counts_under_2024_rules():
    pred = "A is my choice because the fruit shown is red and round"
    assert extract_choice(pred, OPTS, "vlmevalkit-2026") is None
    assert extract_choice(pred, OPTS, "vlmevalkit-2025-08") is None
    assert extract_choice(pred, OPTS, "mmt-2024") == "A"


def test_answer_is_regex_only_in_2026_rules():
    pred = "After looking closely at every fruit in the picture, I say the answer is definitely cherry"
    assert extract_choice(pred, OPTS, "vlmevalkit-2026") == "D"   # no word boundary: "d"efinitely
    assert extract_choice(pred, OPTS, "vlmevalkit-2025-08") is None  # too long for the text rule
    assert extract_choice(pred, OPTS, "mmt-2024") == "C"           # no length cap: text rule


def test_unknown_rule_set_is_rejected():
    with pytest.raises(ValueError):
        extract_choice("A", OPTS, "nope")


def test_prompt_matches_vlmevalkit_layout():
    row = {"question": "What?", "A": "x", "B": "y", "C": math.nan, "hint": math.nan}
    assert build_prompt(row) == ("Question: What?\nOptions:\nA. x\nB. y\n"
                                 "Please select the correct answer from the options above. \n")
    row["hint"] = "look"
    assert build_prompt(row).startswith("Hint: look\nQuestion: What?\n")


def _png_b64():
    import base64, io
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGBA", (4, 4)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _write_tsv(path, rows):
    import pandas as pd
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)


def test_predictions_mode_reproduces_hand_computed_accuracies(tmp_path):
    import json
    from uae_eval.mmt_bench.harness import MMTConfig, run
    img = _png_b64()
    rows = [  # cats: c1 (l2 VR) 2/3 right, c2 (l2 VR) 0/1, c3 (l2 Loc) 1/1
        dict(index=1, image=img, question="q1", A="x", B="y", answer="A", category="c1", **{"l2-category": "VR"}, split="val"),
        dict(index=2, image="1", question="q2", A="x", B="y", answer="B", category="c1", **{"l2-category": "VR"}, split="val"),
        dict(index=3, image="1", question="q3", A="x", B="y", answer="A", category="c1", **{"l2-category": "VR"}, split="val"),
        dict(index=4, image="1", question="q4", A="x", B="y", answer="A", category="c2", **{"l2-category": "VR"}, split="val"),
        dict(index=5, image="1", question="q5", A="x", B="y", answer="B", category="c3", **{"l2-category": "Loc"}, split="val"),
    ]
    tsv = tmp_path / "mini.tsv"
    _write_tsv(tsv, rows)
    preds = tmp_path / "PRED.jsonl"
    preds.write_text("\n".join(json.dumps(d) for d in [
        {"index": 1, "prediction": "A"}, {"index": 2, "prediction": "The answer is (B)."},
        {"index": 3, "prediction": "y"}, {"index": 4, "prediction": "no idea"}, {"index": 5, "prediction": "B"}]))
    res = run(MMTConfig(tsv=str(tsv), model="pred"), tmp_path / "out", predictions=preds)
    m = res.metrics
    assert m["overall"] == pytest.approx(3 / 5)
    assert m["category/c1"] == pytest.approx(2 / 3)
    assert m["category/c2"] == 0.0
    assert m["l2-category/VR"] == pytest.approx((2 / 3 + 0) / 2)   # macro over categories
    assert m["l2-category/Loc"] == 1.0
    acc = (tmp_path / "out" / "mini_acc.csv").read_text().splitlines()
    assert acc[0].startswith("split,Overall,Loc,VR,c1,c2,c3") and acc[-1].startswith("ALL,0.6")


def _mini(tmp_path, n=3):
    img = _png_b64()
    _write_tsv(tmp_path / "m.tsv", [dict(index=i, image=img, question=f"q{i}", A="x", B="y", answer="A", category="c",
                                         **{"l2-category": "VR"}, split="val") for i in range(1, n + 1)])
    return tmp_path / "m.tsv"


def _preds(path, pairs):
    import json
    path.write_text("".join(json.dumps({"index": i, "prediction": p}) + "\n" for i, p in pairs))
    return path


@pytest.mark.parametrize("pairs, message", [
    ([(1, "A"), (2, "A"), (3, "A"), (9, "A")], r"1 predictions name indexes not in the TSV \(e\.g\. 9\)"),
    ([(1, "A"), (2, "A"), (2, "B"), (3, "A")], r"line 3: index 2 already answered on line 2"),
    ([(1, "A")], r"2 of 3 rows have no prediction \(e\.g\. index 2, 3\); pass --allow-missing"),
])
def test_predictions_with_unknown_duplicate_or_missing_indexes_are_refused(tmp_path, pairs, message):
    from uae_data.core.errors import InputError
    from uae_eval.mmt_bench.harness import MMTConfig, run
    with pytest.raises(InputError, match=message):
        run(MMTConfig(tsv=str(_mini(tmp_path))), tmp_path / "o", predictions=_preds(tmp_path / "P.jsonl", pairs))
    assert not (tmp_path / "o").exists()


def test_allow_missing_scores_unanswered_rows_as_failed_and_names_the_answerer(tmp_path):
    from uae_eval.mmt_bench.harness import MMTConfig, run
    preds = _preds(tmp_path / "qwen-run.jsonl", [(1, "A"), (2, "A")])
    res = run(MMTConfig(tsv=str(_mini(tmp_path)), allow_missing=True), tmp_path / "o", predictions=preds)
    assert res.metrics["overall"] == pytest.approx(2 / 3) and res.n_items == 3
    assert {k: res.extra[k] for k in ("partial", "n_missing")} == {"partial": True, "n_missing": 1}
    assert res.extra["scored"]["partial"] is True and res.extra["scored"]["samples"] == 3
    assert res.model["name"] == "qwen-run" and res.config["model"] == "qwen-run"
    named = run(MMTConfig(tsv=str(_mini(tmp_path)), allow_missing=True), tmp_path / "o2", predictions=preds,
                model_name="Qwen2.5-VL-3B")
    assert named.model["name"] == "Qwen2.5-VL-3B"


def test_image_references_resolve_exactly_as_vlmevalkit_does(tmp_path):
    from uae_data.core.errors import InputError
    from uae_eval.mmt_bench.data import load_tsv
    img = _png_b64()
    row = lambda i, im: dict(index=i, image=im, question="q", A="x", answer="A", category="c", **{"l2-category": "VR"})
    # a reference to an earlier row that is itself a reference resolves (VK resolves in file order)
    _write_tsv(tmp_path / "ok.tsv", [row(1000, img), row(1028, "1000"), row(1030, "1028")])
    assert (load_tsv(tmp_path / "ok.tsv")["image"] == img).all()
    from uae_eval.mmt_bench.answerers import oracle
    from uae_eval.mmt_bench.harness import MMTConfig, run
    with pytest.raises(InputError, match="ok.tsv: no scene, qtype, target column; the scene-world answerers"):
        run(MMTConfig(tsv=str(tmp_path / "ok.tsv")), tmp_path / "o", answer=oracle)
    # a reference to a later reference, or to itself, is refused (VK's assert fails on it)
    _write_tsv(tmp_path / "later.tsv", [row(1000, img), row(1030, "1028"), row(1028, "1000")])
    with pytest.raises(InputError, match="row index 1030: image refers to row '1028', which has no image yet"):
        load_tsv(tmp_path / "later.tsv")
    _write_tsv(tmp_path / "self.tsv", [row(1000, img), row(7, "7")])
    with pytest.raises(InputError, match="row index 7"):
        load_tsv(tmp_path / "self.tsv")


def test_answer_mode_gets_rgb_images_and_the_prompt(tmp_path):
    from uae_eval.mmt_bench.harness import MMTConfig, run
    _write_tsv(tmp_path / "t.tsv", [dict(index=7, image=_png_b64(), question="q", A="x", B="y", answer="B",
                                         category="c", **{"l2-category": "VR"}, split="val")])
    seen = []
    def answer(images, prompt):
        seen.append((images[0].mode, prompt))
        return "B"
    res = run(MMTConfig(tsv=str(tmp_path / "t.tsv")), tmp_path / "o", answer=answer)
    assert res.metrics["overall"] == 1.0 and seen[0][0] == "RGB" and "B. y\n" in seen[0][1]


def test_dangling_image_reference_names_the_row(tmp_path):
    from uae_data.core.errors import InputError
    from uae_eval.mmt_bench.data import load_tsv
    _write_tsv(tmp_path / "b.tsv", [dict(index=3, image="99", question="q", A="x", answer="A",
                                         category="c", **{"l2-category": "VR"})])
    with pytest.raises(InputError, match="row index 3"):
        load_tsv(tmp_path / "b.tsv")


def test_scene_mmt_oracle_is_perfect_and_random_is_near_chance(tmp_path):
    import sys
    sys.path.insert(0, "tools")
    from make_scene_mmt import make_rows
    from uae_eval.mmt_bench.answerers import ANSWERERS
    from uae_eval.mmt_bench.harness import MMTConfig, run
    rows = make_rows(0, 500)
    assert {r["answer"] for r in rows} == set("ABCD")
    _write_tsv(tmp_path / "s.tsv", rows)
    cfg = MMTConfig(tsv=str(tmp_path / "s.tsv"))
    assert run(cfg, tmp_path / "o", answer=ANSWERERS["oracle"]()).metrics["overall"] == 1.0
    acc = run(cfg, tmp_path / "r", answer=ANSWERERS["random"](seed=0)).metrics["overall"]
    assert 0.20 <= acc <= 0.30


def test_manifest_loads_as_mmt_config():
    from pathlib import Path
    from uae_data.core.config import load_config
    from uae_eval.mmt_bench.harness import MMTConfig
    cfg = load_config(MMTConfig, Path("manifests/eval/mmt-bench-scene.yaml"), kind="mmt-bench")
    assert cfg.tsv.endswith("scene_mmt.tsv") and cfg.rules == "vlmevalkit-2026"


def test_caption_reader_answers_from_a_perfect_caption():
    import json
    from uae_data.scenes import Scene, sample_scene, write_caption
    from uae_eval.mmt_bench.answerers import build_answerer, solve
    scene = sample_scene(3)
    row = {"scene": json.dumps(scene.to_dict()), "qtype": "count", "target": "",
           "A": "0", "B": str(len(scene.objects)), "C": "11", "D": "12"}
    ans = build_answerer("caption-reader", caption=lambda images: [write_caption(scene, 0)])
    assert ans([], "", row=row) == "B"


def test_undecodable_image_fails_before_the_model_runs(tmp_path):
    from uae_data.core.errors import InputError
    from uae_eval.mmt_bench.harness import MMTConfig, run
    _write_tsv(tmp_path / "b.tsv", [dict(index=1, image=_png_b64(), question="q", A="x", answer="A", category="c",
                                         **{"l2-category": "VR"}),
                                    dict(index=2, image="x" * 100, question="q", A="x", answer="A", category="c",
                                         **{"l2-category": "VR"})])
    calls = []
    with pytest.raises(InputError, match="row index 2"):
        run(MMTConfig(tsv=str(tmp_path / "b.tsv")), tmp_path / "o", answer=lambda im, p: calls.append(1) or "A")
    assert calls == []


@pytest.mark.integration
def test_cli_mmt_bench_oracle_random_and_predictions(tmp_path, uae):
    import json as _json

    o = uae("eval", "mmt-bench", "--model", "oracle", "--out", str(tmp_path / "o"))
    r = uae("eval", "mmt-bench", "--model", "random", "--out", str(tmp_path / "r"))
    assert o.returncode == 0 and r.returncode == 0, o.stderr + r.stderr
    assert _json.loads((tmp_path / "o/results.json").read_text())["metrics"]["overall"] == 1.0
    rnd = _json.loads((tmp_path / "r/results.json").read_text())
    assert rnd["n_items"] >= 500 and 0.20 <= rnd["metrics"]["overall"] <= 0.30
    preds = tmp_path / "p.jsonl"
    rows = [_json.loads(l) for l in (tmp_path / "o/samples.jsonl").read_text().splitlines()][:10]
    preds.write_text("".join(_json.dumps({"index": s["index"], "prediction": f"The answer is {s['answer']}."}) + "\n"
                             for s in rows))
    p = uae("eval", "mmt-bench", "--predictions", str(preds), "--out", str(tmp_path / "p"))
    assert p.returncode == 2 and "rows have no prediction" in p.stderr and "--allow-missing" in p.stderr
    assert not (tmp_path / "p").exists()
    p = uae("eval", "mmt-bench", "--predictions", str(preds), "--allow-missing", "--out", str(tmp_path / "p"))
    assert p.returncode == 0, p.stderr
    got = _json.loads((tmp_path / "p/results.json").read_text())
    assert got["metrics"]["overall"] == pytest.approx(10 / rnd["n_items"]) and got["extra"]["n_missing"] == rnd["n_items"] - 10
    assert got["model"]["name"] == "p" and got["config"]["model"] == "p"  # the file's stem, never "oracle"
    bad = uae("eval", "mmt-bench", "--model", "caption-reader", "--out", str(tmp_path / "b"))
    assert bad.returncode == 2 and "--encoder" in bad.stderr


def _row(i, **kw):
    return {**dict(index=i, image=_png_b64(), question=f"q{i}", A="x", B="y", C=None, answer="A", category="c",
                   **{"l2-category": "VR"}, split="val"), **kw}


@pytest.mark.parametrize("rows, message", [
    ([_row(1), _row(2, answer="E")], r"row index 2: answer 'E' is not an option letter \(options: A, B\)"),
    ([_row(1), _row(2, answer="C")], r"row index 2: answer 'C' is option C, which is blank"),
    ([_row(1), _row(2, answer=None)], r"row index 2: answer nan is not an option letter"),
    ([_row(1), _row(1)], r"row index 1 appears more than once"),
    ([], r"no question rows"),
])
def test_unscorable_tsv_rows_are_refused_before_any_answer(tmp_path, rows, message):
    from uae_data.core.errors import InputError
    from uae_eval.mmt_bench.harness import MMTConfig, run

    path = tmp_path / "bad.tsv"
    if rows:
        _write_tsv(path, rows)
    else:
        path.write_text("index\timage\tquestion\tA\tB\tanswer\tcategory\tl2-category\n")
    calls = []
    with pytest.raises(InputError, match=message):
        run(MMTConfig(tsv=str(path)), tmp_path / "o", answer=lambda images, prompt: calls.append(1) or "A")
    assert not calls and not (tmp_path / "o").exists()


def test_limit_marks_the_result_partial(tmp_path):
    import json
    from uae_eval.mmt_bench.harness import MMTConfig, run

    preds = tmp_path / "P.jsonl"
    preds.write_text("".join(json.dumps({"index": i, "prediction": "A"}) + "\n" for i in range(1, 6)))
    res = run(MMTConfig(tsv=str(_mini(tmp_path, 5)), limit=2), tmp_path / "o", predictions=preds)
    assert res.extra.pop("scored")["samples"] == 2
    assert res.extra == {"partial": True, "n_missing": 3, "limited_to": 2} and res.n_items == 2
    whole = run(MMTConfig(tsv=str(_mini(tmp_path, 5))), tmp_path / "o2", predictions=preds)
    assert whole.extra.pop("scored")["partial"] is False
    assert whole.extra == {"partial": False, "n_missing": 0}
