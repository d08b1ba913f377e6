"""One fingerprint scheme for frozen weights: saved models and feature caches record it.

A retrained model behind the same spec (``embedded:shapes-gpt2``) gets a new fingerprint, so a
mapper trained against the old weights warns when loaded, and a feature cache is not reused.
"""

from __future__ import annotations

import hashlib

from torch import nn


def weights_fingerprint(module: nn.Module) -> str:
    """A short hash of a module's weights.

    Hashes every tensor's name, shape and a strided sample of at most 4096 of its values (about a
    millisecond for ViT-L): enough to tell two trainings apart without reading 300M parameters.

    Example:
        >>> from torch import nn
        >>> a, b = nn.Linear(4, 4), nn.Linear(4, 4)
        >>> weights_fingerprint(a) == weights_fingerprint(a), weights_fingerprint(a) == weights_fingerprint(b)
        (True, False)
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 4096)].float().cpu().numpy()
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(sample.tobytes())
    return digest.hexdigest()[:16]
