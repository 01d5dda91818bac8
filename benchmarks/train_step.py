"""Training step time and memory peak at real size, random weights built from config (CUDA).

  decoder  SD3.5-Medium-shaped SD3Transformer2DModel (24 layers, 24 heads x 64, dual attention in
           layers 0-12, qk RMSNorm) on 512x512 latents (64x64x16), flow-matching loss, AdamW,
           full fine-tune with bf16 autocast and fp32 master weights, versus the same step in fp32
           (the ratio bf16/fp32 is quoted);
  encoder  Qwen2.5-VL-3B-shaped Qwen2_5_VLForConditionalGeneration in bf16 with LoRA r=32 (the
           paper's encoder setting), caption SFT step on 448x448 images + 256-token captions.
Usage: python benchmarks/train_step.py [--batch 8] [--vlm-batch 4] [--steps 5]
"""
from __future__ import annotations

import argparse
import gc
import time

import torch


def timed(step, n: int) -> float:
    step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / n


def release() -> None:
    """Free the last model's memory before the next one is built."""
    gc.collect()
    torch.cuda.empty_cache()


def decoder_bench(batch: int, steps: int, bf16: bool) -> tuple[float, float, int]:
    from diffusers import SD3Transformer2DModel

    torch.cuda.reset_peak_memory_stats()
    model = SD3Transformer2DModel(
        sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24, attention_head_dim=64,
        num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536, pooled_projection_dim=2048,
        pos_embed_max_size=384, dual_attention_layers=tuple(range(13)), qk_norm="rms_norm").cuda()
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    x = torch.randn(batch, 16, 64, 64, device="cuda")
    text = torch.randn(batch, 300, 4096, device="cuda")  # connector output: 300 caption tokens
    pooled = torch.randn(batch, 2048, device="cuda")

    def step():
        t = torch.rand(batch, device="cuda")
        noise = torch.randn_like(x)
        x_t = (1 - t[:, None, None, None]) * x + t[:, None, None, None] * noise
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            v = model(x_t, encoder_hidden_states=text, pooled_projections=pooled, timestep=t * 1000).sample
        loss = torch.nn.functional.mse_loss(v.float(), noise - x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    dt, peak = timed(step, steps), torch.cuda.max_memory_allocated() / 2**30
    del model, opt
    release()
    return dt, peak, params


def encoder_bench(batch: int, steps: int) -> tuple[float, float, int]:
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.cuda.reset_peak_memory_stats()
    cfg = Qwen2_5_VLConfig(
        text_config=dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                         num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768,
                         rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]}, tie_word_embeddings=True),
        vision_config=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                           fullatt_block_indexes=[7, 15, 23, 31]),
        image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653)
    with torch.device("cuda"):
        model = Qwen2_5_VLForConditionalGeneration(cfg).to(torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    model = get_peft_model(model, LoraConfig(r=32, lora_alpha=64, target_modules="all-linear", init_lora_weights="gaussian"))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    side = 448 // 14  # 32x32 patches per image -> 256 merged image tokens
    n_img_tokens = side * side // 4
    pixel_values = torch.randn(batch * side * side, 3 * 2 * 14 * 14, device="cuda", dtype=torch.bfloat16)
    grid = torch.tensor([[1, side, side]] * batch, device="cuda")
    ids = torch.randint(0, 150000, (batch, n_img_tokens + 2 + 256 + 20), device="cuda")
    ids[:, 10] = 151652
    ids[:, 11:11 + n_img_tokens] = 151655
    ids[:, 11 + n_img_tokens] = 151653
    labels = ids.clone()
    labels[:, : 12 + n_img_tokens] = -100

    def step():
        out = model(input_ids=ids, pixel_values=pixel_values, image_grid_thw=grid, labels=labels)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    dt, peak = timed(step, steps), torch.cuda.max_memory_allocated() / 2**30
    del model, opt
    release()
    return dt, peak, params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--vlm-batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    assert torch.cuda.is_available(), "this benchmark needs CUDA"
    print(f"device: {torch.cuda.get_device_name()}")
    b16, m16, n = decoder_bench(args.batch, args.steps, bf16=True)
    f32, m32, _ = decoder_bench(args.batch, args.steps, bf16=False)
    print(f"decoder SD3.5-M-shaped ({n / 1e9:.2f}B params), batch {args.batch} @512px:")
    print(f"  bf16 autocast: {b16:.3f} s/step, peak {m16:.1f} GiB;  fp32: {f32:.3f} s/step, peak {m32:.1f} GiB;  "
          f"ratio fp32/bf16 step time {f32 / b16:.2f}")
    e, me, n = encoder_bench(args.vlm_batch, args.steps)
    print(f"encoder Qwen2.5-VL-3B-shaped ({n / 1e9:.2f}B params), bf16 + LoRA r=32, batch {args.vlm_batch}, "
          f"448px + 256 caption tokens: {e:.3f} s/step, peak {me:.1f} GiB")


if __name__ == "__main__":
    main()
