"""`RetrievalCaptioner`: SmallCap-style retrieval-augmented captioning on the frozen GPT-2.

For each image the captioner retrieves the top-k captions of *other* images from a
`CaptionDatastore` (image embedding against the captions' text embeddings, one encoder) and puts
them into the LM's prompt behind a small mapper's visual prefix::

    [mapper(image) | EOS c_k EOS ... EOS c_1 EOS] -> caption

The best hit comes last, next to the caption, and the prefix shares position 0 with the first EOS,
so context and caption sit where GPT-2 read them in pretraining (``EOS context EOS caption``).
Captions go in best first until the prompt's token budget (`prompt_tokens`) is full.

k defaults to SmallCap's 4. The embedded `shapes-tiny-rag` uses k = 1: its frozen tiny GPT-2 was
pretrained on one context per caption and, prompted with the top 2 or 4 hits (no prefix), wrote
right one-object captions 41.5% / 2% of the time against 99.5% for the top hit alone
(`benchmarks/beyond_clipcap.py`); a first model trained with k = 4 reached 31% / 1% attribute
accuracy on one- / two-object scenes. A real GPT-2 reads lists.

Training excludes each image's own captions from what it retrieves (SmallCap), so the mapper
learns to combine neighbours' captions with what it sees rather than to copy. The datastore is
data, not weights: `use_datastore` (or ``caption(..., datastore=...)``, ``mmgpt2 caption
--datastore DIR``) swaps it without retraining, which is how a new domain is added.

Example:
    >>> cap = RetrievalCaptioner.from_pretrained("shapes-tiny-rag")      # ships with its datastore
    >>> cap.caption("assets/examples/shapes_0.png")
    ['a picture of a large yellow circle in the center']
    >>> cap.caption("img.png", datastore="my-datastore/")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from mmgpt2.apps.captioning.datastore import CaptionDatastore, load_datastore, record_source_id
from mmgpt2.apps.captioning.model import PrefixCaptioner
from mmgpt2.config import Config
from mmgpt2.data.datasets import FeatureCaptionDataset
from mmgpt2.errors import ConfigError, Mmgpt2Error
from mmgpt2.lm import IGNORE_INDEX
from mmgpt2.pipeline import ImageLike, as_image_list

DATASTORE_DIR = "datastore"


@dataclass
class RetrievalCaptionerConfig(Config):
    """A saved `RetrievalCaptioner`: the mapper, k, and the prompt's token budget."""

    mapper: dict[str, Any] = field(default_factory=dict)
    k: int = field(default=4, metadata={"min": 0})  # SmallCap retrieves four captions
    prompt_tokens: int = field(default=40, metadata={"min": 0})  # retrieved captions stop here


class RetrievalCaptioner(PrefixCaptioner):
    """A small mapper's prefix plus the top-k retrieved captions in the prompt of a frozen GPT-2.

    Example:
        >>> cap = RetrievalCaptioner.build(  # doctest: +SKIP
        ...     "embedded:shapes-clip", "embedded:shapes-gpt2", datastore="ds/", mapper="mlp", prefix_length=4, hidden_dim=256
        ... )
    """

    kind = "retrieval_captioner"
    config_class = RetrievalCaptionerConfig

    def __init__(
        self, encoder, lm, mapper, generation=None, k: int = 4, prompt_tokens: int = 40, datastore=None
    ):
        super().__init__(encoder, lm, mapper, generation)
        self.k, self.prompt_tokens = k, prompt_tokens
        room = lm.max_positions - mapper.config.prefix_length - prompt_tokens
        if room < 2:
            raise ConfigError(
                f"prefix ({mapper.config.prefix_length}) + prompt budget ({prompt_tokens}) leave {room} of the LM's "
                f"{lm.max_positions} positions for the caption; lower prompt_tokens"
            )
        self.datastore: CaptionDatastore | None = None
        if datastore is not None:
            self.use_datastore(datastore)

    @classmethod
    def build(
        cls,
        encoder,
        lm,
        mapper: str = "mlp",
        generation: dict[str, Any] | None = None,
        datastore: CaptionDatastore | str | os.PathLike | None = None,
        k: int = 4,
        prompt_tokens: int = 40,
        **mapper_kwargs: Any,
    ) -> RetrievalCaptioner:
        """A new captioner with an untrained mapper (sized like `PrefixCaptioner.build`)."""
        base = PrefixCaptioner.build(encoder, lm, mapper=mapper, **mapper_kwargs)
        return cls(base.encoder, base.lm, base.mapper, generation, k, prompt_tokens, datastore)

    def app_config(self) -> RetrievalCaptionerConfig:
        return RetrievalCaptionerConfig(
            mapper=self.mapper.config.to_dict(), k=self.k, prompt_tokens=self.prompt_tokens
        )

    @classmethod
    def from_app_config(cls, config: RetrievalCaptionerConfig, encoder, lm) -> dict[str, Any]:
        return {
            **super().from_app_config(config, encoder, lm),
            "k": config.k,
            "prompt_tokens": config.prompt_tokens,
        }

    def save_extras(self, folder: Path) -> None:
        if self.datastore is not None:
            self.datastore.save(folder / DATASTORE_DIR)

    def load_extras(self, folder: Path) -> None:
        if (folder / DATASTORE_DIR).is_dir():
            self.use_datastore(folder / DATASTORE_DIR)

    # --- retrieval ----------------------------------------------------------------------------------
    def use_datastore(self, datastore: CaptionDatastore | str | os.PathLike) -> RetrievalCaptioner:
        """Retrieve from `datastore` (a `CaptionDatastore` or its folder) from now on; no retraining."""
        store = load_datastore(datastore)
        if store.encoder_spec and store.encoder_spec != self.encoder.spec:
            raise Mmgpt2Error(
                f"the datastore was embedded with {store.encoder_spec!r} but this captioner uses "
                f"{self.encoder.spec!r}; rebuild it with `mmgpt2 datastore build ... --encoder {self.encoder.spec}`"
            )
        self.datastore = store
        return self

    def retrieve(
        self,
        pooled: torch.Tensor,
        datastore: CaptionDatastore | None = None,
        exclude_source: Sequence[str | None] | None = None,
    ) -> list[list[str]]:
        """Top-k captions for each image embedding, best first (none without a datastore)."""
        store = datastore or self.datastore
        if store is None or self.k == 0:
            return [[] for _ in range(len(pooled))]
        return store.query(pooled, self.k, exclude_source)

    def prompt_ids(self, retrieved: Sequence[Sequence[str]]) -> list[list[int]]:
        """``EOS c_n ... EOS c_1 EOS`` per image: best first into the budget, then best last."""
        eos, out = self.lm.eos_token_id, []
        for captions in retrieved:
            kept: list[list[int]] = []
            used = 1  # the closing EOS
            for ids in self.lm.tokenize(list(captions)) if captions else []:
                if used + len(ids) + 1 > self.prompt_tokens:
                    break
                kept.append([eos, *ids])
                used += len(ids) + 1
            out.append([t for ids in reversed(kept) for t in ids] + [eos] if kept else [eos])
        return out

    # --- training -----------------------------------------------------------------------------------
    def lm_inputs(
        self, prefix: torch.Tensor, retrieved: Sequence[Sequence[str]], targets=None, pad_left: bool = False
    ) -> dict[str, torch.Tensor]:
        """``[prefix | EOS c_n ... EOS c_1 EOS | target]`` with the prefix at position 0.

        The prefix shares position 0 with the prompt's first EOS, so the retrieved captions and the
        caption sit where GPT-2 read context and text in pretraining (``EOS context EOS text``):
        behind four prefix positions the frozen tiny GPT-2 stopped copying its context.
        """
        batch = self.lm.build_inputs(prefix.to(self.lm.dtype), self.prompt_ids(retrieved), targets, pad_left)
        batch["position_ids"] = (batch["attention_mask"].cumsum(-1) - 1 - prefix.shape[1]).clamp(min=0)
        return batch

    def training_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """Batch from `RetrievalCaptionDataset`: ``pooled``, ``captions`` and ``retrieved`` (lists of captions)."""
        prefix = self.prefix(batch["pooled"], batch.get("tokens"))
        inputs = self.lm_inputs(prefix, batch["retrieved"], self.lm.tokenize(batch["captions"], add_eos=True))
        labels = inputs.pop("labels")[:, 1:]
        hidden = self.lm.model.base_model(**inputs).last_hidden_state[:, :-1]
        keep = labels != IGNORE_INDEX  # the LM head runs only where a caption token is predicted
        logits = self.lm.model.get_output_embeddings()(hidden[keep])
        return F.cross_entropy(logits.float(), labels[keep])

    # --- inference ----------------------------------------------------------------------------------
    @torch.no_grad()
    def caption(
        self,
        images: Sequence[ImageLike] | ImageLike,
        batch_size: int = 32,
        datastore: CaptionDatastore | str | os.PathLike | None = None,
        **gen_kwargs: Any,
    ) -> list[str]:
        """Captions for image paths or PIL images, retrieving from `datastore` (default: the captioner's)."""
        images = as_image_list(images)
        store = load_datastore(datastore)
        out: list[str] = []
        for i in range(0, len(images), batch_size):
            pooled, tokens = self.encode_images(images[i : i + batch_size])
            out += self.caption_features(pooled, tokens, datastore=store, **gen_kwargs)
        return out

    @torch.no_grad()
    def caption_features(
        self,
        pooled: torch.Tensor,
        tokens: torch.Tensor | None = None,
        datastore: CaptionDatastore | None = None,
        retrieved: Sequence[Sequence[str]] | None = None,
        **gen_kwargs: Any,
    ) -> list[str]:
        """Captions from precomputed features (`retrieved`: captions to use instead of searching)."""
        from mmgpt2.lm.decoding import decode

        if retrieved is None:
            retrieved = self.retrieve(pooled, datastore)
        batch = self.lm_inputs(self.prefix(pooled, tokens), retrieved, pad_left=True)
        batch.pop("labels")
        kwargs = self.generation_kwargs(gen_kwargs)
        room = self.lm.max_positions - batch["attention_mask"].shape[1]
        kwargs["max_new_tokens"] = min(
            kwargs.get("max_new_tokens", 20), room
        )  # the budget reserves this room
        return [self.lm.decode(ids) for ids in decode(self.lm, batch, **kwargs)]


class RetrievalCaptionDataset(FeatureCaptionDataset):
    """`FeatureCaptionDataset` items plus ``retrieved``: the image's top-k captions of *other* images.

    Retrieval runs once, for every image at construction (one batched FAISS search); each image's
    own captions are excluded by its source id (`record_source_id`), as SmallCap trains.
    """

    def __init__(
        self, records, store, datastore: CaptionDatastore, k: int = 4, root=None, use_tokens: bool = False
    ):
        super().__init__(records, store, use_tokens)
        images = list(dict.fromkeys(image for image, _ in self.items))
        source_of = {r.image: record_source_id(r, root) for r in records}
        pooled = torch.stack([store.pooled(im) for im in images])
        hits = datastore.query(pooled, k, exclude_source=[source_of[im] for im in images])
        self.retrieved = dict(zip(images, hits))

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = super().__getitem__(i)
        item["retrieved"] = self.retrieved[self.items[i][0]]
        return item

    def fingerprint(self) -> str:
        """The examples' hash plus what each retrieves: a resume with another datastore or k is another run."""
        retrieved = [self.retrieved[image] for image in dict.fromkeys(image for image, _ in self.items)]
        text = json.dumps([super().fingerprint(), retrieved])
        return hashlib.sha256(text.encode()).hexdigest()[:16]
