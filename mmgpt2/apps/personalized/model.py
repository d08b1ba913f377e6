"""`PersonalizedCaptioner`: UAPT (user-aware prefix tuning) on a frozen encoder and a frozen GPT-2.

image -> encoder patch tokens + pooled -> query-guided mapper -> visual prefix ─┐
user  -> TF-IDF context words -> frozen GPT-2 word embeddings ────────────────┴─> fusion -> prefix -> GPT-2

Only the mapper and the fusion layer train. The folder holds `config.json`, `model.safetensors`
and `users.json` (the `UserStore`: every known user's context words and the IDF for new users).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mmgpt2.apps.personalized.context import UserContextModel
from mmgpt2.apps.personalized.fusion import FusionConfig, FusionTransformer
from mmgpt2.apps.personalized.store import UserStore, read_history
from mmgpt2.config import Config
from mmgpt2.encoders import VisionEncoder
from mmgpt2.errors import Mmgpt2Error
from mmgpt2.lm import FrozenLM
from mmgpt2.mappers import build_mapper
from mmgpt2.pipeline import ImageLike, PrefixPipeline, as_image_list, check_feature_size

USERS_NAME = "users.json"


@dataclass
class PersonalizedCaptionerConfig(Config):
    """What a saved `PersonalizedCaptioner` holds besides its frozen parts and ``users.json``."""

    mapper: dict[str, Any] = field(default_factory=dict)  # the query-guided mapper's config
    fusion: dict[str, Any] = field(default_factory=dict)  # the fusion transformer's config
    # Training drops the whole context of some examples, so the model also captions without one.
    context_dropout: float = field(default=0.1, metadata={"min": 0.0, "max": 1.0})
    users_file: str = USERS_NAME


#: What `caption(..., user=...)` accepts: a known user id, that user's context words, or past captions.
UserLike = str | Sequence[str] | None


class PersonalizedCaptioner(PrefixPipeline):
    """Caption images in a given user's style.

    Example:
        >>> cap = PersonalizedCaptioner.from_pretrained("shapes-users-tiny")
        >>> cap.users[:3]
        ['ada', 'bo', 'cy']
        >>> cap.caption("assets/examples/shapes_0.png", user="ada")
        ['a large yellow circle in the center']
        >>> cap.caption("assets/examples/shapes_0.png", user=["wow so cute red heart", "tiny blue dot!!"])
        ['wow a large yellow circle in the center so pretty']
    """

    kind = "personalized_captioner"
    config_class = PersonalizedCaptionerConfig

    def __init__(
        self,
        encoder: VisionEncoder,
        lm: FrozenLM,
        mapper: torch.nn.Module,
        fusion: FusionTransformer,
        user_store: UserStore | None = None,
        context_dropout: float = PersonalizedCaptionerConfig.context_dropout,
        generation: dict[str, Any] | None = None,
    ):
        super().__init__(encoder, lm, generation)
        self.mapper = mapper
        self.fusion = fusion
        self.context_dropout = float(context_dropout)
        self.user_store = user_store or UserStore(UserContextModel())
        self.check_widths(mapper)
        if fusion.config.lm_dim != lm.hidden_size:
            raise Mmgpt2Error(
                f"fusion width {fusion.config.lm_dim} does not match LM {lm.spec!r} ({lm.hidden_size})"
            )

    @classmethod
    def build(
        cls,
        encoder: str | VisionEncoder,
        lm: str | FrozenLM,
        user_store: UserStore | None = None,
        use_tokens: bool = True,
        fusion: dict[str, Any] | None = None,
        context_dropout: float = PersonalizedCaptionerConfig.context_dropout,
        generation: dict[str, Any] | None = None,
        **mapper_kwargs: Any,
    ) -> PersonalizedCaptioner:
        """A new captioner with untrained mapper and fusion sized to fit `encoder` and `lm`.

        Example:
            >>> store = UserStore.build({"ada": ["a red circle #art"], "bo": ["blue square, top"]})
            >>> cap = PersonalizedCaptioner.build("embedded:shapes-clip", "embedded:users-gpt2", store, prefix_length=8)
            >>> cap.users
            ['ada', 'bo']
        """
        encoder, lm = cls.resolve_parts(encoder, lm)
        mapper = build_mapper(
            {
                "type": "query_guided",
                "input_dim": encoder.embed_dim,
                "lm_dim": lm.hidden_size,
                "token_dim": encoder.token_dim if use_tokens else None,
                **mapper_kwargs,
            }
        )
        fusion_module = FusionTransformer(FusionConfig(lm_dim=lm.hidden_size, **(fusion or {})))
        return cls(encoder, lm, mapper, fusion_module, user_store, context_dropout, generation)

    # --- saving ---------------------------------------------------------------------------------
    def app_config(self) -> PersonalizedCaptionerConfig:
        return PersonalizedCaptionerConfig(
            mapper=self.mapper.config.to_dict(),
            fusion=self.fusion.config.to_dict(),
            context_dropout=self.context_dropout,
        )

    @classmethod
    def from_app_config(
        cls, config: PersonalizedCaptionerConfig, encoder: VisionEncoder, lm: FrozenLM
    ) -> dict[str, Any]:
        check_feature_size(config.mapper.get("input_dim", -1), encoder.embed_dim, encoder.spec)
        return {
            "mapper": build_mapper(config.mapper, source="mapper"),
            "fusion": FusionTransformer(FusionConfig.from_dict(config.fusion, source="fusion")),
            "context_dropout": config.context_dropout,
        }

    def save_extras(self, folder: Path) -> None:
        """The user store (`users.json`) lives beside the weights."""
        folder.mkdir(parents=True, exist_ok=True)
        self.user_store.save(folder / USERS_NAME)

    def load_extras(self, folder: Path) -> None:
        if (folder / USERS_NAME).is_file():
            self.user_store = UserStore.load(folder / USERS_NAME)

    # --- users ----------------------------------------------------------------------------------
    @property
    def users(self) -> list[str]:
        """Ids of the users whose context is stored with the model."""
        return self.user_store.ids()

    def user_from_history_file(self, path: str | os.PathLike) -> list[str]:
        """Context words of a new user from a text file of their past captions (one per line).

        Bounded for huge files (the last `MAX_POSTS` lines are used). Pass the result as `user=`.
        """
        return self.user_store.model.context(read_history(path))

    def context_words(self, user: UserLike) -> list[str]:
        """Resolve `user` to context words (empty list: no personalization).

        A string is a user id; a list whose items contain spaces is a history of captions (TF-IDF
        over them, with the model's IDF); a list of single words is taken as context words.
        """
        if user is None:
            return []
        if isinstance(user, str):
            if user not in self.user_store:
                raise Mmgpt2Error(self.user_store.unknown_user_message(user))
            return list(self.user_store[user])
        items = [str(x) for x in user if str(x).strip()]
        if any(len(x.split()) > 1 for x in items):
            return self.user_store.model.context(items)
        return [x.strip().lower() for x in items][: self.user_store.model.top_n]

    def embed_context(self, contexts: Sequence[Sequence[str] | str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Context words -> frozen LM word embeddings (B, C, d) and a mask (B, C), C <= max_context_tokens."""
        texts = [c if isinstance(c, str) else " ".join(c) for c in contexts]
        limit = self.fusion.config.max_context_tokens
        ids = [x[:limit] for x in self.lm.tokenize(texts)]
        width = max(1, max(len(x) for x in ids))
        padded = torch.full((len(ids), width), self.lm.pad_token_id, dtype=torch.long, device=self.device)
        mask = torch.zeros((len(ids), width), dtype=torch.bool, device=self.device)
        for i, x in enumerate(ids):
            padded[i, : len(x)] = torch.tensor(x, dtype=torch.long, device=self.device)
            mask[i, : len(x)] = True
        with torch.no_grad():
            embeds = self.lm.embed(padded).float()
        return embeds, mask

    # --- the heart: features + user -> prefix embeddings ----------------------------------------
    def prefix(
        self, pooled: torch.Tensor, tokens: torch.Tensor | None, contexts: Sequence[Sequence[str] | str]
    ) -> torch.Tensor:
        visual = self.mapper(pooled.to(self.device), None if tokens is None else tokens.to(self.device))
        embeds, mask = self.embed_context(contexts)
        return self.fusion(visual, embeds, mask)

    def training_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """Batch from `mmgpt2.apps.personalized.PersonalizedFeatureDataset`: pooled, tokens, captions, context."""
        contexts = list(batch["context"])
        if self.training and self.context_dropout > 0:
            drop = (torch.rand(len(contexts)) < self.context_dropout).tolist()
            contexts = ["" if d else c for c, d in zip(contexts, drop, strict=True)]
        return self.lm.loss(self.prefix(batch["pooled"], batch.get("tokens"), contexts), batch["captions"])

    # --- inference ------------------------------------------------------------------------------
    @torch.no_grad()
    def caption(
        self,
        images: Sequence[ImageLike] | ImageLike,
        user: UserLike = None,
        batch_size: int = 32,
        **gen_kwargs: Any,
    ) -> list[str]:
        """Captions of `images` written as `user` would: a known id, context words, or past captions.

        Unknown ids raise `ValueError` naming the known ones; an empty history gives the
        non-personalized caption with a warning. `gen_kwargs` as in `transformers.generate`.
        """
        images = as_image_list(images)
        words = self.context_words(user)
        if user is not None and not words:
            warnings.warn(
                "the user's history gave no context words (empty or only words every user writes); "
                "captioning without personalization",
                stacklevel=2,
            )
        out: list[str] = []
        for i in range(0, len(images), batch_size):
            pooled, tokens = self.encode_images(images[i : i + batch_size])
            out += self.caption_features(pooled, tokens, [words] * pooled.shape[0], **gen_kwargs)
        return out

    @torch.no_grad()
    def caption_features(
        self,
        pooled: torch.Tensor,
        tokens: torch.Tensor | None,
        contexts: Sequence[Sequence[str] | str],
        **gen_kwargs,
    ) -> list[str]:
        """Captions from precomputed features, one context (word list) per image."""
        if not self.mapper.config.token_dim:
            tokens = None
        return self.lm.generate(self.prefix(pooled, tokens, contexts), **self.generation_kwargs(gen_kwargs))
