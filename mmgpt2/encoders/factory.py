"""One place that turns an encoder spec string into a frozen `VisionEncoder`."""

from __future__ import annotations

from pathlib import Path

from mmgpt2.encoders.base import VisionEncoder
from mmgpt2.errors import Mmgpt2Error

SPEC_HELP = """encoder specs:
  open_clip:ViT-B-32/openai          open_clip name / pretrained tag (downloads weights)
  open_clip:ViT-B-32                 the same architecture with random weights
  open_clip:ViT-B-32//path/ckpt.pt   the architecture with a local checkpoint file
  open_clip:hf-hub:ORG/REPO          an open_clip model on the Hugging Face Hub (e.g. BiomedCLIP)
  open_clip:local-dir:/path          a folder with open_clip_config.json + weights
  embedded:shapes-clip               an embedded tiny model shipped under assets/models"""


def parse_open_clip_spec(rest: str) -> tuple[str, str | None]:
    """Split ``name/pretrained`` into (name, pretrained); schema ids keep their slashes."""
    if rest.startswith(("hf-hub:", "local-dir:")):
        return rest, None
    name, _, pretrained = rest.partition("/")
    return name, (pretrained or None)


def load_open_clip(rest: str, spec: str) -> VisionEncoder:
    from mmgpt2.encoders.open_clip_encoder import OpenClipEncoder

    name, pretrained = parse_open_clip_spec(rest)
    return OpenClipEncoder(name, pretrained=pretrained, spec=spec)


def load_embedded(rest: str, spec: str) -> VisionEncoder:
    from mmgpt2.encoders.open_clip_encoder import OpenClipEncoder
    from mmgpt2.paths import embedded_model_dir

    return OpenClipEncoder(f"local-dir:{embedded_model_dir(rest)}", spec=spec)


def load_medclip(rest: str, spec: str) -> VisionEncoder:
    from mmgpt2.encoders.medclip import MedClipEncoder

    return MedClipEncoder(Path(rest), spec=spec)


def load_encoder(spec: str, device: str | None = None) -> VisionEncoder:
    """Build the frozen encoder named by `spec` (see `SPEC_HELP`; kinds in `registry.ENCODER_KINDS`).

    Example:
        >>> enc = load_encoder("embedded:shapes-clip")
        >>> enc.encode_image(enc.preprocess_batch([Image.new("RGB", (64, 64))])).shape  # doctest: +SKIP
        torch.Size([1, 128])
    """
    from mmgpt2.registry import ENCODER_KINDS

    kind, sep, rest = spec.partition(":")
    if not sep:
        raise Mmgpt2Error(f"encoder spec {spec!r} has no kind prefix\n{SPEC_HELP}")
    if kind not in ENCODER_KINDS:
        raise Mmgpt2Error(f"unknown encoder kind {kind!r} in {spec!r}\n{SPEC_HELP}")
    encoder = ENCODER_KINDS[kind](rest, spec)
    return encoder.to(device) if device else encoder
