"""The encoder (image → caption VLM): the tiny Qwen2.5-VL from config, the scene tokenizer, captioning,
teacher-forced scoring (GRPO log-probs, SFT loss), UAE's text re-encoding, save/load and LoRA."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from uae_data.scenes import parse_caption, render, sample_scene, scene_vocabulary, write_caption
from uae_data.core.errors import ModelLoadError
from uae_train.models.caption_scoring import mask_after_stop
from uae_train.models.encoder import CAPTION_PROMPT, Encoder
from uae_train.models.scene_tokenizer import QWEN_SPECIAL_TOKENS, UNK_TOKEN, build_scene_tokenizer

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: 2 OpenMP threads under contention run ~50x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def enc() -> Encoder:
    return Encoder.tiny(seed=0)


def _batch(k: int = 4, start: int = 0):
    scenes = [sample_scene(start + i) for i in range(k)]
    return [render(s, 64) for s in scenes], [write_caption(s, start + i) for i, s in enumerate(scenes)]


def _state_equal(a: Encoder, b: Encoder) -> bool:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------ tokenizer

def test_scene_tokenizer_encodes_every_caption_without_unk_and_decodes_it_back_exactly():
    tok = build_scene_tokenizer()
    unk = tok.convert_tokens_to_ids(UNK_TOKEN)
    for seed in range(300):
        scene = sample_scene(seed)
        caption = write_caption(scene, seed)
        ids = tok(caption, add_special_tokens=False)["input_ids"]
        assert unk not in ids, caption
        text = tok.decode(ids, skip_special_tokens=True)
        assert text == caption  # punctuation re-attached: "cell." not "cell ."
        assert parse_caption(text) == scene


def test_scene_tokenizer_covers_the_vocabulary_and_keeps_qwen_special_tokens_whole():
    tok = build_scene_tokenizer()
    vocab = tok.get_vocab()
    assert set(scene_vocabulary()) <= set(vocab)
    text = "".join(QWEN_SPECIAL_TOKENS)
    assert tok.convert_ids_to_tokens(tok(text)["input_ids"]) == list(QWEN_SPECIAL_TOKENS)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    # Words outside the scene world map to unk; upper case is folded.
    assert tok.convert_ids_to_tokens(tok("Zebra, RED!", add_special_tokens=False)["input_ids"]) == \
        [UNK_TOKEN, ",", "red", UNK_TOKEN]


def test_chat_template_renders_an_image_turn_and_an_assistant_turn():
    tok = build_scene_tokenizer()
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": CAPTION_PROMPT}]},
                {"role": "assistant", "content": "a red circle."}]
    text = tok.apply_chat_template(messages, tokenize=False)
    assert text == ("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe this image in detail."
                    "<|im_end|>\n<|im_start|>assistant\na red circle.<|im_end|>\n")
    prompt = tok.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")
    assert UNK_TOKEN not in tok.convert_ids_to_tokens(tok(prompt)["input_ids"])


# ------------------------------------------------------------ building, saving, loading

def test_tiny_encoder_builds_offline_with_weights_fixed_by_the_seed(enc):
    assert 100_000 < sum(p.numel() for p in enc.parameters()) < 300_000
    assert enc.hidden_size == 64 and enc.dtype == torch.float32
    assert enc.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert type(enc.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert _state_equal(enc, Encoder.tiny(seed=0))
    assert not _state_equal(enc, Encoder.tiny(seed=1))
    # A 64x64 scene becomes 3x3 merged image tokens, one per grid cell.
    inputs = enc._prompt_inputs([render(sample_scene(0), 64)], None)
    assert int((inputs["input_ids"] == enc.model.config.image_token_id).sum()) == 9


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_save_then_from_pretrained_gives_identical_logits(enc, tmp_path, dtype):
    """bfloat16 too: a cast model keeps its rotary inv_freq in fp32, as a loaded one does."""
    images, captions = _batch(2)
    enc = enc if dtype == "float32" else Encoder.tiny(seed=0, dtype=dtype)
    enc.save_pretrained(tmp_path / "enc")
    assert (tmp_path / "enc" / "model.safetensors").is_file()
    loaded = Encoder.from_pretrained(tmp_path / "enc", device=enc.device, dtype=dtype)
    assert loaded.dtype == enc.dtype
    assert type(loaded.model).__name__ == type(enc.model).__name__
    with torch.no_grad():
        a, mask_a = enc.completion_logprobs(images, captions)
        b, mask_b = loaded.completion_logprobs(images, captions)
    assert torch.equal(a, b) and torch.equal(mask_a, mask_b)
    assert loaded.caption(images, sample=False, max_new_tokens=12) == enc.caption(images, sample=False, max_new_tokens=12)


@pytest.mark.parametrize("make", ["empty", "file", "missing"])
def test_from_pretrained_raises_model_load_error_naming_a_path_without_a_model(tmp_path, make):
    path = tmp_path / "not-a-model"
    if make == "empty":
        path.mkdir()
    elif make == "file":
        path.write_text("hello")
    with pytest.raises(ModelLoadError) as err:
        Encoder.from_pretrained(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    assert isinstance(err.value, ValueError)


def test_lora_trains_only_the_adapter_starts_at_the_base_model_and_round_trips(enc, tmp_path):
    images, captions = _batch(2)
    lora = Encoder.tiny(seed=0, lora={"r": 4})
    trainable = [n for n, p in lora.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    with torch.no_grad():
        base, _ = enc.completion_logprobs(images, captions)
        start, _ = lora.completion_logprobs(images, captions)
        assert torch.allclose(base, start, atol=1e-6)  # gaussian init: B = 0
        g = torch.Generator().manual_seed(0)
        for name, p in lora.model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
        moved, _ = lora.completion_logprobs(images, captions)
        assert not torch.allclose(base, moved, atol=1e-3)
        lora.save_pretrained(tmp_path / "lora")
        loaded = Encoder.from_pretrained(tmp_path / "lora", device=lora.device, dtype="float32")
        assert loaded.has_lora and loaded.trainable_parameters()
        again, _ = loaded.completion_logprobs(images, captions)
        # A new adapter on a saved one: the saved one is merged in, the new one starts at zero.
        stacked = Encoder.from_pretrained(tmp_path / "lora", device=lora.device, dtype="float32", lora={"r": 2})
        on_top, _ = stacked.completion_logprobs(images, captions)
    assert torch.equal(moved, again)
    assert torch.allclose(moved, on_top, atol=1e-3)  # merging B·A into W rounds in fp32
    with pytest.raises(ValueError, match="unknown LoRA option"):
        Encoder.tiny(lora={"rank": 4})


# ------------------------------------------------------------ captioning

def test_caption_is_deterministic_under_a_seed_differs_across_seeds_and_keeps_the_global_rng(enc):
    images, _ = _batch(2)
    rng = torch.get_rng_state()
    a = enc.caption(images, seed=3, max_new_tokens=24)
    assert torch.equal(torch.get_rng_state(), rng)
    assert enc.caption(images, seed=3, max_new_tokens=24) == a
    assert enc.caption(images, seed=4, max_new_tokens=24) != a
    assert all(isinstance(t, str) for t in a)


def test_caption_returns_n_per_image_grouped_by_image(enc):
    images, _ = _batch(2)
    greedy = [enc.caption([im], sample=False, max_new_tokens=16)[0] for im in images]
    assert enc.caption(images, n=2, sample=False, max_new_tokens=16) == [greedy[0], greedy[0], greedy[1], greedy[1]]
    sampled = enc.caption(images, n=3, seed=0, max_new_tokens=16)
    assert len(sampled) == 6
    # Batched in chunks, the greedy grouping is unchanged.
    assert enc.caption(images, n=2, sample=False, max_new_tokens=16, batch_size=3) == \
        [greedy[0], greedy[0], greedy[1], greedy[1]]


def test_truncated_flags_mark_captions_that_hit_max_new_tokens(enc):
    images, _ = _batch(3)
    out = enc.sample_captions(images, n=2, seed=0, max_new_tokens=5)
    stops = set(enc.stop_token_ids)
    for ids, cut in zip(out.token_ids, out.truncated):
        assert cut == (ids[-1] not in stops)
        assert not cut or len(ids) == 5
    texts, flags = enc.caption_with_info(images, seed=0, max_new_tokens=5)
    assert len(texts) == len(flags) == 3


def test_a_caption_that_ends_at_once_is_empty_and_not_truncated():
    enc = Encoder.tiny(seed=0)
    end = enc.end_token_id
    hook = enc.model.lm_head.register_forward_hook(lambda m, i, out: out.index_add(
        -1, torch.tensor([end], device=out.device), torch.full((*out.shape[:-1], 1), 100.0, device=out.device)))
    try:
        out = enc.sample_captions(_batch(2)[0], seed=0, max_new_tokens=8)
    finally:
        hook.remove()
    assert out.texts == ["", ""] and out.truncated == [False, False] and out.token_ids == [[end], [end]]


def test_sampled_tokens_are_scored_with_the_distribution_they_were_sampled_from(enc, monkeypatch):
    """caption() switches off the model's top-k/top-p/repetition defaults and suppresses vision tokens,
    completion_logprobs() masks the same tokens: the per-step sampling log-probs match the re-scored ones."""
    images, _ = _batch(2)
    captured = {}
    generate = enc.model.generate

    def recording_generate(**kwargs):
        config = kwargs["generation_config"]
        config.output_scores, config.return_dict_in_generate = True, True
        out = generate(**kwargs)
        captured["scores"] = torch.stack(out.scores, 1).log_softmax(-1)  # (B, T, V)
        return out.sequences

    monkeypatch.setattr(enc.model, "generate", recording_generate)
    out = enc.sample_captions(images, seed=1, max_new_tokens=20, temperature=0.7)
    monkeypatch.undo()
    with torch.no_grad():
        logp, mask = enc.completion_logprobs(images, out.token_ids, temperature=0.7)
    scores = captured["scores"][:, :logp.shape[1]]
    padded = torch.tensor([ids + [0] * (logp.shape[1] - len(ids)) for ids in out.token_ids], device=scores.device)
    at_tokens = scores.gather(-1, padded[..., None])
    assert torch.allclose(at_tokens.squeeze(-1)[mask], logp[mask], atol=1e-4)


def test_greedy_captions_are_the_teacher_forced_argmax(enc):
    images, _ = _batch(3)
    out = enc.sample_captions(images, sample=False, max_new_tokens=20)
    with torch.no_grad():
        logits, ids, mask = enc._completion_logits(images, out.token_ids, None)
    assert torch.equal(logits.argmax(-1)[mask], ids[mask])


# ------------------------------------------------------------ teacher-forced scoring

def test_completion_logprobs_shapes_mask_and_padding_invariance(enc):
    images, captions = _batch(3)
    captions[1] = "a small red circle sits in the center cell."
    with torch.no_grad():
        logp, mask = enc.completion_logprobs(images, captions)
        alone, alone_mask = enc.completion_logprobs(images[1:2], captions[1:2])
    lengths = [len(enc.tokenizer(c, add_special_tokens=False)["input_ids"]) + 1 for c in captions]  # + end token
    assert logp.shape == mask.shape == (3, max(lengths))
    assert logp.dtype == torch.float32 and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == lengths
    assert (logp[mask] <= 0).all() and torch.isfinite(logp[mask]).all()
    n = alone.shape[1]
    assert torch.allclose(logp[1, :n], alone[0], atol=1e-5) and torch.equal(mask[1, :n], alone_mask[0])


def test_completion_mask_stops_after_the_first_stop_token():
    ids = torch.tensor([[5, 6, 2, 7, 2], [5, 2, 0, 0, 0], [5, 6, 7, 8, 9]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0], [1, 1, 1, 0, 0]], dtype=torch.bool)
    expected = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]], dtype=torch.bool)
    assert torch.equal(mask_after_stop(ids, mask, [2, 0]), expected)


def test_completion_logprobs_carry_gradient_to_language_and_vision_weights_in_train_mode():
    enc = Encoder.tiny(seed=0).train()
    images, captions = _batch(2)
    logp, mask = enc.completion_logprobs(images, captions)
    (logp * mask).sum().backward()
    grads = {n: p.grad for n, p in enc.model.named_parameters()}
    assert grads["lm_head.weight"] is not None and grads["lm_head.weight"].abs().sum() > 0
    vision = [g for n, g in grads.items() if ".visual." in f".{n}" and g is not None]
    assert vision and any(g.abs().sum() > 0 for g in vision)
    with torch.no_grad():
        assert not enc.completion_logprobs(images, captions)[0].requires_grad


def test_completion_logprobs_reject_token_ids_holding_image_placeholders(enc):
    with pytest.raises(ValueError, match="vision placeholder"):
        enc.completion_logprobs(_batch(1)[0], [[7, enc.model.config.image_token_id, 2]])


def test_sft_loss_falls_and_token_accuracy_rises_over_30_adamw_steps():
    enc = Encoder.tiny(seed=0).train()
    images, captions = _batch(4)
    opt = torch.optim.AdamW(enc.trainable_parameters(), lr=3e-3)
    history = []
    for _ in range(30):
        loss, accuracy = enc.sft_loss(images, captions)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append((loss.item(), accuracy))
    (first_loss, first_acc), (last_loss, last_acc) = history[0], history[-1]
    assert first_loss > np.log(len(enc.tokenizer)) - 0.5  # starts near uniform
    assert last_loss < 0.5 * first_loss
    assert last_acc > first_acc + 0.3


def test_token_weights_count_chosen_target_tokens_w_times(enc):
    images, captions = _batch(2)
    shapes = enc.word_token_ids(["circle", "square", "triangle", "star", "cross", "ring", "diamond"])
    assert shapes and all(enc.tokenizer.convert_ids_to_tokens(i) in {"circle", "square", "triangle", "star", "cross",
                                                                    "ring", "diamond"} for i in shapes)
    with torch.no_grad():
        plain, acc = enc.sft_loss(images, captions)
        same, acc1 = enc.sft_loss(images, captions, token_weights={i: 1.0 for i in shapes})
        up, _ = enc.sft_loss(images, captions, token_weights={i: 5.0 for i in shapes})
        # by hand: per-token CE, shape tokens counted 5 times, divided by the token count
        completions = enc._completion_ids(captions, add_end=True)
        logits, ids, mask = enc._completion_logits(images, completions, None)
        ce = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), ids.flatten(), reduction="none").view_as(ids)
        w = torch.where(torch.isin(ids, torch.tensor(sorted(shapes))), 5.0, 1.0) * mask
    assert same.item() == pytest.approx(plain.item(), rel=1e-5) and acc1 == acc
    assert up.item() == pytest.approx(((ce * w).sum() / mask.sum()).item(), rel=1e-5) and up.item() > plain.item()


def test_image_word_loss_reads_words_at_each_image_token_and_trains():
    from uae_train.stages.pretrain import cell_targets, word_ids

    enc = Encoder.tiny(image_size=48, cell_embedding=True, seed=0).train()
    scenes_ = [sample_scene(i) for i in range(4)]
    images, captions = [render(s, 48) for s in scenes_], [write_caption(s, i) for i, s in enumerate(scenes_)]
    targets = cell_targets([{"meta": {"scene": s.to_dict()}} for s in scenes_], word_ids(enc))
    assert [len(t) for t in targets] == [9] * 4  # one target list per image token, row-major cells
    with torch.no_grad():
        plain, _ = enc.sft_loss(images, captions)
        both, _ = enc.sft_loss(images, captions, image_targets=targets, image_weight=0.5)
    assert both.item() > plain.item()
    with pytest.raises(ValueError, match="name 8 image tokens; the batch has 9"):
        enc.sft_loss(images[:1], captions[:1], image_targets=[targets[0][:8]])
    opt = torch.optim.AdamW(enc.trainable_parameters(), lr=3e-3)
    first = None
    for _ in range(20):
        loss = enc.sft_loss(images, captions, image_targets=targets, image_weight=1.0)[0] - enc.sft_loss(images, captions)[0]
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first  # the image-word part alone falls


# ------------------------------------------------------------ UAE's text path

def test_encode_text_returns_right_padded_last_layer_states_of_the_generate_turn(enc, caplog):
    _, captions = _batch(2)
    texts = [captions[0], "a red circle.", captions[1]]
    with torch.no_grad():
        hidden, mask = enc.encode_text(texts)
        alone, alone_mask = enc.encode_text(texts[1:2])
    assert hidden.shape == (3, mask.shape[1], enc.hidden_size) and mask.dtype == torch.bool
    # <|im_start|> generate a red circle . <|im_end|> <|im_start|> assistant
    assert alone_mask.sum().item() == 9
    assert mask.sum(1).tolist()[1] == 9 and mask[:, 0].all()
    assert torch.allclose(hidden[1, :9], alone[0], atol=1e-5)
    assert not mask[1, 9:].any()
    with caplog.at_level(logging.WARNING), torch.no_grad():
        cut, cut_mask, n_cut = enc.encode_text(texts, max_length=20, return_truncated=True)
    assert n_cut == 2 and cut.shape[1] == 20 and cut_mask.sum(1).tolist() == [20, 9, 20]
    assert "2 of 3 texts" in caplog.text
    assert torch.allclose(cut[0], hidden[0, :20], atol=1e-5)
