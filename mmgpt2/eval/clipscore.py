"""CLIPScore and RefCLIPScore (Hessel et al., EMNLP 2021) with any mmgpt2 image-text encoder.

Definitions (the paper's, section 3):
- ``CLIP-S(c, v) = w * max(cos(c, v), 0)`` with ``w = 2.5``, where ``v`` is the image embedding and
  ``c`` the text embedding of the caption prefixed with the prompt ``"A photo depicts"`` (as the
  authors' code does; ``prompt=""`` turns it off);
- ``RefCLIP-S(c, R, v) = H-Mean(CLIP-S(c, v), max(max_{r in R} cos(c, r), 0))``: the harmonic mean
  of CLIP-S and the best caption-reference cosine (the references get the same prompt). The text
  side is *not* multiplied by ``w``; that is the paper's formula and the authors' code.

The corpus score is the mean of the per-caption scores. Reported CLIPScores come from OpenAI's
ViT-B/32 (`open_clip:ViT-B-32/openai`); any other encoder gives numbers on its own scale, so name it
next to the score.

Dense captions (`dense_clip_score`): an event's visual embedding is the mean of the L2-normalised
embeddings of the video frames sampled inside the event (the nearest frame to its middle when none
falls inside), normalised again; its references are the sentences of the ground-truth events it
overlaps (tIoU > 0), so a prediction that overlaps no event has RefCLIPScore 0.

Example:
    >>> from mmgpt2.encoders import load_encoder
    >>> enc = load_encoder("embedded:shapes-clip")  # tiny, so not on ViT-B/32's scale
    >>> images = ["assets/examples/shapes_0.png", "assets/examples/shapes_1.png"]
    >>> scores = clip_score(enc, images, ["a large yellow circle", "a large orange square"],
    ...                     references=[["a large yellow circle in the center"], ["a large orange square on the right"]])
    >>> round(scores["CLIPScore"], 2), round(scores["RefCLIPScore"], 2), len(scores["per_item"])
    (1.85, 1.15, 2)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from mmgpt2.errors import Mmgpt2Error

W = 2.5
PROMPT = "A photo depicts"

ImageLike = str | os.PathLike | Image.Image


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)


def encode_images(encoder, images: Sequence[ImageLike], batch_size: int = 64) -> torch.Tensor:
    """(N, D) L2-normalised image embeddings of image files or PIL images (errors name the file)."""
    from mmgpt2.images import load_image

    out = []
    for i in range(0, len(images), batch_size):
        batch = [load_image(im) for im in images[i : i + batch_size]]
        out.append(_normalise(encoder.encode_image(encoder.preprocess_batch(batch)).cpu()))
    return torch.cat(out) if out else torch.zeros(0, encoder.embed_dim)


def encode_texts(encoder, texts: Sequence[str], prompt: str = PROMPT, batch_size: int = 256) -> torch.Tensor:
    """(N, D) L2-normalised text embeddings of ``f"{prompt} {text}"``."""
    lead = f"{prompt.rstrip()} " if prompt else ""
    out = []
    for i in range(0, len(texts), batch_size):
        chunk = [lead + t for t in texts[i : i + batch_size]]
        try:
            out.append(_normalise(encoder.encode_text(chunk).cpu()))
        except NotImplementedError as err:
            raise Mmgpt2Error(
                f"encoder {encoder.spec!r} has no text tower, so it cannot give CLIPScores; use an image-text "
                "encoder such as open_clip:ViT-B-32/openai"
            ) from err
    return torch.cat(out) if out else torch.zeros(0, encoder.embed_dim)


def _as_image_embeddings(encoder, images_or_features, batch_size: int) -> torch.Tensor:
    if isinstance(images_or_features, (torch.Tensor, np.ndarray)):
        feats = torch.as_tensor(images_or_features)
        if feats.ndim != 2 or feats.shape[1] != encoder.embed_dim:
            raise Mmgpt2Error(
                f"image features of shape {tuple(feats.shape)} do not fit encoder {encoder.spec!r} "
                f"(expected (N, {encoder.embed_dim}) from that encoder)"
            )
        return _normalise(feats.cpu())
    return encode_images(encoder, list(images_or_features), batch_size)


def harmonic_mean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise 2ab / (a + b), 0 where both are 0."""
    total = a + b
    return torch.where(total > 0, 2 * a * b / total.clamp(min=1e-12), torch.zeros_like(total))


def clip_score(
    encoder,
    images_or_features: Sequence[ImageLike] | torch.Tensor | np.ndarray,
    captions: Sequence[str],
    references: Sequence[Sequence[str]] | None = None,
    *,
    w: float = W,
    prompt: str = PROMPT,
    batch_size: int = 64,
) -> dict[str, Any]:
    """CLIPScore of each caption against its image (and RefCLIPScore with `references`).

    `images_or_features`: one image file / PIL image per caption, or an (N, D) tensor of the
    encoder's image embeddings (e.g. an event's pooled frame embeddings). `references[i]` lists
    caption i's reference sentences (a caption with none gets RefCLIPScore 0).

    Returns ``{"CLIPScore": mean, "RefCLIPScore": mean (with references), "per_item": [{...}, ...]}``.

    Example:
        >>> from mmgpt2.encoders import load_encoder
        >>> enc = load_encoder("embedded:shapes-clip")
        >>> round(clip_score(enc, ["assets/examples/shapes_0.png"], ["a large yellow circle"])["CLIPScore"], 2)
        1.81
        >>> round(clip_score(enc, ["assets/examples/shapes_0.png"], ["a small blue square"])["CLIPScore"], 2)
        0.0
    """
    captions = list(captions)
    images = _as_image_embeddings(encoder, images_or_features, batch_size)
    if len(images) != len(captions):
        raise Mmgpt2Error(f"{len(images)} images but {len(captions)} captions: give one image per caption")
    if references is not None and len(references) != len(captions):
        raise Mmgpt2Error(f"{len(references)} reference lists but {len(captions)} captions")
    if not captions:
        raise Mmgpt2Error("no captions to score")
    texts = encode_texts(encoder, captions, prompt)
    per_clip = w * (images * texts).sum(-1).clamp(min=0)
    scores: dict[str, Any] = {"CLIPScore": float(per_clip.mean())}
    per_item = [{"CLIPScore": float(s)} for s in per_clip]
    if references is not None:
        flat = [r for refs in references for r in refs]
        ref_feats = encode_texts(encoder, flat, prompt) if flat else torch.zeros(0, texts.shape[1])
        best = torch.zeros(len(captions))
        start = 0
        for i, refs in enumerate(references):
            if refs:
                best[i] = (ref_feats[start : start + len(refs)] @ texts[i]).max().clamp(min=0)
            start += len(refs)
        per_ref = harmonic_mean(per_clip, best)
        scores["RefCLIPScore"] = float(per_ref.mean())
        for item, s in zip(per_item, per_ref):
            item["RefCLIPScore"] = float(s)
    scores["per_item"] = per_item
    return scores


def event_embedding(
    frame_features: torch.Tensor, times: torch.Tensor, start: float, end: float
) -> torch.Tensor:
    """(D,) embedding of the event ``[start, end]``: the renormalised mean of its frames' unit embeddings.

    Example:
        >>> event_embedding(torch.eye(3), torch.tensor([0.0, 1.0, 2.0]), 0.5, 2.0)  # frames 1 and 2
        tensor([0.0000, 0.7071, 0.7071])
    """
    frames = _normalise(torch.as_tensor(frame_features))
    times = torch.as_tensor(times, dtype=torch.float64)
    inside = (times >= start) & (times <= end)
    if not bool(inside.any()):  # an event shorter than the frame spacing: its nearest frame
        inside = torch.zeros_like(inside)
        inside[int((times - (start + end) / 2).abs().argmin())] = True
    return _normalise(frames[inside].mean(0))


def dense_clip_score(
    encoder,
    frames: Mapping[str, Any],
    predictions: Mapping[str, Sequence[Mapping[str, Any]]],
    ground_truth: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    w: float = W,
    prompt: str = PROMPT,
) -> dict[str, Any]:
    """CLIPScore (and RefCLIPScore with `ground_truth`) of every predicted event over its frames.

    `frames[video_id]` holds the video's frame embeddings from `encoder` and their times, either as
    an object with ``.features`` (T, D) and ``.times`` (T,) (`mmgpt2.apps.video.features.VideoFeatures`)
    or as a ``(features, times)`` pair. `predictions` is ActivityNet's ``results`` object
    ``{video_id: [{"sentence", "timestamp": [start, end]}]}``; `ground_truth` is
    ``{video_id: {"timestamps", "sentences"}}``. Videos without frames are reported, not scored.

    Returns ``{"CLIPScore", "RefCLIPScore" (with ground truth), "events", "per_video": {id: {...}},
    "videos_without_frames": [...]}``; the corpus scores are means over all scored events.

    Example:
        >>> from mmgpt2.encoders import load_encoder
        >>> enc = load_encoder("embedded:shapes-clip")
        >>> frames = encode_images(enc, ["assets/examples/shapes_0.png", "assets/examples/shapes_1.png"])
        >>> scores = dense_clip_score(  # a two-frame "video": frames at 0 s and 2 s
        ...     enc, {"v": (frames, [0.0, 2.0])}, {"v": [{"sentence": "a large yellow circle", "timestamp": [0, 1]}]},
        ...     {"v": {"timestamps": [[0, 1]], "sentences": ["a large yellow circle in the center"]}})
        >>> round(scores["CLIPScore"], 2), round(scores["RefCLIPScore"], 2), scores["events"]
        (1.81, 1.06, 1)
    """
    from mmgpt2.eval.dense import tiou

    embeddings, captions, refs, owners = [], [], [], []
    missing = []
    for vid, events in predictions.items():
        if vid not in frames:
            missing.append(vid)
            continue
        entry = frames[vid]
        feats, times = (entry.features, entry.times) if hasattr(entry, "features") else entry
        truth = (ground_truth or {}).get(vid) or {"timestamps": [], "sentences": []}
        for ev in events:
            start, end = (float(t) for t in ev["timestamp"])
            embeddings.append(event_embedding(feats, times, start, end))
            captions.append(ev["sentence"])
            refs.append(
                [
                    s
                    for ts, s in zip(truth["timestamps"], truth["sentences"])
                    if tiou((start, end), [float(t) for t in ts]) > 0
                ]
            )
            owners.append(vid)
    if not captions:
        raise Mmgpt2Error(
            "no predicted event has frames to score: give frame features for the predicted videos"
        )
    scores = clip_score(
        encoder,
        torch.stack(embeddings),
        captions,
        refs if ground_truth is not None else None,
        w=w,
        prompt=prompt,
    )
    per_video: dict[str, dict[str, float]] = {}
    keys = [k for k in ("CLIPScore", "RefCLIPScore") if k in scores]
    for vid in dict.fromkeys(owners):
        items = [it for it, o in zip(scores["per_item"], owners) if o == vid]
        per_video[vid] = {k: float(np.mean([it[k] for it in items])) for k in keys}
    out: dict[str, Any] = {k: scores[k] for k in keys}
    out.update(events=len(captions), per_video=per_video, videos_without_frames=missing)
    return out
