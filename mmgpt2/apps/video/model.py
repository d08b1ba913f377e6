"""`DenseVideoCaptioner`: zero-shot dense video captioning (ZeroTA) with a frozen encoder and LM.

Nothing in it is trained: a saved model is only ``config.json`` (the encoder and LM specs, the
frame sampling and the ZeroTA settings), so `load_pipeline` loads it like any other application.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmgpt2.apps.video.features import DEFAULT_CACHE, VideoFeatures, video_features
from mmgpt2.apps.video.limits import bounded_events
from mmgpt2.apps.video.reader import SamplingConfig
from mmgpt2.apps.video.zerota import Event, ZeroTA, ZeroTAConfig, ZeroTATrace
from mmgpt2.apps.video.zerota.prefix import ProjectionCache
from mmgpt2.checkpoint import atomic_write_json
from mmgpt2.config import Config
from mmgpt2.encoders import VisionEncoder
from mmgpt2.errors import ConfigError
from mmgpt2.lm import FrozenLM
from mmgpt2.pipeline import FrozenPipeline


def video_id(path: str | os.PathLike) -> str:
    """The ActivityNet-style id of a video file: its name without extension."""
    return Path(path).stem


def _keyed(paths: Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike]) -> list[tuple[str, str]]:
    """(video id, path) pairs: a mapping gives the ids (e.g. ActivityNet's ``v_...`` keys for files
    saved without the ``v_``); a plain list keys each file by its name without extension."""
    if isinstance(paths, Mapping):
        return [(str(vid), str(p)) for vid, p in paths.items()]
    return [(video_id(p), str(p)) for p in paths]


@dataclass
class DenseVideoCaptionerConfig(Config):
    """What a saved `DenseVideoCaptioner` holds besides its frozen parts."""

    zerota: dict[str, Any] = field(default_factory=dict)  # `ZeroTAConfig` settings
    sampling: dict[str, Any] = field(default_factory=dict)  # `SamplingConfig` settings


class DenseVideoCaptioner(FrozenPipeline):
    """Find and caption the events of a video, zero-shot.

    Example:
        >>> dvc = DenseVideoCaptioner.from_pretrained("shapes-video-zerota")  # doctest: +SKIP
        >>> for e in dvc.caption_video("clip.mp4", events=3):  # doctest: +SKIP
        ...     print(f"{e.start:5.1f}-{e.end:5.1f} s  {e.sentence}")
    """

    kind = "dense_video_captioner"
    config_class = DenseVideoCaptionerConfig

    def __init__(
        self,
        encoder: VisionEncoder,
        lm: FrozenLM,
        generation: dict[str, Any] | None = None,
        zerota: ZeroTAConfig | None = None,
        sampling: SamplingConfig | None = None,
        cache_dir: str | os.PathLike | None = DEFAULT_CACHE,
    ):
        super().__init__(encoder, lm, generation)
        self.zerota = zerota or ZeroTAConfig()
        self.sampling = sampling or SamplingConfig()
        self.cache_dir = cache_dir
        self.projections = ProjectionCache()  # fitted once per (encoder, LM) weights, reused by every video

    @classmethod
    def build(
        cls,
        encoder: str | VisionEncoder,
        lm: str | FrozenLM,
        sampling: SamplingConfig | dict | None = None,
        **zerota_settings: Any,
    ) -> DenseVideoCaptioner:
        """A captioner from encoder and LM specs (or loaded models) and ZeroTA settings.

        Example:
            >>> DenseVideoCaptioner.build("open_clip:ViT-L-14/openai", "hf:gpt2-medium", hard_prompt="A video of")  # doctest: +SKIP
        """
        encoder, lm = cls.resolve_parts(encoder, lm)
        sampling = SamplingConfig(**sampling) if isinstance(sampling, dict) else sampling
        return cls(encoder, lm, zerota=ZeroTAConfig.from_dict(zerota_settings), sampling=sampling)

    # --- the saved config ----------------------------------------------------------------------------
    def app_config(self) -> DenseVideoCaptionerConfig:
        return DenseVideoCaptionerConfig(
            zerota=dataclasses.asdict(self.zerota), sampling=dataclasses.asdict(self.sampling)
        )

    @classmethod
    def from_app_config(
        cls, config: DenseVideoCaptionerConfig, encoder: VisionEncoder, lm: FrozenLM
    ) -> dict[str, Any]:
        try:
            sampling = SamplingConfig(**config.sampling)
        except TypeError as err:
            raise ConfigError(f"bad 'sampling' settings {config.sampling}: {err}") from None
        return {"zerota": ZeroTAConfig.from_dict(config.zerota), "sampling": sampling}

    # --- inference ------------------------------------------------------------------------------------
    def features(self, path: str | os.PathLike, progress: bool = False) -> VideoFeatures:
        """Frame features of `path` (cached by the file's content hash)."""
        return video_features(path, self.encoder, self.sampling, self.cache_dir, progress=progress)

    def caption_video(
        self,
        path: str | os.PathLike,
        events: int | None = None,
        trace: ZeroTATrace | None = None,
        progress: bool = False,
        **settings: Any,
    ) -> list[Event]:
        """Events of one video, best first; `events` and `settings` override the saved ZeroTA settings."""
        feats = self.features(path, progress=progress)
        return self.caption_features(feats, events, trace, **settings)

    def caption_features(
        self,
        feats: VideoFeatures,
        events: int | None = None,
        trace: ZeroTATrace | None = None,
        **settings: Any,
    ) -> list[Event]:
        """Events from precomputed `VideoFeatures`; at most `MAX_EVENTS`, and one per sampled frame."""
        overrides = {**settings, **({"events": events} if events is not None else {})}
        config = self.zerota.replace(**overrides) if overrides else self.zerota
        bounded = bounded_events(config.events, len(feats.times))
        if bounded != config.events:
            config = config.replace(events=bounded)
        return ZeroTA(self.encoder, self.lm, config, self.projections).run(
            feats.features, feats.times, feats.duration, trace=trace
        )

    def caption_videos(
        self,
        paths: Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike],
        events: int | None = None,
        progress: bool = True,
    ) -> tuple[dict[str, list[Event]], dict[str, str]]:
        """``(results, errors)`` keyed by video id; one unreadable video never stops the others.

        `paths`: files (keyed by `video_id`) or ``{video_id: file}``.
        """
        from tqdm.auto import tqdm

        results: dict[str, list[Event]] = {}
        errors: dict[str, str] = {}
        for vid, path in tqdm(_keyed(paths), desc="dense captioning", unit="video", disable=not progress):
            try:
                results[vid] = self.caption_video(path, events)
            except (ValueError, FileNotFoundError) as err:
                errors[vid] = str(err)
        return results, errors


def activitynet_predictions(results: dict[str, list[Event]], external: dict | None = None) -> dict[str, Any]:
    """ActivityNet Captions prediction format for `results` (video id -> events)."""
    return {
        "version": "VERSION 1.0",
        "results": {vid: [e.to_activitynet() for e in events] for vid, events in results.items()},
        "external_data": external
        or {"used": False, "details": "zero-shot: frozen CLIP and GPT-2 (mmgpt2 ZeroTA)"},
    }


def process_state(captioner: DenseVideoCaptioner):
    """accelerate's `PartialState` for this captioner: one process unless under `accelerate launch`.

    A CPU captioner asks for CPU processes (gloo): without that, accelerate on a machine with no
    GPU sees the launched processes as one each. (On CPU, `accelerate launch` starts several
    processes only with ``--multi_gpu`` or mpirun: ``accelerate launch --multi_gpu --num_processes 2``.)
    """
    from accelerate import PartialState

    return PartialState(cpu=captioner.lm.device.type == "cpu")


def caption_videos_distributed(
    captioner: DenseVideoCaptioner,
    paths: Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike],
    out_json: str | os.PathLike,
    events: int | None = None,
) -> dict[str, Any] | None:
    """Caption `paths` spread over the processes of `accelerate launch`; the main process writes
    `out_json` (ActivityNet format, errors under ``external_data.errors``) and returns it.
    `paths` as in `DenseVideoCaptioner.caption_videos` (a mapping keeps its ids).

    One process (plain ``python``) simply does all videos. Each process writes its share to
    ``out_json.partN.json`` first, so a crash loses at most that process's work.

    Example:
        accelerate launch --num_processes 4 recipes/zerota_activitynet.py --videos v/ --gt val_1.json
        accelerate launch --multi_gpu --num_processes 2 -m mmgpt2.cli.main dense-caption v/*.mp4 --out p.json
    """
    state = process_state(captioner)
    out = Path(out_json)
    pairs = _keyed(paths)
    with state.split_between_processes(pairs) as mine:
        results, errors = captioner.caption_videos(dict(mine), events, progress=state.is_local_main_process)
    part = out.with_name(f"{out.name}.part{state.process_index}.json")
    atomic_write_json(part, {"predictions": activitynet_predictions(results)["results"], "errors": errors})
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    merged, all_errors = {}, {}
    for i in range(state.num_processes):
        p = out.with_name(f"{out.name}.part{i}.json")
        data = json.loads(p.read_text())
        merged.update(data["predictions"])
        all_errors.update(data["errors"])
        p.unlink()
    # Exactly what one process writes for the same videos (results in input order, errors if any).
    doc = activitynet_predictions({})
    doc["results"] = {video_id(p): merged[video_id(p)] for p in paths if video_id(p) in merged}
    if all_errors:
        doc["external_data"]["errors"] = all_errors
    atomic_write_json(out, doc)
    return doc
