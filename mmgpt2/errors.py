"""The one base of every error a user can cause: a bad image, video, config, model folder or flag.

The CLI and the demo catch `Mmgpt2Error` (and `FileNotFoundError`) and show its one-line message;
anything else is a bug and keeps its traceback. Each subclass is also a `ValueError`, so code that
caught `ValueError` before keeps working.

Example:
    >>> from mmgpt2.errors import ConfigError, Mmgpt2Error
    >>> issubclass(ConfigError, Mmgpt2Error) and issubclass(Mmgpt2Error, ValueError)
    True
"""

from __future__ import annotations


class Mmgpt2Error(ValueError):
    """A problem with what the user gave mmgpt2; the message names the input and the fix."""


class ConfigError(Mmgpt2Error):
    """A config (a saved `config.json`, a named config, a flag) that does not fit its schema."""


class ModelFolderError(Mmgpt2Error):
    """A saved model folder that cannot be loaded (missing, corrupt or foreign files)."""
