"""Tiny diffusers text-to-image pipelines of the real classes (SD3, FLUX, SANA), built from config with seeded
random weights and word-level tokenizers over the scene vocabulary, saved with `save_pretrained` so tests load
them through `AutoPipelineForText2Image` exactly as a real checkpoint folder. Each paints 32×32 images."""
from __future__ import annotations

from pathlib import Path

import torch

from uae_data.scenes import scene_vocabulary

VOCAB = ["<pad>", "<unk>", "<s>", "</s>", *scene_vocabulary()]


def word_tokenizer(max_length: int = 16, padding_side: str = "right"):
    """A PreTrainedTokenizerFast over the scene vocabulary (unknown words map to <unk>)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    model = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="<unk>"))
    model.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=model, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>", model_max_length=max_length, padding_side=padding_side)


def _clip_text(with_projection: bool, hidden: int = 16, projection: int = 32):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(vocab_size=len(VOCAB), hidden_size=hidden, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16, projection_dim=projection, pad_token_id=0,
                         bos_token_id=2, eos_token_id=3)
    return CLIPTextModelWithProjection(cfg) if with_projection else CLIPTextModel(cfg)


def _t5(d_model: int = 32):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=len(VOCAB), d_model=d_model, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                                   pad_token_id=0, eos_token_id=3))


def _kl_vae(latent_channels: int, blocks: tuple[int, ...]):
    from diffusers import AutoencoderKL

    return AutoencoderKL(latent_channels=latent_channels, block_out_channels=blocks,
                         down_block_types=("DownEncoderBlock2D",) * len(blocks),
                         up_block_types=("UpDecoderBlock2D",) * len(blocks), layers_per_block=1, norm_num_groups=4,
                         scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False, use_post_quant_conv=False)


def tiny_sd3(path: Path, seed: int = 0):
    """StableDiffusion3Pipeline: two tiny CLIPs, a tiny T5, an SD3 DiT on 4-channel latents (VAE ÷2)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe = StableDiffusion3Pipeline(
            transformer=SD3Transformer2DModel(sample_size=16, patch_size=2, in_channels=4, out_channels=4, num_layers=2,
                                              attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                                              caption_projection_dim=16, pooled_projection_dim=64, pos_embed_max_size=16),
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=_kl_vae(4, (8, 16)),
            text_encoder=_clip_text(True), tokenizer=word_tokenizer(), text_encoder_2=_clip_text(True),
            tokenizer_2=word_tokenizer(), text_encoder_3=_t5(), tokenizer_3=word_tokenizer())
    pipe.save_pretrained(path)
    return pipe


def tiny_flux(path: Path, seed: int = 0):
    """FluxPipeline: a tiny CLIP (pooled) and T5, a Flux transformer on packed 1-channel latents (VAE ÷2)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe = FluxPipeline(
            transformer=FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,
                                               attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                               pooled_projection_dim=16, axes_dims_rope=[4, 4, 8]),
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=_kl_vae(1, (4, 8)),
            text_encoder=_clip_text(False), tokenizer=word_tokenizer(), text_encoder_2=_t5(),
            tokenizer_2=word_tokenizer(32))
    pipe.save_pretrained(path)
    return pipe


def tiny_sana(path: Path, seed: int = 0):
    """SanaPipeline: a tiny Gemma2 text encoder, a Sana linear-attention DiT, a DC-AE (÷2). Call it with
    use_resolution_binning=False: binning maps any size to Sana's ~1024 px aspect-ratio table."""
    from diffusers import AutoencoderDC, FlowMatchEulerDiscreteScheduler, SanaPipeline, SanaTransformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe = SanaPipeline(
            transformer=SanaTransformer2DModel(patch_size=1, in_channels=4, out_channels=4, num_layers=1,
                                               num_attention_heads=2, attention_head_dim=4, num_cross_attention_heads=2,
                                               cross_attention_head_dim=4, cross_attention_dim=8, caption_channels=8,
                                               sample_size=32),
            vae=AutoencoderDC(in_channels=3, latent_channels=4, attention_head_dim=2,
                              encoder_block_types=("ResBlock", "EfficientViTBlock"),
                              decoder_block_types=("ResBlock", "EfficientViTBlock"),
                              encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8),
                              encoder_qkv_multiscales=((), (5,)), decoder_qkv_multiscales=((), (5,)),
                              encoder_layers_per_block=(1, 1), decoder_layers_per_block=[1, 1],
                              downsample_block_type="conv", upsample_block_type="interpolate",
                              decoder_norm_types="rms_norm", decoder_act_fns="silu", scaling_factor=0.41407),
            scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
            text_encoder=Gemma2Model(Gemma2Config(head_dim=16, hidden_size=8, intermediate_size=64,
                                                  max_position_embeddings=512, num_attention_heads=2,
                                                  num_hidden_layers=1, num_key_value_heads=2, vocab_size=len(VOCAB),
                                                  pad_token_id=0, bos_token_id=2, eos_token_id=3,
                                                  attn_implementation="eager")),
            tokenizer=word_tokenizer(300))
    pipe.save_pretrained(path)
    return pipe


PIPELINES = {"sd3": tiny_sd3, "flux": tiny_flux, "sana": tiny_sana}
# what each needs in the pipeline call to paint 32 px (pipeline_options)
CALL_OPTIONS = {"sd3": {}, "flux": {"max_sequence_length": 32}, "sana": {"use_resolution_binning": False}}
