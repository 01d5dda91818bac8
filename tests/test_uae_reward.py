"""UAE's training reward (`uae-clip`) against the same steps written out here, as UAE's clip_score.py does them."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from uae_eval.metrics import build_metric
from uae_eval.metrics.uae_clip import tiny_clip
from uae_train.rl.rewards import build_reward


def photos() -> list[Image.Image]:
    from skimage import data

    return [Image.fromarray(data.astronaut()).resize((300, 200)), Image.fromarray(data.chelsea()),
            Image.fromarray(data.coffee()).resize((160, 240))]


def their_features(model, image: Image.Image) -> torch.Tensor:
    """UAE's steps, spelled out independently: uint8 HWC → CHW float → /255 → interpolate 224×224 bicubic
    (a squash) → OpenAI CLIP normalisation → get_image_features → L2 normalise."""
    t = torch.tensor(np.array(image.convert("RGB")), dtype=torch.float32).permute(2, 0, 1)[None]
    t = F.interpolate(t / 255.0, size=(224, 224), mode="bicubic")
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073])[None, :, None, None]
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711])[None, :, None, None]
    with torch.no_grad():
        f = model.get_image_features(pixel_values=(t - mean) / std)
    f = f.pooler_output if hasattr(f, "pooler_output") else f
    return f / f.norm(dim=-1, keepdim=True)


def test_uae_reward_equals_their_steps_on_a_tiny_clip():
    metric = build_metric("uae-clip", model="tiny", device="cpu")
    ref = tiny_clip(0).eval()
    a = photos()
    b = a[1:] + a[:1]
    ours = metric(a, b)
    theirs = [float((their_features(ref, x) * their_features(ref, y)).sum()) for x, y in zip(a, b)]
    assert np.allclose(ours, theirs, atol=1e-5), (ours, theirs)
    assert len(set(round(v, 6) for v in ours)) == 3 and max(ours) < 0.99999  # not vacuous: the pairs differ


def test_uae_reward_of_an_image_with_itself_is_one_and_batching_does_not_change_it():
    metric = build_metric("uae-clip", model="tiny", device="cpu", batch_size=1)
    a = photos()
    assert np.allclose(metric(a, a), 1.0, atol=1e-5)
    batched = build_metric("uae-clip", model="tiny", device="cpu", batch_size=8)
    b = [im.rotate(90, expand=True) for im in a]
    assert np.allclose(metric(a, b), batched(a, b), atol=1e-5)


def test_uae_reward_squashes_instead_of_cropping():
    """A wide image and its left-cropped square differ under the squash; a centre-crop pipeline would see
    the same middle for a wide image and its centre square."""
    metric = build_metric("uae-clip", model="tiny", device="cpu")
    wide = photos()[0]  # 300x200
    centre = wide.crop((50, 0, 250, 200))
    assert metric([wide], [centre])[0] < 0.9999


def test_uae_reward_is_a_reward_term_with_provenance():
    reward = build_reward({"uae-clip": 1.0}, {"uae-clip": {"model": "tiny", "device": "cpu"}})
    a = photos()
    total, parts = reward(a, a[::-1])
    assert total.dtype == torch.float32 and total.shape == (3,)
    assert total[1].item() == pytest.approx(1.0, abs=1e-5)  # the middle pair is the same image
    assert parts["uae-clip"][0] < 1.0
    prov = reward.metrics["uae-clip"].provenance()
    assert "squash" in prov["preprocess"]["resize"] and prov["model"] == "tiny"


def test_uae_reward_refuses_a_missing_model_in_one_line(tmp_path):
    from uae_data.core.errors import ModelLoadError

    with pytest.raises(ModelLoadError) as err:
        build_metric("uae-clip", model=str(tmp_path / "nope"), device="cpu")
    assert "uae-clip" in str(err.value) and "\n" not in str(err.value)


def test_uae_reward_loads_a_saved_clip_folder(tmp_path):
    tiny_clip(3).save_pretrained(tmp_path / "clip")
    a = photos()
    saved = build_metric("uae-clip", model=str(tmp_path / "clip"), device="cpu")
    built = build_metric("uae-clip", model="tiny", device="cpu", seed=3)
    assert np.allclose(saved(a, a[::-1]), built(a, a[::-1]), atol=1e-6)
