"""`ZeroShotCaptioner`: training-free captioning (MAGIC-style) with the frozen LM and CLIP only.

No mapper and no weights: GPT-2 writes from its document start (EOS, plus an optional hard
prompt), and at every step CLIP picks among GPT-2's top-k next tokens the one whose finished
caption best matches the image; then word-by-word edits that GPT-2 proposes and CLIP judges on
the whole caption polish it (`mmgpt2.lm.guided`, the guided decoder ZeroTA's video captions use
too). A saved model is only ``config.json``.

Example:
    >>> cap = ZeroShotCaptioner.build("embedded:shapes-clip", "embedded:shapes-gpt2")
    >>> cap.caption("assets/examples/shapes_0.png")  # doctest: +SKIP
    ['a picture of a large yellow circle in the center']
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from mmgpt2.checkpoint import read_config
from mmgpt2.config import Config
from mmgpt2.lm.guided import GuidedSettings, TextEmbeddings, guided_captions, lm_inputs
from mmgpt2.paths import resolve_model_dir
from mmgpt2.pipeline import FrozenPipeline, ImageLike, as_image_list

RETIRED_SETTINGS = ("passes",)  # read from older saved folders, then ignored


@dataclass
class ZeroShotCaptionerConfig(Config):
    """A saved `ZeroShotCaptioner`: the hard prompt and the guided-decoding settings."""

    prompt: str = ""  # text after EOS that every caption continues (and starts with)
    guided: dict[str, Any] = field(default_factory=dict)  # `GuidedSettings`


class ZeroShotCaptioner(FrozenPipeline):
    """Caption images with no trained part: GPT-2 proposes, CLIP chooses.

    Example:
        >>> ZeroShotCaptioner.from_parts_of("shapes-tiny").caption(["img.png"])  # doctest: +SKIP
    """

    kind = "zero_shot_captioner"
    config_class = ZeroShotCaptionerConfig

    def __init__(self, encoder, lm, generation=None, prompt: str = "", guided: GuidedSettings | None = None):
        super().__init__(encoder, lm, generation)
        self.prompt = prompt
        self.guided = guided or GuidedSettings()

    @classmethod
    def build(cls, encoder, lm, prompt: str = "", **guided_settings: Any) -> ZeroShotCaptioner:
        """From encoder and LM specs (or loaded parts) and `GuidedSettings` fields."""
        encoder, lm = cls.resolve_parts(encoder, lm)
        return cls(encoder, lm, prompt=prompt, guided=GuidedSettings.from_dict(guided_settings))

    @classmethod
    def from_parts_of(cls, name_or_dir: str | os.PathLike, **settings: Any) -> ZeroShotCaptioner:
        """The frozen encoder and LM another saved model names (its trained weights are never read)."""
        config = read_config(resolve_model_dir(name_or_dir))
        return cls.build(config["encoder"], config["lm"], **settings)

    def app_config(self) -> ZeroShotCaptionerConfig:
        return ZeroShotCaptionerConfig(prompt=self.prompt, guided=self.guided.to_dict())

    @classmethod
    def from_app_config(cls, config: ZeroShotCaptionerConfig, encoder, lm) -> dict[str, Any]:
        # Folders saved before `refine` replaced the decoding passes name `passes`; it no longer applies.
        guided = {k: v for k, v in config.guided.items() if k not in RETIRED_SETTINGS}
        return {"prompt": config.prompt, "guided": GuidedSettings.from_dict(guided, source="guided")}

    def _context(self) -> torch.Tensor:
        ids = [self.lm.eos_token_id] + self.lm.tokenize([self.prompt])[0]
        return self.lm.embed(torch.tensor(ids, device=self.lm.device))[None]

    def _text(self, continuation: str) -> str:
        return f"{self.prompt.strip()} {continuation}".strip()

    @torch.no_grad()
    def caption(
        self, images: Sequence[ImageLike] | ImageLike, batch_size: int = 32, **settings: Any
    ) -> list[str]:
        """Captions for image paths or PIL images; `settings` override `GuidedSettings` fields."""
        images = as_image_list(images)
        out: list[str] = []
        for i in range(0, len(images), batch_size):
            pooled, _ = self.encode_images(images[i : i + batch_size])
            out += self.caption_features(pooled, **settings)
        return out

    @torch.no_grad()
    def caption_features(
        self, pooled: torch.Tensor, tokens: torch.Tensor | None = None, **settings: Any
    ) -> list[str]:
        """Captions straight from pooled image embeddings (B, D)."""
        given = {k: v for k, v in settings.items() if v is not None and k in GuidedSettings.field_names()}
        guided = self.guided.replace(**given) if given else self.guided
        context = self._context()

        def make_inputs(rows, ids):
            return lm_inputs(self.lm, context.expand(len(rows), -1, -1), ids)

        texts = TextEmbeddings(self.encoder, self.lm.device)  # endings repeat from step to step
        ids = guided_captions(self.lm, texts, make_inputs, pooled, guided, to_text=self._text)
        return [self._text(self.lm.decode(x)) for x in ids]
