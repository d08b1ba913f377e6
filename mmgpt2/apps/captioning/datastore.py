"""`CaptionDatastore`: captions of other images, retrieved by image embedding (SmallCap's datastore).

Built on the library's one retrieval datastore (`mmgpt2.retrieval.TextIndex`, shared with the
knowledge graph): each distinct caption is embedded once by the encoder's text tower and keeps the
ids of the images it describes, so training can exclude the query image's own captions while an
identical caption of another image stays retrievable.

Folder layout (`save` / `load`)::

    datastore.json    {"format": "mmgpt2-caption-datastore", "version": 1, "encoder": spec, "dim": D, "count": N, ...}
    captions.jsonl    one {"text", "source_ids"} per index row
    index.faiss       the FAISS index (flat up to 200k captions, IVF above)

Example:
    >>> import tempfile
    >>> from PIL import Image
    >>> from mmgpt2.encoders import load_encoder
    >>> enc = load_encoder("embedded:shapes-clip")
    >>> store = CaptionDatastore.from_jsonl("data/shapes/captions.jsonl", enc)  # doctest: +SKIP
    >>> store = CaptionDatastore.from_captions(
    ...     ["a large yellow circle in the center", "a small red square at the top"], ["im1", "im2"], enc, progress=False
    ... )
    >>> folder = store.save(tempfile.mkdtemp())
    >>> pixels = enc.preprocess_batch([Image.open("assets/examples/shapes_0.png").convert("RGB")])
    >>> CaptionDatastore.load(folder).query(enc.encode_image(pixels), k=2)
    [['a large yellow circle in the center', 'a small red square at the top']]
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from mmgpt2.data.records import CaptionRecord, read_captions
from mmgpt2.errors import Mmgpt2Error
from mmgpt2.retrieval import Layout, TextIndex, load_folder


class DatastoreError(Mmgpt2Error):
    """A caption datastore folder or input that cannot be used; the message names it and the fix."""


LAYOUT = Layout(
    format="mmgpt2-caption-datastore",
    version=1,
    meta_name="datastore.json",
    rows_name="captions.jsonl",
    what="caption datastore",
    rebuild="`mmgpt2 datastore build CAPTIONS.jsonl --encoder SPEC --out DIR`",
    error=DatastoreError,
)


def record_source_id(record: CaptionRecord, root: str | os.PathLike | None = None) -> str:
    """The id a record's captions are stored under: its own ``id``, else its image path relative to `root`.

    Training and `CaptionDatastore.from_records` name sources the same way, so a training image's
    own captions can be excluded from what it retrieves.
    """
    if record.id and record.id != record.image:
        return record.id
    if root is not None:
        try:
            return os.path.relpath(record.image, root)
        except ValueError:  # another drive on Windows
            pass
    return record.image


def merge_captions(pairs: Iterable[tuple[str, str]]) -> tuple[list[str], list[list[str]]]:
    """``(caption, source_id)`` pairs -> distinct captions (first-seen order) and the sources of each."""
    merged: dict[str, list[str]] = {}
    for text, source in pairs:
        text = " ".join(str(text).split())
        if not text:
            continue
        sources = merged.setdefault(text, [])
        if source not in sources:
            sources.append(source)
    return list(merged), list(merged.values())


class CaptionDatastore:
    """Distinct captions + the images they came from + a FAISS index of their text embeddings."""

    def __init__(self, store: TextIndex):
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    def __repr__(self) -> str:
        return (
            f"CaptionDatastore({len(self)} captions, dim={self.store.dim}, index={self.store.index_kind}, "
            f"encoder={self.encoder_spec!r})"
        )

    @property
    def encoder_spec(self) -> str:
        return self.store.encoder_spec

    @property
    def texts(self) -> list[str]:
        return self.store.texts

    # --- building ---------------------------------------------------------------------------------
    @classmethod
    def from_captions(
        cls,
        captions: Sequence[str],
        source_ids: Sequence[str],
        encoder,
        index: str = "auto",
        progress: bool = True,
    ) -> CaptionDatastore:
        """One caption per entry of `captions`, each from the image `source_ids[i]` (merged by text).

        Example:
            >>> from mmgpt2.encoders import load_encoder
            >>> enc = load_encoder("embedded:shapes-clip")
            >>> CaptionDatastore.from_captions(
            ...     ["a red circle", "a red circle"], ["im1", "im2"], enc, progress=False
            ... ).store.source_ids
            [['im1', 'im2']]
        """
        if len(captions) != len(source_ids):
            raise DatastoreError(
                f"{len(captions)} captions but {len(source_ids)} source ids; give one per caption"
            )
        texts, sources = merge_captions(zip(captions, source_ids))
        return cls(
            TextIndex.embed(texts, sources, encoder, progress=progress, index=index, error=DatastoreError)
        )

    @classmethod
    def from_records(
        cls,
        records: Sequence[CaptionRecord],
        encoder,
        root: str | os.PathLike | None = None,
        first_only: bool = False,
        **kwargs,
    ) -> CaptionDatastore:
        """Every caption of every record (`first_only`: the first of each), sourced by `record_source_id`."""
        pairs = [
            (cap, record_source_id(r, root))
            for r in records
            for cap in (r.captions[:1] if first_only else r.captions)
        ]
        if not pairs:
            raise DatastoreError("no captions to store; the caption file has no records")
        return cls.from_captions([c for c, _ in pairs], [s for _, s in pairs], encoder, **kwargs)

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike, encoder, **kwargs) -> CaptionDatastore:
        """From a captions file (`mmgpt2.data.read_captions`: our JSON lines or Karpathy JSON); images are never opened."""
        path = Path(path)
        return cls.from_records(read_captions(path), encoder, root=path.parent.resolve(), **kwargs)

    # --- querying ---------------------------------------------------------------------------------
    def query(
        self,
        image_embeddings: torch.Tensor | np.ndarray,
        k: int = 4,
        exclude_source: Sequence[str | Sequence[str] | None] | None = None,
    ) -> list[list[str]]:
        """The top-`k` captions for each image embedding (B, D), best first.

        `exclude_source` (one entry per row) drops captions that only those images have.
        """
        hits = self.store.search(image_embeddings, k, exclude_source)
        return [[self.store.texts[row] for row, _ in row_hits] for row_hits in hits]

    # --- saving -----------------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike) -> Path:
        rows = [{"text": t, "source_ids": s} for t, s in zip(self.store.texts, self.store.source_ids)]
        return self.store.save_folder(folder, LAYOUT, rows)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> CaptionDatastore:
        """Load a folder written by `save`; a missing, corrupt or inconsistent file raises `DatastoreError`."""
        rows, index, meta = load_folder(folder, LAYOUT)
        try:
            texts = [str(r["text"]) for r in rows]
            sources = [[str(s) for s in r.get("source_ids", [])] for r in rows]
        except (KeyError, TypeError) as err:
            raise DatastoreError(
                f"{Path(folder) / LAYOUT.rows_name}: a row lacks 'text'; rebuild the datastore"
            ) from err
        return cls(
            TextIndex(texts, sources, None, meta.get("encoder", ""), index=index, error=DatastoreError)
        )


def load_datastore(datastore: CaptionDatastore | str | os.PathLike | None) -> CaptionDatastore | None:
    """A datastore, loaded from its folder when given a path (None passes through)."""
    if datastore is None or isinstance(datastore, CaptionDatastore):
        return datastore
    return CaptionDatastore.load(datastore)
