"""Knowledge-graph retrieval for Med-XPT: triplets, their text embeddings, a FAISS index."""

from .extract import PatternExtractor, RadGraphExtractor, default_extractor, split_sentences
from .kg import KGError, KnowledgeGraph, Triplet, merge_triplets, read_triplets_jsonl, triplet_text

__all__ = [
    "KGError",
    "KnowledgeGraph",
    "PatternExtractor",
    "RadGraphExtractor",
    "Triplet",
    "default_extractor",
    "merge_triplets",
    "read_triplets_jsonl",
    "split_sentences",
    "triplet_text",
]
