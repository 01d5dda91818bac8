"""uae_train.evaluation.inputs: the model choices the CLI and the demo share, checked without loading a model."""
from __future__ import annotations

import pytest

from uae_data.core.errors import ConfigError
from uae_train.evaluation.inputs import geneval_generator, mmt_answerer, recon_models

pytestmark = pytest.mark.unit


def test_mmt_answerer_picks_a_scene_answerer_by_name_and_reads_captions_it_is_given():
    from uae_eval.mmt_bench.answerers import oracle

    assert mmt_answerer("oracle") is oracle
    rows = [{"A": "a", "B": "b", "C": "c", "D": "d"}] * 20
    first, again = mmt_answerer("random", seed=3), mmt_answerer("random", seed=3)
    assert [first([], "q", r) for r in rows] == [again([], "q", r) for r in rows]  # seeded
    seen = []
    reader = mmt_answerer("caption-reader", caption=lambda images: seen.append(images) or ["no scene here"])
    assert reader(["img"], "q", {"qtype": "count", "target": "x"}) == "Z" and seen == [["img"]]


def test_geneval_generator_refuses_two_painters_and_defaults_to_the_manifest():
    with pytest.raises(ConfigError, match="--decoder or --pipeline, not both"):
        geneval_generator(None, decoder="d", pipeline="p")
    assert geneval_generator(None) == (None, None)
    assert recon_models(None) == (None, None, None)
