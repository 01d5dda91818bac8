"""DINOv2 image-image cosine (Unified-Bench, facts §1): cosine of L2-normalised CLS features
(last_hidden_state[:, 0]) from a transformers AutoModel (Dinov2Model), by hub name or local folder."""
from __future__ import annotations

from uae_data.errors import ModelLoadError
from uae_eval.metrics import METRICS, EmbeddingCosine, default_device


@METRICS.register("dino")
class DinoSimilarity(EmbeddingCosine):
    higher_is_better = True

    def __init__(self, model: str = "facebook/dinov2-large", device: str | None = None, batch_size: int = 32) -> None:
        from transformers import AutoImageProcessor, AutoModel

        from uae_data.model_refs import require_model

        self.name, self.device, self.batch_size = model, default_device(device), batch_size
        require_model(model, "the dino metric's model option (a local folder)", "DINO model")
        try:
            self.processor = AutoImageProcessor.from_pretrained(model)
            self.model = AutoModel.from_pretrained(model).to(self.device).eval()
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"dino: cannot load {model!r}: {str(e).splitlines()[0]}") from None

    def embed(self, images: list):
        """(N, D) L2-normalised CLS features, float32 on CPU."""
        import torch

        out = []
        with torch.no_grad():
            for i in range(0, len(images), self.batch_size):
                batch = [im.convert("RGB") for im in images[i:i + self.batch_size]]
                x = self.processor(images=batch, return_tensors="pt")["pixel_values"].to(self.device)
                cls = self.model(pixel_values=x).last_hidden_state[:, 0].float()  # (B, D)
                out.append(torch.nn.functional.normalize(cls, dim=-1).cpu())
        return torch.cat(out)

    def provenance(self) -> dict:
        return {"metric": "dino", "model": str(self.name), "feature": "CLS"}
