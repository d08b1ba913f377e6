"""A tokenizer that needs no download, for random-weight LMs (shape and speed checks)."""

from __future__ import annotations


def fallback_tokenizer():
    """The embedded shapes tokenizer when present, else a byte-level BPE with only the 256 bytes."""
    from transformers import AutoTokenizer

    from mmgpt2.paths import models_dir

    folder = models_dir() / "shapes-gpt2"
    if (folder / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(folder)
    return byte_level_tokenizer()


def byte_level_tokenizer():
    """A byte-level BPE with no merges: 256 byte tokens plus `<|endoftext|>`; encodes any text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    byte_vocab["<|endoftext|>"] = len(byte_vocab)
    tok = Tokenizer(models.BPE(vocab=byte_vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
