"""One place that turns an encoder spec string into a frozen `VisionEncoder`."""

from __future__ import annotations

from pathlib import Path

from .base import VisionEncoder

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


def load_encoder(spec: str, device: str | None = None) -> VisionEncoder:
    """Build the frozen encoder named by `spec` (see `SPEC_HELP`).

    Example:
        >>> enc = load_encoder("embedded:shapes-clip")
        >>> pooled = enc.encode_image(enc.preprocess_batch([image]))
    """
    kind, sep, rest = spec.partition(":")
    if not sep:
        raise ValueError(f"encoder spec {spec!r} has no kind prefix\n{SPEC_HELP}")
    if kind == "open_clip":
        from .open_clip_encoder import OpenClipEncoder

        name, pretrained = parse_open_clip_spec(rest)
        encoder: VisionEncoder = OpenClipEncoder(name, pretrained=pretrained, spec=spec)
    elif kind == "embedded":
        from ..paths import embedded_model_dir
        from .open_clip_encoder import OpenClipEncoder

        folder = embedded_model_dir(rest)
        encoder = OpenClipEncoder(f"local-dir:{folder}", spec=spec)
    elif kind == "medclip":
        from .medclip import MedClipEncoder  # added by the medical application

        encoder = MedClipEncoder(Path(rest), spec=spec)
    else:
        raise ValueError(f"unknown encoder kind {kind!r} in {spec!r}\n{SPEC_HELP}")
    return encoder.to(device) if device else encoder
