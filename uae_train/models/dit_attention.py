"""SD3 joint attention with a text key mask: padded caption tokens are hidden from every query.

Installed on every attention of the decoder's DiT (`Decoder.__init__`; `fsdp.unshard_dit` puts it back on
the unsharded copy).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, JointAttnProcessor2_0


class MaskedJointAttnProcessor(JointAttnProcessor2_0):
    """SD3 joint attention that hides padded text tokens from every query.

    diffusers' JointAttnProcessor2_0 ignores `attention_mask`, so padded caption positions would be
    attended (and a caption's image would depend on how long its batch-mates are). This is the same
    computation with a key mask: `attention_mask` is the text mask (B, T) bool, True = real token. Image
    tokens are always attended, so a row with no real text token still has a valid softmax. Attention
    without a text stream (SD3.5's dual-attention `attn2`) ignores the mask.
    """

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, *args, **kwargs) -> torch.Tensor:
        residual = hidden_states
        batch = hidden_states.shape[0]

        def heads(x: torch.Tensor) -> torch.Tensor:  # (B, N, heads·d) → (B, heads, N, d)
            return x.view(batch, -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)

        query, key, value = heads(attn.to_q(hidden_states)), heads(attn.to_k(hidden_states)), heads(attn.to_v(hidden_states))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        mask = None
        if encoder_hidden_states is not None:
            c_query = heads(attn.add_q_proj(encoder_hidden_states))
            c_key = heads(attn.add_k_proj(encoder_hidden_states))
            c_value = heads(attn.add_v_proj(encoder_hidden_states))
            if attn.norm_added_q is not None:
                c_query = attn.norm_added_q(c_query)
            if attn.norm_added_k is not None:
                c_key = attn.norm_added_k(c_key)
            query = torch.cat([query, c_query], dim=2)
            key = torch.cat([key, c_key], dim=2)
            value = torch.cat([value, c_value], dim=2)
            if attention_mask is not None:
                image_keys = torch.ones(batch, residual.shape[1], dtype=torch.bool, device=key.device)
                mask = torch.cat([image_keys, attention_mask.to(key.device, torch.bool)], dim=1)[:, None, None, :]

        out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * query.shape[-1]).to(query.dtype)
        if encoder_hidden_states is not None:
            out, context_out = out[:, : residual.shape[1]], out[:, residual.shape[1]:]
            if not attn.context_pre_only:
                context_out = attn.to_add_out(context_out)
        out = attn.to_out[1](attn.to_out[0](out))
        return (out, context_out) if encoder_hidden_states is not None else out
