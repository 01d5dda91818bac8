"""The decoder (caption states → image): tiny SD3 MMDiT from config, connector, flow-matching loss,
seeded Euler sampling, save/load, LoRA, the VAE latent path and the stock-pipeline wrapper."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from uae_data.scenes import render, sample_scene, scene_vocabulary, tokenize_words, write_caption
from uae_data.core.errors import ModelLoadError
from uae_train.models.decoder import Decoder
from uae_train.models.image_tensors import pil_to_tensor
from uae_train.models.pipeline_decoder import PipelineDecoder
from uae_train.models.text_condition import TextConditioner

pytestmark = pytest.mark.unit

H = 16  # text hidden size of the stand-in conditioner


class WordStates(nn.Module):
    """A TextConditioner stand-in: scene words → fixed random embeddings, right-padded with a mask."""

    def __init__(self, hidden: int = H, seed: int = 0) -> None:
        super().__init__()
        self.vocab = {w: i + 1 for i, w in enumerate(scene_vocabulary())}
        torch.manual_seed(seed)
        self.embed = nn.Embedding(len(self.vocab) + 1, hidden)
        self.hidden_size = hidden

    @torch.no_grad()
    def encode_text(self, texts: list[str], max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        ids = [[self.vocab.get(w, 0) for w in tokenize_words(t)][:max_length] for t in texts]
        length = max(len(i) for i in ids)
        padded = torch.tensor([i + [0] * (length - len(i)) for i in ids])
        mask = torch.tensor([[True] * len(i) + [False] * (length - len(i)) for i in ids])
        return self.embed(padded) * mask[..., None], mask


@pytest.fixture(scope="module")
def words() -> TextConditioner:
    return WordStates()


def _states(batch: int, length: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, H, generator=g), torch.ones(batch, length, dtype=torch.bool)


def _arrays(images) -> np.ndarray:
    return np.stack([np.asarray(im, dtype=np.int16) for im in images])


def test_tiny_decoder_builds_seeded_with_the_documented_sizes():
    a, b, c = Decoder.tiny(H, seed=0), Decoder.tiny(H, seed=0), Decoder.tiny(H, seed=1)
    assert a.image_size == 32 and a.latent_channels == 3 and a.vae is None
    assert 2_000_000 < sum(p.numel() for p in a.parameters()) < 3_000_000
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    # The paper's connector shape: H → 2·D → D, D = joint_attention_dim.
    assert a.connector.net[0].out_features == 2 * 64 and a.connector.net[2].out_features == 64
    assert not a.pooled.requires_grad and torch.count_nonzero(a.pooled) == 0


def test_sigmas_run_from_one_to_zero_and_velocity_has_the_latent_shape():
    d = Decoder.tiny(H).eval()
    sig = d.sigmas(10)
    assert sig.shape == (11,) and sig[0] == 1.0 and sig[-1] == 0.0 and bool((sig[1:] < sig[:-1]).all())
    hidden, mask = _states(2, 5)
    v = d.velocity(torch.randn(2, 3, 32, 32), torch.tensor([0.3, 0.9]), hidden, mask)
    assert v.shape == (2, 3, 32, 32) and v.dtype == torch.float32
    assert d.velocity(torch.randn(2, 3, 32, 32), 0.5, hidden, mask, guidance=4.0).shape == (2, 3, 32, 32)


def test_padded_text_positions_do_not_change_the_velocity():
    d = Decoder.tiny(H).eval()
    hidden, mask = _states(1, 5)
    x = torch.randn(1, 3, 32, 32)
    padded = torch.cat([hidden, 100 * torch.randn(1, 7, H)], dim=1)  # garbage in the padded slots
    padded_mask = torch.cat([mask, torch.zeros(1, 7, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        plain = d.velocity(x, 0.5, hidden, mask)
        # Batch-mate with a longer caption: row 0 is padded inside a wider batch.
        long_hidden, long_mask = _states(1, 12, seed=1)
        both = d.velocity(torch.cat([x, x]), 0.5, torch.cat([padded, long_hidden]), torch.cat([padded_mask, long_mask]))
    torch.testing.assert_close(both[0:1], plain, atol=1e-5, rtol=1e-4)
    assert d.velocity(x, 0.5, padded, padded_mask).sub(plain).abs().max() < 1e-5


def test_loss_is_a_finite_scalar_with_gradients_in_transformer_and_connector():
    d = Decoder.tiny(H).train()
    hidden, mask = _states(4, 6)
    images = [render(sample_scene(i), 32) for i in range(4)]  # PIL input path
    loss = d.loss(images, hidden, mask, generator=torch.Generator().manual_seed(0))
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    dit_grads = [p.grad for p in d.transformer.parameters() if p.grad is not None]
    assert dit_grads and sum(float(g.abs().sum()) for g in dit_grads) > 0
    again = d.loss(images, hidden, mask, generator=torch.Generator().manual_seed(0))
    assert torch.equal(loss.detach(), again.detach())  # seeded: t, noise and text dropout repeat
    # DiT's init zeroes the final layer and the adaLN gates, so the text path gets gradients from step 3 on
    sgd = torch.optim.SGD(d.trainable_parameters(), lr=0.1)
    for step in range(1, 3):
        sgd.step()
        d.zero_grad()
        d.loss(images, hidden, mask, generator=torch.Generator().manual_seed(step)).backward()
    assert d.connector.net[0].weight.grad is not None and d.connector.net[0].weight.grad.abs().sum() > 0


def test_generate_is_deterministic_per_seed_and_independent_of_batch_composition(words):
    d = Decoder.tiny(H).eval()
    short, long = "a red circle.", write_caption(sample_scene(5), 5)
    h1, m1 = words.encode_text([short])
    h2, m2 = words.encode_text([short, long])
    assert m2.shape[1] > m1.shape[1]  # the short caption is padded in the pair
    alone = d.generate(h1, m1, seeds=[7], steps=6)
    again = d.generate(h1, m1, seeds=[7], steps=6)
    pair = d.generate(h2, m2, seeds=[7, 8], steps=6)
    other_seed = d.generate(h1, m1, seeds=[8], steps=6)
    assert alone[0].size == (32, 32) and alone[0].mode == "RGB" and len(pair) == 2
    assert np.array_equal(_arrays(alone), _arrays(again))
    assert np.abs(_arrays(alone) - _arrays(pair[:1])).max() <= 1  # same image up to uint8 rounding
    assert np.abs(_arrays(alone) - _arrays(other_seed)).max() > 10
    # A batch of one text with several seeds gives G different samples of that text (GRPO groups).
    group = d.generate(h1, m1, seeds=[7, 8], steps=6)
    assert np.abs(_arrays(group[:1]) - _arrays(alone)).max() <= 1


def test_guidance_runs_with_a_negative_text_and_with_the_null_condition(words):
    d = Decoder.tiny(H, init="torch").eval()  # random, text-dependent outputs (DiT's init starts at v = 0)
    h, m = words.encode_text(["a red circle in the center cell."])
    negative = words.encode_text(["a blue square."])
    plain = d.sample(h, m, seeds=[1], steps=4)
    with_negative = d.sample(h, m, seeds=[1], steps=4, guidance=4.0, negative=negative)
    with_null = d.sample(h, m, seeds=[1], steps=4, guidance=4.0)
    for out in (with_negative, with_null):
        assert out.shape == (1, 3, 32, 32) and torch.isfinite(out).all()
        assert not torch.allclose(out, plain)
    assert not torch.allclose(with_negative, with_null)


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    d = Decoder.tiny(H, seed=3).eval()
    with torch.no_grad():
        d.connector.net[2].bias.add_(0.1)  # weights that differ from any fresh init
    d.save_pretrained(tmp_path / "dec")
    config = json.loads((tmp_path / "dec" / "decoder_config.json").read_text())
    assert config["format"] == "uae-decoder" and config["text_hidden_size"] == H
    loaded = Decoder.from_pretrained(tmp_path / "dec").eval()
    hidden, mask = _states(2, 5)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(d.velocity(x, 0.4, hidden, mask), loaded.velocity(x, 0.4, hidden, mask))
    assert np.array_equal(_arrays(d.generate(hidden, mask, [0, 1], steps=3)),
                          _arrays(loaded.generate(hidden, mask, [0, 1], steps=3)))
    assert loaded.scheduler.config.shift == 1.0


def test_lora_trains_only_adapter_and_connector_and_round_trips(tmp_path):
    d = Decoder.tiny(H, lora_rank=4, lora_alpha=8, init="torch").eval()  # a base whose LoRA'd layers matter
    names = [n for n, p in d.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n or n.startswith("connector.") for n in names)
    assert any(n.startswith("connector.") for n in names)
    hidden, mask = _states(1, 4)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        base = d.velocity(x, 0.5, hidden, mask)
        for n, p in d.transformer.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)  # a trained adapter (peft's gaussian init starts B at 0)
        adapted = d.velocity(x, 0.5, hidden, mask)
        with d.adapter_disabled():
            reference = d.velocity(x, 0.5, hidden, mask)
    assert not torch.allclose(adapted, base)
    torch.testing.assert_close(reference, base)
    d.save_pretrained(tmp_path / "full")
    loaded = Decoder.from_pretrained(tmp_path / "full").eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.velocity(x, 0.5, hidden, mask), adapted)
    # The saved transformer/ stays a plain diffusers folder (base weights, original names).
    from diffusers import SD3Transformer2DModel

    SD3Transformer2DModel.from_pretrained(tmp_path / "full" / "transformer")
    # Adapter-only checkpoint: the base is reloaded from config.base_model.
    d.config.base_model = str(tmp_path / "full")
    d.save_pretrained(tmp_path / "lora_only", include_base=False)
    assert not (tmp_path / "lora_only" / "transformer").exists()
    small = Decoder.from_pretrained(tmp_path / "lora_only").eval()
    with torch.no_grad():
        torch.testing.assert_close(small.velocity(x, 0.5, hidden, mask), adapted)


def test_vae_latent_path_trains_generates_and_round_trips(tmp_path):
    d = Decoder.tiny(H, latent="vae").eval()
    assert d.latent_channels == 4 and d.vae_scale_factor == 2 and d.image_size == 32
    hidden, mask = _states(2, 5)
    loss = d.loss(torch.rand(2, 3, 32, 32) * 2 - 1, hidden, mask, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is None for p in d.vae.parameters())
    images = d.generate(hidden, mask, [0, 1], steps=2)
    assert images[0].size == (32, 32)
    d.save_pretrained(tmp_path / "dec")
    loaded = Decoder.from_pretrained(tmp_path / "dec").eval()
    assert np.array_equal(_arrays(images), _arrays(loaded.generate(hidden, mask, [0, 1], steps=2)))


def test_bad_paths_raise_one_line_model_load_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    for bad in (tmp_path / "missing", tmp_path / "empty", tmp_path / "file.txt"):
        with pytest.raises(ModelLoadError) as err:
            Decoder.from_pretrained(bad)
        assert str(bad) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ModelLoadError):
        PipelineDecoder.from_pretrained(tmp_path / "empty")
    Decoder.tiny(H).save_pretrained(tmp_path / "dec")
    (tmp_path / "dec" / "decoder_config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="decoder_config.json"):
        Decoder.from_pretrained(tmp_path / "dec")


@pytest.mark.parametrize("size, patch, prediction", [(32, 2, "v"), (48, 16, "x")])
def test_training_on_scene_images_cuts_the_loss(size, patch, prediction):
    """v-prediction on small patches, and the CPU demo's x-prediction with one 16 px token per grid cell."""
    torch.manual_seed(0)
    d = Decoder.tiny(H, image_size=size, patch_size=patch, prediction=prediction, seed=0, uncond_prob=0.0)
    images = torch.stack([torch.from_numpy(np.asarray(render(sample_scene(i), size), dtype=np.float32))
                          for i in range(8)]).permute(0, 3, 1, 2) / 127.5 - 1
    hidden, mask = _states(8, 6, seed=1)
    g = torch.Generator().manual_seed(123)
    probes = [(t, torch.randn(8, 3, size, size, generator=g)) for t in (0.2, 0.5, 0.8)]

    def measure() -> float:
        d.eval()
        with torch.no_grad():
            return float(np.mean([d.loss(images, hidden, mask, t=t, noise=n).item() for t, n in probes]))

    start = measure()
    optimizer = torch.optim.AdamW(d.trainable_parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    d.train()
    for _ in range(40):
        optimizer.zero_grad()
        d.loss(images, hidden, mask, generator=gen).backward()
        optimizer.step()
    end = measure()
    assert end < 0.7 * start, (start, end)


@pytest.fixture(scope="module")
def tiny_sd3_folder(tmp_path_factory):
    """A complete StableDiffusion3Pipeline from configs: two tiny CLIPs, a tiny T5, word-level tokenizers."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, PreTrainedTokenizerFast, T5Config, T5EncoderModel

    vocab = ["<pad>", "<unk>", "<s>", "</s>", *scene_vocabulary()]

    def tokenizer() -> PreTrainedTokenizerFast:
        model = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
        model.pre_tokenizer = pre_tokenizers.Whitespace()
        return PreTrainedTokenizerFast(tokenizer_object=model, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                                       eos_token="</s>", model_max_length=16)

    def clip() -> CLIPTextModelWithProjection:
        return CLIPTextModelWithProjection(CLIPTextConfig(
            vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            max_position_embeddings=16, projection_dim=32, pad_token_id=0, bos_token_id=2, eos_token_id=3))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        pipe = StableDiffusion3Pipeline(
            transformer=SD3Transformer2DModel(sample_size=16, patch_size=2, in_channels=4, out_channels=4, num_layers=2,
                                              attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                                              caption_projection_dim=16, pooled_projection_dim=64, pos_embed_max_size=16),
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
            vae=AutoencoderKL(latent_channels=4, block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                              up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, norm_num_groups=4,
                              scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False, use_post_quant_conv=False),
            text_encoder=clip(), tokenizer=tokenizer(), text_encoder_2=clip(), tokenizer_2=tokenizer(),
            text_encoder_3=T5EncoderModel(T5Config(vocab_size=len(vocab), d_model=32, d_kv=8, d_ff=32, num_layers=1,
                                                   num_heads=2, pad_token_id=0, eos_token_id=3)),
            tokenizer_3=tokenizer())
        folder = tmp_path_factory.mktemp("sd3") / "tiny-sd3"
        pipe.save_pretrained(folder)
        empty_pooled = pipe.encode_prompt("", None, None, do_classifier_free_guidance=False)[2][0]
    return folder, empty_pooled


def test_pipeline_decoder_generates_from_caption_text_per_seed(tiny_sd3_folder):
    folder, _ = tiny_sd3_folder
    p = PipelineDecoder.from_pretrained(folder)
    assert type(p.pipeline).__name__ == "StableDiffusion3Pipeline"
    alone = p.generate_text(["a red circle ."], [3], steps=2, guidance=3.0)
    pair = p.generate_text(["a red circle .", "two blue squares ."], [3, 4], steps=2, guidance=3.0)
    assert alone[0].size == (32, 32) and alone[0].mode == "RGB"
    assert np.abs(_arrays(alone) - _arrays(pair[:1])).max() <= 1


def test_decoder_starts_from_an_sd3_folder_with_the_empty_prompt_pooled_vector(tiny_sd3_folder):
    folder, empty_pooled = tiny_sd3_folder
    with pytest.raises(ModelLoadError, match="text_hidden_size"):
        Decoder.from_pretrained(folder)
    d = Decoder.from_pretrained(folder, text_hidden_size=H).eval()
    torch.testing.assert_close(d.pooled.detach(), empty_pooled.float())
    assert d.vae is not None and d.scheduler.config.shift == 3.0 and d.config.base_model == str(folder)
    hidden, mask = _states(1, 3)
    assert d.generate(hidden, mask, [0], steps=2)[0].size == (32, 32)


def test_sampler_paints_back_an_image_the_model_overfit():
    """Training and sampling agree on the flow convention: overfit one image, sample it back closely.

    4 px patches (64 tokens, not 256) and 150 steps already bring the error to 0.07 of the image's variance."""
    torch.manual_seed(0)
    dec = Decoder.tiny(16, image_size=32, seed=0, uncond_prob=0.0, patch_size=4)
    x = pil_to_tensor([render(sample_scene(3), 32)])
    h, m = torch.randn(1, 4, 16), torch.ones(1, 4, dtype=torch.bool)
    opt = torch.optim.AdamW(dec.trainable_parameters(), lr=2e-3)
    dec.train()
    for i in range(150):
        loss = dec.loss(x.repeat(8, 1, 1, 1), h.repeat(8, 1, 1), m.repeat(8, 1), generator=torch.Generator().manual_seed(i))
        opt.zero_grad()
        loss.backward()
        opt.step()
    dec.eval()
    out = dec.sample(h, m, [0], steps=20)
    assert float(((out - x) ** 2).mean()) < 0.25 * float(((x - x.mean()) ** 2).mean())


def test_x_prediction_turns_the_dit_output_into_a_velocity_and_round_trips(tmp_path):
    d = Decoder.tiny(H, image_size=48, patch_size=16, seed=2, prediction="x").eval()
    hidden, mask = _states(2, 5)
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        states, m = d.context(hidden, mask)
        raw = d.transformer(hidden_states=x, encoder_hidden_states=states, pooled_projections=d.pooled.expand(2, -1),
                            timestep=torch.full((2,), 400.0), return_dict=False)[0]  # the DiT's x̂
        v = d.velocity(x, 0.4, hidden, mask)
        assert torch.allclose(v, (x - raw) / 0.4, atol=1e-5)
        # t below min_t is clamped, so the last Euler step stays finite
        assert torch.isfinite(d.velocity(x, 0.0, hidden, mask)).all()
    d.save_pretrained(tmp_path / "dec")
    loaded = Decoder.from_pretrained(tmp_path / "dec").eval()
    assert loaded.config.prediction == "x"
    with torch.no_grad():
        assert torch.equal(d.velocity(x, 0.7, hidden, mask), loaded.velocity(x, 0.7, hidden, mask))
    with pytest.raises(ValueError, match="prediction"):
        Decoder.tiny(H, prediction="eps")


def test_caption_reliance_is_zero_for_identical_captions_and_positive_for_a_decoder_that_reads_them(words):
    from uae_train.evaluation.caption_reliance import caption_reliance

    scenes = [sample_scene(i) for i in range(6)]
    images = [render(s, 32) for s in scenes]
    d = Decoder.tiny(H, seed=0, uncond_prob=0.0)
    same = caption_reliance(d, words, images, ["a red circle"] * 6)
    assert same["gain"] == 0.0 and same["true_loss"] == same["shuffled_loss"]
    # A decoder that reads its text exactly: its "text states" are the mean colour of the described scene
    # and its loss is the distance to the image's mean colour, so true captions cost 0 and rolled ones more.
    from uae_data.scenes import parse_caption

    class ColourText:
        def encode_text(self, texts, max_length=None):
            means = [pil_to_tensor([render(parse_caption(t), 32)]).mean((0, 2, 3)) for t in texts]
            return torch.stack(means)[:, None, :], torch.ones(len(texts), 1, dtype=torch.bool)

    class ReadsColour(nn.Module):
        def encode_images(self, images, generator=None):
            return pil_to_tensor(images)

        def loss(self, images, hidden, mask, generator=None, t=None, noise=None):
            return ((pil_to_tensor(images).mean((2, 3)) - hidden[:, 0]) ** 2).mean()

    captions = [write_caption(s, i) for i, s in enumerate(scenes)]
    reader = ReadsColour().train()
    taught = caption_reliance(reader, ColourText(), images, captions)
    assert reader.training  # the mode is restored
    assert taught["true_loss"] < 1e-10 < taught["shuffled_loss"]
    assert taught["gain"] == taught["shuffled_loss"] - taught["true_loss"] and taught["relative_gain"] > 0.99
    with pytest.raises(ValueError, match="2 images"):
        caption_reliance(d, words, images[:1], captions[:1])


def test_tiny_token_grid_positions_are_distinct_and_survive_save_load(tmp_path):
    """diffusers' PatchEmbed cropped a 3×3 grid from a 32-wide one: all nine positions had cosine > 0.999."""
    d = Decoder.tiny(H, image_size=48, patch_size=16)
    emb = d.transformer.pos_embed.cropped_pos_embed(48, 48).reshape(9, -1)
    unit = torch.nn.functional.normalize(emb, dim=-1)
    cos = (unit @ unit.T)[~torch.eye(9, dtype=torch.bool)]
    assert float(cos.max()) < 0.9
    d.save_pretrained(tmp_path / "dec")
    assert torch.equal(Decoder.from_pretrained(tmp_path / "dec").transformer.pos_embed.pos_embed, d.transformer.pos_embed.pos_embed)


def test_dit_init_starts_every_block_as_identity_with_a_zero_final_layer():
    d = Decoder.tiny(H, seed=0)
    tr = d.transformer
    assert not tr.proj_out.weight.any() and not tr.norm_out.linear.weight.any()
    assert all(not b.norm1.linear.weight.any() for b in tr.transformer_blocks)
    hidden, mask = _states(2, 4)
    with torch.no_grad():
        assert not d.velocity(torch.randn(2, 3, 32, 32), 0.5, hidden, mask).any()  # v-prediction: output 0
    torch_init = Decoder.tiny(H, seed=0, init="torch").transformer
    assert torch_init.proj_out.weight.abs().sum() > 0
    with pytest.raises(ValueError, match="init"):
        Decoder.tiny(H, init="zeros")


def test_timestep_shift_moves_sampling_and_training_towards_noise(tmp_path):
    """SD3's shift σ' = sσ / (1 + (s − 1)σ) on the sampler, and ln s on the training logit mean."""
    import math

    from uae_train.models.flow_matching import sample_timesteps

    d, plain = Decoder.tiny(H, shift=16.0), Decoder.tiny(H)
    sig, base = d.sigmas(10), plain.sigmas(10)
    assert d.scheduler.config.shift == 16.0 and sig[0] == 1.0 and sig[-1] == 0.0
    assert bool((sig[1:-1] > base[1:-1]).all()) and int((sig[1:-1] > 0.9).sum()) == 5  # plain: 0 of 9
    assert float(sig[1]) == pytest.approx(16 * 0.999 * 0.9 / (1 + 15 * 0.999 * 0.9), abs=0.01)
    assert d.config.logit_mean == pytest.approx(math.log(16)) and plain.config.logit_mean == 0.0
    t = sample_timesteps(20_000, "logit_normal", d.config.logit_mean, 1.0, torch.Generator().manual_seed(0))
    assert float(t.median()) == pytest.approx(16 / 17, abs=0.005)
    assert Decoder.tiny(H, shift=16.0, logit_mean=1.0).config.logit_mean == 1.0  # an explicit mean wins
    d.save_pretrained(tmp_path / "dec")
    back = Decoder.from_pretrained(tmp_path / "dec")
    assert torch.equal(back.sigmas(10), d.sigmas(10)) and back.config.logit_mean == d.config.logit_mean
    with pytest.raises(ValueError, match="shift"):
        Decoder.tiny(H, shift=0.0)
