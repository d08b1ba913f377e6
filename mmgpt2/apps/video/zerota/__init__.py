"""ZeroTA (Jo et al. 2023): zero-shot dense video captioning by test-time optimisation.

Nothing is trained on videos. For one video, K events are found and captioned at once by
optimising, against a frozen CLIP and a frozen GPT-2:

- K soft moment masks (`moments.SoftMoments`); event k's *moment embedding* is the mask-weighted
  mean of the normalised frame features;
- the prefix context of event k: ``[soft prompt | projection(moment_k) | BOS + hard prompt]``. The
  soft prompt is shared by the events and starts as the embeddings of a seed text; the projection
  is a linear map from CLIP space to GPT-2's input embeddings, initialised *without any caption
  data* by ridge regression from the CLIP text embeddings of the LM's own vocabulary words to those
  words' input embeddings (so a moment that looks like "red" starts near the embedding of "red").

Losses (all K events in one batch per step):

- **vision**. GPT-2 writes candidate captions from each event's context (no gradient: text is
  discrete): one CLIP-guided caption (GPT-2 proposes its top-k next tokens, CLIP picks among them
  by the best of a few whole captions GPT-2 finishes after each, with `mmgpt2.lm.guided`, the
  library's one guided decoder, also behind `mmgpt2 caption --zero-shot`) and a few
  sampled ones; CLIP embeds them. Two differentiable terms
  use these fixed texts:
  (a) *matching*: the moment embeddings against the events' own captions (for each event, the one
  of its candidates CLIP finds closest), as a K-way contrastive loss (moment k should match
  caption k better than the other events' captions). Its
  gradient flows through the moment embedding into the mask centres and widths: a mask grows over
  frames that look like its caption and retreats from frames that look like another event's.
  (b) *distillation*: over the pooled candidates, GPT-2's (length-normalised) log-likelihood given
  context k is pulled towards CLIP's preference ``softmax(cos(moment_k, text) / T)`` (a
  cross-entropy). Its gradient reaches the soft prompt and the projection (and, through the
  projected moment, the masks again), so the next round of sampling favours what CLIP sees.
  We chose candidate-level scoring over a "soft text embedding" (expected token embeddings fed to
  CLIP's text tower) because CLIP and GPT-2 have different vocabularies (GPT-2-medium + ViT-L/14
  and the embedded shapes models alike), and candidates keep CLIP on real text.
- **language**: KL from the unprefixed LM's next-token distributions to the prefixed ones along
  the event's caption, so steering the prefix cannot make the text disfluent.
- **temporal IoU**: mean pairwise soft tIoU of the masks, to keep events distinct.
- **coverage** (our addition, weight configurable, 0 disables): the matching term alone rewards a
  mask for shrinking onto its purest frames; a small penalty on frames no event covers keeps the
  masks spread over the video.

After the last step each event's caption is the best of all GPT-2's candidates for it (over every
round) by CLIP similarity to its final moment plus a small fluency bonus (mean log-prob under the
unprefixed LM). The best two (`refine_candidates`) are then refined one and two words at a time
(`mmgpt2.lm.guided.refine`: GPT-2 proposes, CLIP and the unprefixed LM judge the whole edited
caption) and compete once more with the rest. The captions
are always written by GPT-2, never retrieved from a list. Events are ranked by that similarity, adjacent events with the same caption are merged,
near-duplicates dropped by temporal NMS, and segments turned into seconds.

Modules: `config` (settings, `Event`), `prefix` (event contexts, the projection), `scoring` (LM
likelihoods), `guided` (how captions are written), `optimise` (`ZeroTA.run`), `postprocess`.
"""

from __future__ import annotations

from mmgpt2.registry import lazy_module

_EXPORTS = {
    "ZeroTA": "mmgpt2.apps.video.zerota.optimise:ZeroTA",
    "ZeroTATrace": "mmgpt2.apps.video.zerota.optimise:ZeroTATrace",
    "ZeroTAConfig": "mmgpt2.apps.video.zerota.config:ZeroTAConfig",
    "Event": "mmgpt2.apps.video.zerota.config:Event",
    "ZeroTAPrefix": "mmgpt2.apps.video.zerota.prefix:ZeroTAPrefix",
    "ProjectionCache": "mmgpt2.apps.video.zerota.prefix:ProjectionCache",
    "vocabulary_projection": "mmgpt2.apps.video.zerota.prefix:vocabulary_projection",
    "GuidedWriter": "mmgpt2.apps.video.zerota.guided:GuidedWriter",
    "masked_nll": "mmgpt2.apps.video.zerota.scoring:masked_nll",
    "postprocess": "mmgpt2.apps.video.zerota.postprocess:postprocess",
}

__getattr__ = lazy_module(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
