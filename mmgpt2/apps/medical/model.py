"""`MedicalExplainer` (Med-XPT): chest X-ray + suspected diagnosis -> an explanation of the evidence.

Frozen CLIP-style encoder -> trainable transformer projector over patch tokens -> prefix ->
frozen GPT-2, prompted with the knowledge-graph triplets retrieved for the image and the
diagnosis question::

    [prefix K] The image-specific triplets from the knowledge graph are: t1; t2; ... t7.
               Question: why does this chest x-ray suggest edema? Answer: <explanation><EOS>

Only the explanation tokens carry loss. The knowledge graph (`mmgpt2.apps.medical.KnowledgeGraph`)
is queried with the image's pooled embedding; a saved explainer may carry its graph in ``kg/``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mmgpt2.apps.medical.prompt import build_prompt
from mmgpt2.config import Config
from mmgpt2.encoders import VisionEncoder
from mmgpt2.errors import Mmgpt2Error
from mmgpt2.lm import FrozenLM
from mmgpt2.mappers import build_mapper
from mmgpt2.pipeline import ImageLike, PrefixPipeline, as_image_list, check_feature_size


@dataclass
class MedicalExplainerConfig(Config):
    """What a saved `MedicalExplainer` holds besides its frozen parts and ``kg/``."""

    mapper: dict[str, Any] = field(default_factory=dict)  # the projector's config
    kg_k: int = field(default=7, metadata={"min": 0})  # triplets put into the prompt
    kg_search_k: int = field(
        default=15, metadata={"min": 1}
    )  # searched, before dropping the query's own study
    # Start the LM input with GPT-2's EOS, before the prefix, as every pretraining document started.
    lead_eos: bool = False


KG_FOLDER = "kg"


def _as_kg(kg):
    """A `KnowledgeGraph`, loaded from a folder path when given one."""
    if kg is None or not isinstance(kg, (str, os.PathLike)):
        return kg
    from mmgpt2.apps.medical.kg import KnowledgeGraph

    return KnowledgeGraph.load(kg)


class MedicalExplainer(PrefixPipeline):
    """Explain a chest X-ray's evidence for a diagnosis, grounded in retrieved KG triplets.

    Example:
        >>> model = MedicalExplainer.from_pretrained("chest-tiny")   # carries its KG in kg/
        >>> len(model.kg) > 0
        True
        >>> out = model.explain(["xray.png"], diagnosis="Pleural Effusion")  # doctest: +SKIP
        >>> out[0]["explanation"], out[0]["triplets"][0]["head"]  # doctest: +SKIP
    """

    kind = "medical_explainer"
    config_class = MedicalExplainerConfig

    def __init__(
        self,
        encoder: VisionEncoder,
        lm: FrozenLM,
        mapper: torch.nn.Module,
        generation: dict[str, Any] | None = None,
        kg_k: int = MedicalExplainerConfig.kg_k,
        kg_search_k: int = MedicalExplainerConfig.kg_search_k,
        kg=None,
        lead_eos: bool = MedicalExplainerConfig.lead_eos,
    ):
        super().__init__(encoder, lm, generation)
        self.mapper = mapper
        self.lead_eos = lead_eos
        self.check_widths(mapper, "projector", tokens=True)
        self.kg_k, self.kg_search_k = kg_k, kg_search_k
        self.kg = _as_kg(kg)

    @classmethod
    def build(
        cls,
        encoder: str | VisionEncoder,
        lm: str | FrozenLM,
        generation: dict[str, Any] | None = None,
        kg=None,
        kg_k: int = MedicalExplainerConfig.kg_k,
        lead_eos: bool = MedicalExplainerConfig.lead_eos,
        **projector_kwargs: Any,
    ) -> MedicalExplainer:
        """A new explainer with an untrained projector sized to `encoder` and `lm`.

        `lead_eos` starts the LM input with GPT-2's EOS token, before the image prefix, the way
        every document the LM read in pretraining started (see `prefix`).

        Example:
            >>> model = MedicalExplainer.build("embedded:chest-clip", "embedded:chest-gpt2", prefix_length=10, num_layers=2)
            >>> model.mapper.config.prefix_length, model.kg is None
            (10, True)
        """
        encoder, lm = cls.resolve_parts(encoder, lm)
        config = {
            "type": "projector",
            "input_dim": encoder.embed_dim,
            "token_dim": encoder.token_dim,
            "lm_dim": lm.hidden_size,
            **projector_kwargs,
        }
        return cls(encoder, lm, build_mapper(config), generation, kg_k=kg_k, kg=kg, lead_eos=lead_eos)

    def app_config(self) -> MedicalExplainerConfig:
        return MedicalExplainerConfig(
            mapper=self.mapper.config.to_dict(),
            kg_k=self.kg_k,
            kg_search_k=self.kg_search_k,
            lead_eos=self.lead_eos,
        )

    @classmethod
    def from_app_config(
        cls, config: MedicalExplainerConfig, encoder: VisionEncoder, lm: FrozenLM
    ) -> dict[str, Any]:
        mapper_config = {"type": "projector", **config.mapper}
        check_feature_size(mapper_config.get("input_dim", -1), encoder.embed_dim, encoder.spec, "projector")
        return {
            "mapper": build_mapper(mapper_config, source="mapper"),
            "kg_k": config.kg_k,
            "kg_search_k": config.kg_search_k,
            "lead_eos": config.lead_eos,
        }

    def save_extras(self, folder: Path) -> None:
        """The attached knowledge graph goes to ``kg/``."""
        if self.kg is not None:
            self.kg.save(folder / KG_FOLDER)

    @classmethod
    def from_pretrained(
        cls, name_or_dir, device=None, encoder=None, lm=None, strict=False, kg=None
    ) -> MedicalExplainer:
        """Load a saved explainer; its ``kg/`` folder (or `kg`, a graph or folder) is attached."""
        model = super().from_pretrained(name_or_dir, device=device, encoder=encoder, lm=lm, strict=strict)
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
        return self.lm.loss(
            self.prefix(batch["pooled"], batch.get("tokens")), targets, prompts=batch["prompts"]
        )

    # --- retrieval --------------------------------------------------------------------------------
    def retrieve(
        self, pooled: torch.Tensor, kg=None, k: int | None = None, exclude_source=None
    ) -> list[list[dict[str, Any]]]:
        """Top-k triplets per image embedding; no graph or an empty one gives empty lists (with a warning)."""
        from mmgpt2.apps.medical.kg import warn_empty

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

    def prompts_for(
        self,
        pooled: torch.Tensor,
        diagnoses: Sequence[str | None],
        kg=None,
        use_kg: bool = True,
        exclude_source=None,
    ):
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
        images = as_image_list(images)
        diagnoses = list(diagnosis) if isinstance(diagnosis, (list, tuple)) else [diagnosis] * len(images)
        if len(diagnoses) != len(images):
            raise Mmgpt2Error(
                f"got {len(diagnoses)} diagnoses for {len(images)} images; give one, or one per image"
            )
        kg = _as_kg(kg)
        out: list[dict[str, Any]] = []
        for i in range(0, len(images), batch_size):
            pooled, tokens = self.encode_images(images[i : i + batch_size])
            out += self.explain_features(
                pooled, tokens, diagnoses[i : i + batch_size], kg=kg, use_kg=use_kg, **gen_kwargs
            )
        return out

    @torch.no_grad()
    def explain_features(
        self, pooled, tokens, diagnoses, kg=None, use_kg: bool = True, exclude_source=None, **gen_kwargs
    ) -> list[dict[str, Any]]:
        """`explain` from precomputed encoder features (evaluation, benchmarks)."""
        prompts, hits = self.prompts_for(pooled, diagnoses, kg, use_kg, exclude_source)
        texts = self.lm.generate(
            self.prefix(pooled, tokens), prompt=prompts, **self.generation_kwargs(gen_kwargs)
        )
        return [
            {
                "explanation": t,
                "diagnosis": d,
                "triplets": [{k: h[k] for k in ("head", "relation", "tail", "score")} for h in hs],
            }
            for t, d, hs in zip(texts, diagnoses, hits)
        ]
