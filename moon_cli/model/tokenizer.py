"""The tiny preset's offline tokenizer: a byte-level BPE trained on a built-in e-commerce corpus.

Byte-level means every string is encodable (unknown words fall back to bytes); the corpus — category names,
attribute values, shopper words, common English, kept in ``tiny_tokenizer_words.txt`` — gives it merges for product
text. Training is deterministic and takes well under a second, so the preset needs no download.
"""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedTokenizerFast

# special tokens first, so their ids are fixed and small (the backbone config refers to them)
PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|endoftext|>"
VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD]

WORDS = Path(__file__).with_name("tiny_tokenizer_words.txt")  # the corpus's words, one a line ("#": a comment)


def _corpus() -> list[str]:
    words = [w for w in WORDS.read_text().splitlines() if w and not w.startswith("#")]
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
