"""Real corpus sources: urls (through img2dataset, served on 127.0.0.1 only), folder, parquet, shards.

Every bad input of the issue is one row here: unreachable URL, HTTP 404, HTML served as .jpg,
truncated JPEG, 1x1 image, 20:1 strip, the same photo under two URLs, plus missing url column and
empty input file (one-line errors, exit 2). The build must finish, account for every row with a
reason, leave no half-written shard, and resume to the same shard hashes.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from uae_data.core.config import load_config
from uae_data.core.errors import ConfigError
from uae_data.corpus_config import CorpusConfig
from uae_data.pipeline import build

from conftest import ROOT
from tests.served_photos import CASES, TEST_OPTS, check_accounting, make_www, read_corpus, urls_cfg, write_url_list


@pytest.mark.integration
def test_cli_urls_build_accounts_for_every_row_and_resumes_to_same_hashes(www, tmp_path, uae):
    folder, base = www
    csv = write_url_list(tmp_path / "urls.csv", base)
    out = tmp_path / "c"
    args = ["build-corpus", "manifests/corpus/urls-example.yaml", *TEST_OPTS, "--source", "urls", "--input", str(csv),
            "--captioner", "keep", "--workers", "1", "--out", str(out)]
    r = uae(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    stats = check_accounting(out, base)
    samples = read_corpus(out)
    assert [s["__key__"] for s in samples] == list(stats.key[stats.status == "ok"])
    for s in samples:
        assert s["jpg"].size == (48, 48)  # resize_mode border (img2dataset), passed through
        assert s["json"]["caption_model"] == "source" and s["txt"] in {c for _, c, *_ in CASES}
        assert s["json"]["url"].startswith(base) and len(s["json"]["phash"]) == 16
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["input_rows"] == len(CASES) == sum(v for k, v in manifest["counts"].items() if k.startswith("status_"))
    assert manifest["stages"]["dropped_dedup"] == 1 and manifest["stages"]["failed_source"] == 4
    assert json.loads((out / "sizes.json").read_text()) == {"corpus-000000.tar": 3, "corpus-000001.tar": 0, "corpus-000002.tar": 1}
    assert not [p.name for p in out.glob("*.json") if p.name not in ("sizes.json", "manifest.json")]
    # interrupted build: a shard and its stats part lost, a half-written shard left, one img2dataset shard undone
    (out / "shards/corpus-000002.tar").unlink()
    (out / ".parts/corpus-000002.tar.parquet").unlink()
    (out / "shards/corpus-000001.tar.tmp").write_bytes(b"half a shard")
    (out / ".staging/img2dataset/00002_stats.json").unlink()
    (out / "manifest.json").unlink()
    cfg = urls_cfg(csv)  # the same config the CLI resolved (the build refuses a different one)
    again = build(cfg, out, workers=1)
    assert again["sha256"] == manifest["sha256"] and again["counts"] == manifest["counts"]
    check_accounting(out, base)


@pytest.mark.integration
def test_cli_missing_url_column_is_one_line_naming_column_and_file(tmp_path, uae):
    bad = tmp_path / "links.csv"
    pd.DataFrame({"link": ["http://127.0.0.1:1/a.jpg"], "caption": ["x"]}).to_csv(bad, index=False)
    r = uae("build-corpus", "--source", "urls", "--input", str(bad), "--captioner", "keep", "--out", str(tmp_path / "c"))
    assert r.returncode == 2
    assert "links.csv: no url column 'url' (columns: link, caption)" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()


@pytest.mark.unit
@pytest.mark.parametrize("content", ["", "url,caption\n"])
def test_empty_url_list_is_a_one_line_error_and_writes_nothing(tmp_path, content):
    empty = tmp_path / "urls.csv"
    empty.write_text(content)
    with pytest.raises(ConfigError, match=r"urls.csv: input file (is empty|has no rows)"):
        build(urls_cfg(empty), tmp_path / "c", workers=1)
    assert not (tmp_path / "c").exists()


@pytest.mark.unit
def test_unknown_img2dataset_option_is_refused_by_name(tmp_path, www):
    csv = write_url_list(tmp_path / "urls.csv", www[1])
    with pytest.raises(ConfigError, match="source.options.thread_cnt: unknown img2dataset option"):
        build(urls_cfg(csv, "source.options.thread_cnt=2"), tmp_path / "c", workers=1)


def make_folder(folder: Path) -> None:
    """Photos with and without .txt captions, a duplicate, and entries that cannot be read as images."""
    make_www(folder)
    (folder / "astronaut.txt").write_text("an astronaut with a flag")
    (folder / "sub").mkdir()
    (folder / "sub" / "rocket.jpg").write_bytes((folder / "rocket.jpg").read_bytes())
    (folder / "dir.jpg").mkdir()  # a folder named like an image
    (folder / "notes.md").write_text("not a row")


@pytest.mark.unit
def test_folder_source_keeps_txt_captions_and_accounts_for_unreadable_entries(tmp_path):
    make_folder(tmp_path / "imgs")
    cfg = load_config(CorpusConfig, ROOT / "manifests/corpus/folder-example.yaml",
                      [f"source.input={tmp_path / 'imgs'}", "shard_size=5", "image_size=48", "filters.min_side=16",
                       "filters.max_aspect=5", "filters.dedup_threshold=4"], kind="corpus")
    manifest = build(cfg, tmp_path / "c", workers=2)
    stats = pd.read_parquet(tmp_path / "c/stats.parquet").set_index("url")
    assert len(stats) == 11 == manifest["counts"]["input_rows"]  # image-named entries only; notes.md/.txt are not rows
    assert stats.loc["dir.jpg", "status"] == "failed" and "Is a directory" in stats.loc["dir.jpg", "reason"]
    assert stats.loc["page.jpg", "status"] == "failed" and stats.loc["truncated.jpg", "status"] == "failed"
    assert stats.loc["pixel.png", "reason"] == "min side 1 < 16" and stats.loc["strip.png", "status"] == "dropped"
    dup_of = {stats.loc["copy.jpg", "reason"], stats.loc["sub/rocket.jpg", "reason"]}
    assert all(r.startswith("near-duplicate of") for r in dup_of)
    samples = {s["json"]["url"]: s for s in read_corpus(tmp_path / "c")}
    assert set(samples) == {"astronaut.jpg"}  # the only photo with a caption: `keep` has nothing to keep for the rest
    assert samples["astronaut.jpg"]["txt"] == "an astronaut with a flag"
    for name in ("chelsea.jpg", "coffee.jpg", "rocket.jpg"):
        assert stats.loc[name, "status"] == "failed" and stats.loc[name, "reason"].startswith("no caption in the source")


@pytest.mark.unit
def test_parquet_source_reads_bytes_paths_and_hf_structs(tmp_path):
    make_www(tmp_path / "w")
    raw = (tmp_path / "w/chelsea.jpg").read_bytes()
    table = pd.DataFrame({
        "image": [raw, "w/coffee.jpg", {"bytes": (tmp_path / "w/rocket.jpg").read_bytes(), "path": "r.jpg"}, b"junk",
                  "w/nope.jpg", None, raw, raw],
        "caption": ["cat", "coffee", "rocket", "junk", "nope", "none", None, "  "],
    })
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"image": {"bytes": v, "path": None} if isinstance(v, bytes) else
             (v if isinstance(v, dict) else {"bytes": None, "path": v}), "caption": c}
            for v, c in zip(table.image, table.caption)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet", row_group_size=2)
    cfg = load_config(CorpusConfig, None, ["source.name=parquet", f"source.input={tmp_path / 't.parquet'}",
                                           "captioner.name=keep", "shard_size=3", "image_size=32"], kind="corpus")
    build(cfg, tmp_path / "c", workers=1)
    stats = pd.read_parquet(tmp_path / "c/stats.parquet")
    assert list(stats.status) == ["ok", "ok", "ok", "failed", "failed", "failed", "failed", "failed"]
    assert "unreadable" in stats.reason[4] and stats.reason[5] == "no image in row"
    assert all(r.startswith("no caption in the source") for r in stats.reason[6:])  # null and blank captions
    assert [s["txt"] for s in read_corpus(tmp_path / "c")] == ["cat", "coffee", "rocket"]
    pd.DataFrame({"image": [raw, b"junk"], "caption": ["a cat", "junk"]}).to_parquet(tmp_path / "plain.parquet")
    plain = load_config(CorpusConfig, None, ["source.name=parquet", f"source.input={tmp_path / 'plain.parquet'}",
                                             "captioner.name=keep", "image_size=32"], kind="corpus")
    assert build(plain, tmp_path / "p", workers=1)["counts"] == {
        "input_rows": 2, "shards": 1, "samples": 1, "status_ok": 1, "status_failed": 1}
    with pytest.raises(ConfigError, match="t.parquet: no image column 'img'"):
        build(load_config(CorpusConfig, None, ["source.name=parquet", f"source.input={tmp_path / 't.parquet'}",
                                               "source.image_col=img", "captioner.name=keep"]), tmp_path / "d")


@pytest.mark.unit
def test_shards_source_rebuilds_a_corpus_from_webdataset_shards(tmp_path):
    first = load_config(CorpusConfig, ROOT / "manifests/corpus/scenes.yaml", ["source.n=7", "shard_size=3", "image_size=32"])
    build(first, tmp_path / "a", workers=1)
    cfg = load_config(CorpusConfig, None, ["source.name=shards", f"source.input={tmp_path / 'a'}", "captioner.name=keep",
                                           "shard_size=4", "image_size=32", "source.options.resize_mode=no"], kind="corpus")
    manifest = build(cfg, tmp_path / "b", workers=1)
    assert manifest["counts"] == {"input_rows": 7, "shards": 2, "samples": 7, "status_ok": 7}
    before = [s["txt"] for s in read_corpus(tmp_path / "a")]
    after = read_corpus(tmp_path / "b")
    assert [s["txt"] for s in after] == before and after[0]["png"].size == (32, 32)


@pytest.mark.integration
def test_cli_source_shortcut_without_manifest_starts_from_that_sources_filters(www, tmp_path, uae):
    folder, base = www
    csv = write_url_list(tmp_path / "urls.csv", base)
    out = tmp_path / "c"
    r = uae("build-corpus", "--source", "urls", "--input", str(csv), "--captioner", "keep", "--workers", "1",
            "source.options.thread_count=4", "source.options.processes_count=1", "source.options.timeout=5",
            "--out", str(out))
    # every served photo is under 200 px: an empty corpus exits 2 naming the commonest reason, folder kept
    assert r.returncode == 2 and "no sample made it" in r.stderr and "min side" in r.stderr, r.stderr[-3000:]
    cfg = json.loads((out / "manifest.json").read_text())["config"]
    assert cfg["name"] == "urls-example" and cfg["filters"]["min_side"] == 200 and cfg["filters"]["max_aspect"] == 3.0
    stats = pd.read_parquet(out / "stats.parquet").set_index("url")
    assert stats.loc[f"{base}/pixel.png", "status"] == "dropped"  # the 1x1 image is not kept
    assert stats.loc[f"{base}/pixel.png", "reason"].startswith("min side 1 < 200")
    assert stats.loc[f"{base}/strip.png", "status"] == "dropped" and stats.loc[f"{base}/strip.png", "reason"]
