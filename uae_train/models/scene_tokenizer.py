"""A word-level tokenizer over the scene world's vocabulary, shaped like Qwen2.5-VL's, for tiny encoders.

Built locally with `tokenizers` (no hub): one id per scene word or punctuation mark, split exactly as
`uae_data.scenes.tokenize_words` splits, plus Qwen's chat/vision special tokens and the few words the
chat template and caption prompt use. Decoding glues punctuation back to the previous word, so
`decode(encode(caption)) == caption` for every `write_caption` output and `parse_caption` reads it.
"""
from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from uae_data.scenes import scene_vocabulary

PAD_TOKEN = "<|endoftext|>"
EOS_TOKEN = "<|im_end|>"
UNK_TOKEN = "<unk>"
# Qwen2.5-VL's special tokens, in Qwen's id order; the model config must point at their ids here.
QWEN_SPECIAL_TOKENS: tuple[str, ...] = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                                        "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
# Chat roles (encode_text uses UAE's "generate" role) and the default caption instruction's words.
EXTRA_WORDS: tuple[str, ...] = ("system", "user", "assistant", "generate", "describe", "this", "image", "in",
                                "detail", ".")
_PUNCTUATION = (".", ",", ":", ";", "!", "?")

# Qwen2-VL's template without the default system turn (shorter sequences for tiny models): a list
# content is rendered item by item, an image item as <|vision_start|><|image_pad|><|vision_end|>.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def scene_tokenizer_vocabulary() -> list[str]:
    """Token strings in id order: Qwen's special tokens, the unk token, then every word, sorted."""
    words = sorted(set(scene_vocabulary()) | set(EXTRA_WORDS))
    return [*QWEN_SPECIAL_TOKENS, UNK_TOKEN, *words]


def build_scene_tokenizer() -> PreTrainedTokenizerFast:
    """The tiny encoder's tokenizer (pad `<|endoftext|>`, eos `<|im_end|>`), with a Qwen-style chat template.

    Text is lower-cased and split into letter runs and single non-space characters (as `tokenize_words`);
    anything outside the vocabulary maps to `<unk>`. The newlines of the chat template vanish (they are
    whitespace), which is harmless: roles and turns are delimited by the special tokens.
    """
    vocab = {token: i for i, token in enumerate(scene_tokenizer_vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Split(Regex(r"[^a-z]"), behavior="isolated"),
    ])
    # Join words with spaces, then drop the space before punctuation ("cell ." -> "cell.").
    tok.decoder = decoders.Sequence([decoders.WordPiece(prefix="##", cleanup=False),
                                     *(decoders.Replace(" " + p, p) for p in _PUNCTUATION)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token=UNK_TOKEN, pad_token=PAD_TOKEN,
                                   eos_token=EOS_TOKEN, clean_up_tokenization_spaces=False,
                                   model_max_length=4096, padding_side="right")
    fast.add_special_tokens({"additional_special_tokens": [t for t in QWEN_SPECIAL_TOKENS if t not in
                                                           (PAD_TOKEN, EOS_TOKEN)]})
    fast.chat_template = CHAT_TEMPLATE
    return fast
