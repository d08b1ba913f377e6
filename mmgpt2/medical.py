"""`MedicalExplainer` (Med-XPT): chest X-ray + suspected diagnosis -> an explanation of the evidence.

Frozen CLIP-style encoder -> trainable transformer projector over patch tokens -> prefix ->
frozen GPT-2, prompted with the knowledge-graph triplets retrieved for the image and the
diagnosis question::

    [prefix K] The image-specific triplets from the knowledge graph are: t1; t2; ... t7.
               Question: why does this chest x-ray suggest edema? Answer: <explanation><EOS>

Only the explanation tokens carry loss. The knowledge graph (`mmgpt2.retrieval.KnowledgeGraph`)
is queried with the image's pooled embedding; a saved explainer may carry its graph in ``kg/``.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from .encoders import VisionEncoder, load_encoder
from .lm import FrozenLM, load_lm
from .mappers import build_mapper, register_mapper
from .mappers.projector import Projector, ProjectorConfig
from .pipeline import PrefixPipeline, check_feature_size

register_mapper("projector", Projector, ProjectorConfig)

ImageLike = str | os.PathLike | Image.Image
KG_INTRO = "The image-specific triplets from the knowledge graph are:"
KG_FOLDER = "kg"


def build_prompt(triplets: Sequence[str] | None, diagnosis: str | None) -> str:
    """The text after the image prefix: retrieved triplets (if any), then the question.

    Example:
        >>> build_prompt(["effusion suggestive of heart failure"], "Pleural Effusion")
        'The image-specific triplets from the knowledge graph are: effusion suggestive of heart failure. Question: why does this chest x-ray suggest pleural effusion? Answer:'
    """
    parts = []
    if triplets:
        parts.append(f"{KG_INTRO} " + "; ".join(triplets) + ".")
    if diagnosis:
        parts.append(f"Question: why does this chest x-ray suggest {diagnosis.strip().lower()}? Answer:")
    else:
        parts.append("Question: what does this chest x-ray show? Answer:")
    return " ".join(parts)


def _as_kg(kg):
    """A `KnowledgeGraph`, loaded from a folder path when given one."""
    if kg is None or not isinstance(kg, (str, os.PathLike)):
        return kg
    from .retrieval import KnowledgeGraph

    return KnowledgeGraph.load(kg)


class MedicalExplainer(PrefixPipeline):
    """Explain a chest X-ray's evidence for a diagnosis, grounded in retrieved KG triplets.

    Example:
        >>> model = MedicalExplainer.from_pretrained("chest-tiny")   # carries its KG in kg/
        >>> out = model.explain(["xray.png"], diagnosis="Pleural Effusion")
        >>> out[0]["explanation"], out[0]["triplets"][0]["head"]
    """

    kind = "medical_explainer"

    def __init__(
        self,
        encoder: VisionEncoder,
        lm: FrozenLM,
        mapper: torch.nn.Module,
        generation: dict[str, Any] | None = None,
        kg_k: int = 7,
        kg_search_k: int = 15,
        kg=None,
        lead_eos: bool = False,
    ):
        super().__init__(encoder, lm, generation)
        self.mapper = mapper
        self.lead_eos = lead_eos
        check_feature_size(mapper.config.input_dim, encoder.embed_dim, encoder.spec, "projector")
        token_dim = getattr(mapper.config, "token_dim", None)
        if token_dim is not None:
            check_feature_size(token_dim, encoder.token_dim, encoder.spec, "projector (patch tokens)")
        if mapper.config.lm_dim != lm.hidden_size:
            raise ValueError(f"the projector writes {mapper.config.lm_dim}-d prefixes but LM {lm.spec!r} takes {lm.hidden_size}-d")
        self.kg_k, self.kg_search_k = kg_k, kg_search_k
        self.kg = _as_kg(kg)

    @classmethod
    def build(
        cls,
        encoder: str | VisionEncoder,
        lm: str | FrozenLM,
        generation: dict[str, Any] | None = None,
        kg=None,
        kg_k: int = 7,
        lead_eos: bool = False,
        **projector_kwargs: Any,
    ) -> MedicalExplainer:
        """A new explainer with an untrained projector sized to `encoder` and `lm`.

        `lead_eos` starts the LM input with GPT-2's EOS token, before the image prefix, the way
        every document the LM read in pretraining started (see `prefix`).

        Example:
            >>> MedicalExplainer.build("embedded:chest-clip", "embedded:chest-gpt2", prefix_length=10, num_layers=2)
        """
        encoder = load_encoder(encoder) if isinstance(encoder, str) else encoder
        lm = load_lm(lm) if isinstance(lm, str) else lm
        config = {
            "type": "projector",
            "input_dim": encoder.embed_dim,
            "token_dim": encoder.token_dim,
            "lm_dim": lm.hidden_size,
            **projector_kwargs,
        }
        return cls(encoder, lm, build_mapper(config), generation, kg_k=kg_k, kg=kg, lead_eos=lead_eos)

    def trainable_config(self) -> dict[str, Any]:
        return {"mapper": dataclasses.asdict(self.mapper.config), "kg_k": self.kg_k, "kg_search_k": self.kg_search_k,
                "lead_eos": self.lead_eos}

    @classmethod
    def build_trainable(cls, config, encoder, lm):
        mapper_config = dict(config.get("mapper") or {})
        mapper_config.setdefault("type", "projector")
        check_feature_size(mapper_config.get("input_dim", -1), encoder.embed_dim, encoder.spec, "projector")
        return {"mapper": build_mapper(mapper_config), "kg_k": config.get("kg_k", 7), "kg_search_k": config.get("kg_search_k", 15),
                "lead_eos": bool(config.get("lead_eos", False))}

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """`config.json` + `model.safetensors`, and the attached knowledge graph in ``kg/``."""
        folder = super().save_pretrained(folder)
        if self.kg is not None:
            self.kg.save(Path(folder) / KG_FOLDER)
        return folder

    @classmethod
    def from_pretrained(cls, name_or_dir, device=None, encoder=None, lm=None, kg=None) -> MedicalExplainer:
        """Load a saved explainer; its ``kg/`` folder (or `kg`, a graph or folder) is attached."""

        model = super().from_pretrained(name_or_dir, device=device, encoder=encoder, lm=lm)
        if kg is not None:
            model.kg = _as_kg(kg)
        return model

    def load_extras(self, folder: Path) -> None:
        if (folder / KG_FOLDER).is_dir():
            self.kg = _as_kg(folder / KG_FOLDER)

    # --- the heart: patch tokens -> prefix --------------------------------------------------------
    def prefix(self, pooled: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """The projector's prefix, after GPT-2's EOS embedding when `lead_eos` is set.

        A frozen LM reads a prompt best in the layout it was pretrained on: GPT-2 saw documents
        after an EOS, and the embedded `chest-gpt2` copies a retrieved triplet from its prompt far
        more reliably with that EOS first and the image prefix after it.
        """
        prefix = self.mapper(pooled.to(self.device), None if tokens is None else tokens.to(self.device))
        if not self.lead_eos:
            return prefix
        eos = self.lm.embed(torch.tensor([self.lm.eos_token_id], device=prefix.device)).to(prefix.dtype)
        return torch.cat([eos.expand(prefix.shape[0], 1, -1), prefix], dim=1)

    def training_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """Batch from `ExplanationDataset`: ``pooled``, ``tokens``, ``prompts``, ``explanations``.

        Labels cover only the explanation (and its EOS): prefix and prompt positions are -100.
        """
        targets = [" " + e.strip() for e in batch["explanations"]]
        return self.lm.loss(self.prefix(batch["pooled"], batch.get("tokens")), targets, prompts=batch["prompts"])

    # --- retrieval --------------------------------------------------------------------------------
    def retrieve(self, pooled: torch.Tensor, kg=None, k: int | None = None, exclude_source=None) -> list[list[dict[str, Any]]]:
        """Top-k triplets per image embedding; no graph or an empty one gives empty lists (with a warning)."""
        from .retrieval.kg import warn_empty

        kg = _as_kg(kg) if kg is not None else self.kg
        if kg is None or warn_empty(kg):
            return [[] for _ in range(pooled.shape[0])]
        if kg.encoder_spec and kg.encoder_spec != self.encoder.spec:
            warnings.warn(
                f"the knowledge graph was embedded with {kg.encoder_spec!r} but this explainer uses {self.encoder.spec!r}; "
                "retrieval quality may suffer",
                stacklevel=2,
            )
        return kg.query(pooled, k=k or self.kg_k, exclude_source=exclude_source, search_k=self.kg_search_k)

    def prompts_for(self, pooled: torch.Tensor, diagnoses: Sequence[str | None], kg=None, use_kg: bool = True, exclude_source=None):
        """(prompts, retrieved triplets) for a batch of pooled embeddings."""
        hits = self.retrieve(pooled, kg, exclude_source=exclude_source) if use_kg else [[] for _ in diagnoses]
        prompts = [build_prompt([h["text"] for h in hs], d) for hs, d in zip(hits, diagnoses)]
        return prompts, hits

    # --- inference --------------------------------------------------------------------------------
    @torch.no_grad()
    def explain(
        self,
        images: Sequence[ImageLike] | ImageLike,
        diagnosis: str | Sequence[str | None] | None = None,
        kg=None,
        use_kg: bool = True,
        batch_size: int = 16,
        **gen_kwargs: Any,
    ) -> list[dict[str, Any]]:
        """One ``{"explanation", "diagnosis", "triplets": [{"head", "relation", "tail", "score"}]}`` per image.

        `diagnosis`: one for all images or one per image (None: "what does this x-ray show?").
        `kg`: a `KnowledgeGraph` or its folder (default: the one saved with the model);
        `use_kg=False` or an empty graph explains from the image alone.
        """
        if isinstance(images, (str, os.PathLike, Image.Image)):
            images = [images]
        images = list(images)
        diagnoses = list(diagnosis) if isinstance(diagnosis, (list, tuple)) else [diagnosis] * len(images)
        if len(diagnoses) != len(images):
            raise ValueError(f"got {len(diagnoses)} diagnoses for {len(images)} images; give one, or one per image")
        kg = _as_kg(kg)
        out: list[dict[str, Any]] = []
        for i in range(0, len(images), batch_size):
            pooled, tokens = self.encode_images(images[i : i + batch_size])
            out += self.explain_features(pooled, tokens, diagnoses[i : i + batch_size], kg=kg, use_kg=use_kg, **gen_kwargs)
        return out

    @torch.no_grad()
    def explain_features(self, pooled, tokens, diagnoses, kg=None, use_kg: bool = True, exclude_source=None, **gen_kwargs) -> list[dict[str, Any]]:
        """`explain` from precomputed encoder features (evaluation, benchmarks)."""
        prompts, hits = self.prompts_for(pooled, diagnoses, kg, use_kg, exclude_source)
        texts = self.lm.generate(self.prefix(pooled, tokens), prompt=prompts, **self.generation_kwargs(gen_kwargs))
        return [
            {
                "explanation": t,
                "diagnosis": d,
                "triplets": [{k: h[k] for k in ("head", "relation", "tail", "score")} for h in hs],
            }
            for t, d, hs in zip(texts, diagnoses, hits)
        ]


class ExplanationDataset(Dataset):
    """Training examples: cached features of an image, its prompt and its explanation.

    `items`: dicts with ``image`` (a key of `store`), ``explanation`` and ``prompt`` (from
    `MedicalExplainer.prompts_for`, computed once, so retrieval is not repeated every epoch).
    """

    def __init__(self, items: Sequence[dict[str, Any]], store, use_tokens: bool = True):
        self.items = [it for it in items if it["image"] in store and it["explanation"].strip()]
        if not self.items:
            raise ValueError("no training examples: no image is in the feature cache or every explanation is empty")
        if use_tokens and not store.has_tokens:
            raise ValueError(f"{store.folder}: the feature cache has no patch tokens; extract with tokens=True")
        self.store, self.use_tokens = store, use_tokens

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        it = self.items[i]
        out = {"index": i, "pooled": self.store.pooled(it["image"]), "prompts": it["prompt"], "explanations": it["explanation"]}
        if self.use_tokens:
            out["tokens"] = self.store.tokens(it["image"])
        return out
