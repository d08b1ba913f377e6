"""Soft moment masks: K smooth windows over a video's (normalised) time axis.

Window k is ``m_k(t) = sigmoid(s (t - c_k + w_k / 2)) * sigmoid(-s (t - c_k - w_k / 2))``: about 1
inside ``[c_k - w_k/2, c_k + w_k/2]`` and 0 outside, with edges whose steepness is the sharpness s.
Centre and width are learnable (through a sigmoid, so they stay in (0, 1)); s follows a schedule
from soft (gradients reach far-away frames early on) to sharp (precise boundaries at the end).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mmgpt2.errors import Mmgpt2Error


def _logit(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(1e-4, 1 - 1e-4)
    return torch.log(x) - torch.log1p(-x)


class SoftMoments(nn.Module):
    """K learnable soft windows on [0, 1], initialised as an even tiling of the video.

    Example:
        >>> moments = SoftMoments(3)
        >>> masks = moments(torch.linspace(0, 1, 50), sharpness=30.0)
        >>> tuple(masks.shape), bool(masks.min() >= 0), bool(masks.max() <= 1)
        ((3, 50), True, True)
        >>> moments.segments()  # (3, 2) start/end in [0, 1]
        tensor([[0.0000, 0.3333],
                [0.3333, 0.6667],
                [0.6667, 1.0000]])
    """

    def __init__(self, k: int, centers: torch.Tensor | None = None, widths: torch.Tensor | None = None):
        super().__init__()
        if k < 1:
            raise Mmgpt2Error(f"need at least one event, got k={k}")
        centers = (
            (torch.arange(k) + 0.5) / k if centers is None else torch.as_tensor(centers, dtype=torch.float32)
        )
        widths = torch.full((k,), 1.0 / k) if widths is None else torch.as_tensor(widths, dtype=torch.float32)
        self.center_logit = nn.Parameter(_logit(centers.float()))
        self.width_logit = nn.Parameter(_logit(widths.float()))

    @property
    def k(self) -> int:
        return self.center_logit.shape[0]

    def centers_widths(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.sigmoid(self.center_logit), torch.sigmoid(self.width_logit)

    def forward(self, t: torch.Tensor, sharpness: float) -> torch.Tensor:
        """Masks (K, T) at normalised times `t` (T,)."""
        c, w = self.centers_widths()
        t = t[None, :]
        left = torch.sigmoid(sharpness * (t - c[:, None] + w[:, None] / 2))
        right = torch.sigmoid(-sharpness * (t - c[:, None] - w[:, None] / 2))
        return left * right

    @torch.no_grad()
    def segments(self) -> torch.Tensor:
        """(K, 2) ``[start, end]`` in normalised time, clipped to [0, 1]."""
        c, w = self.centers_widths()
        return torch.stack([(c - w / 2).clamp(0, 1), (c + w / 2).clamp(0, 1)], dim=-1)


def sharpness_at(step: int, steps: int, start: float, end: float) -> float:
    """Geometric schedule from `start` (first step) to `end` (last step)."""
    if steps <= 1:
        return end
    return start * math.exp(math.log(end / start) * step / (steps - 1))


def moment_embeddings(masks: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Mask-weighted means of (normalised) frame features: (K, T) x (T, D) -> (K, D)."""
    return masks @ frames / masks.sum(-1, keepdim=True).clamp(min=1e-6)


def pairwise_soft_tiou(masks: torch.Tensor) -> torch.Tensor:
    """Mean soft temporal IoU over the K(K-1)/2 pairs of masks (0 for a single mask).

    Intersection is ``sum_t m_i m_j`` and union ``sum_t m_i + sum_t m_j - intersection``: the
    product of soft masks, so the loss is smooth in every centre and width.
    """
    k = masks.shape[0]
    if k < 2:
        return masks.new_zeros(())
    inter = masks @ masks.T
    mass = masks.sum(-1)
    union = mass[:, None] + mass[None, :] - inter
    iou = inter / union.clamp(min=1e-6)
    i, j = torch.triu_indices(k, k, offset=1)
    return iou[i, j].mean()


def coverage_gap(masks: torch.Tensor) -> torch.Tensor:
    """Mean squared shortfall of ``max_k m_k(t)`` below 1: how much of the video no event covers."""
    return (1 - masks.max(0).values).clamp(min=0).pow(2).mean()


def segment_tiou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Hard temporal IoU of two ``(start, end)`` segments."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0
