"""The model factory (uae_train.models.factory) and the one encode-then-paint helper (models.painting)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from uae_data.core.errors import InputError
from uae_train.evaluation.autoencoder import text_to_image
from uae_train.models.decoder import Decoder
from uae_train.models.factory import TINY, load_decoder, load_encoder, load_pair
from uae_train.models.painting import paint

pytestmark = pytest.mark.unit
TEXTS = ["a red cross", "a blue ring left of a green star", "a small yellow square"]


def test_load_pair_gives_the_saved_models_on_the_device_in_eval_mode(tiny_run):
    encoder, decoder = load_pair(tiny_run, "cpu")
    assert not encoder.model.training and not decoder.training
    assert encoder.device == decoder.device == torch.device("cpu")
    saved = Decoder.tiny(encoder.hidden_size, image_size=32, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(decoder.parameters(), saved.parameters()))


def test_load_pair_turns_a_folder_without_models_into_one_input_error_line(tmp_path):
    with pytest.raises(InputError, match="encoder") as err:
        load_pair(tmp_path, "cpu")
    assert "\n" not in str(err.value)


def test_tiny_refs_build_the_seeded_tiny_models_in_eval_mode():
    encoder = load_encoder(TINY, "cpu", image_size=48, seed=1)
    decoder = load_decoder(TINY, encoder.hidden_size, "cpu", image_size=32, seed=2)
    assert not encoder.model.training and not decoder.training
    same = Decoder.tiny(encoder.hidden_size, image_size=32, seed=2)
    for a, b in zip(decoder.parameters(), same.parameters()):
        assert torch.equal(a, b)


def test_paint_is_the_batched_encode_then_generate_sequence_and_batch_free(tiny_run):
    encoder, decoder = load_pair(tiny_run, "cpu")
    seeds = [5, 6, 7]
    with torch.no_grad():
        hidden, mask = decoder.reader(encoder).encode_text(TEXTS[:2], max_length=16)
        by_hand = decoder.generate(hidden.float(), mask, seeds[:2], steps=2, guidance=2.0)
        hidden, mask = decoder.reader(encoder).encode_text(TEXTS[2:], max_length=16)
        by_hand += decoder.generate(hidden.float(), mask, seeds[2:], steps=2, guidance=2.0)
    painted = paint(decoder.reader(encoder), decoder, TEXTS, seeds, steps=2, guidance=2.0, max_text_tokens=16, batch=2)
    assert [np.asarray(a).tobytes() for a in painted] == [np.asarray(b).tobytes() for b in by_hand]
    one_batch = paint(decoder.reader(encoder), decoder, TEXTS, seeds, steps=2, guidance=2.0, max_text_tokens=16)
    assert all(np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max() <= 1 for a, b in zip(one_batch, painted))
    generate = text_to_image(encoder, decoder, steps=2, guidance=2.0, max_text_tokens=16, batch_size=2)
    assert [np.asarray(a).tobytes() for a in generate(TEXTS, seeds)] == [np.asarray(b).tobytes() for b in painted]
