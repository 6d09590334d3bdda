"""The tiny preset's offline tokenizer: a byte-level BPE trained on a built-in e-commerce corpus.

Byte-level means every string is encodable (unknown words fall back to bytes); the corpus — category
names, attribute values, shopper words, common English — gives it merges for product text. Training
is deterministic and takes well under a second, so the preset needs no download.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerFast

# special tokens first, so their ids are fixed and small (the backbone config refers to them)
PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|endoftext|>"
VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD]

COMMON_WORDS = """the a an and or for with in on of to by from new one same but version like this that size small
medium large extra set pack pair piece kids men women unisex home office travel outdoor indoor summer winter
spring autumn classic modern vintage style soft light heavy durable waterproof portable wireless fast cheap best
quality sale price buy gift original genuine cute cool slim long short big mini pro max plus ultra lite title
category attributes query color colour pattern material brand value type item product shop store official""".split()


def _corpus() -> list[str]:
    from moon_cli.synth.taxonomy import BRANDS, COLORS, MARKETING, MATERIALS, PATTERNS, TREE

    words = list(COMMON_WORDS) + list(BRANDS) + list(MARKETING)
    for root, mids in TREE.items():
        words += [root]
        for mid, items in mids.items():
            words += [mid]
            for name, synonyms in items:
                words += [name] + list(synonyms)
    for name, (_, synonyms) in COLORS.items():
        words += [name] + synonyms
    for name, synonyms in PATTERNS.items():
        words += [name] + synonyms
    for materials in MATERIALS.values():
        words += materials
    lines = []
    for w in words:  # several casings so titles in Title Case and queries in lower case both merge
        lines += [w, w.lower(), w.title(), f"{w.lower()}: {w.lower()}"] * 4
    return lines


def build_tiny_tokenizer(vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS,
                                   additional_special_tokens=[VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD])
