"""Caption datasets, the feature cache and training examples."""

from mmgpt2.data.datasets import FeatureCaptionDataset, collate_dicts
from mmgpt2.data.features import FeatureStore, extract_features
from mmgpt2.data.records import CaptionRecord, read_captions, read_coco_karpathy, read_jsonl

__all__ = [
    "CaptionRecord",
    "FeatureCaptionDataset",
    "FeatureStore",
    "collate_dicts",
    "extract_features",
    "read_captions",
    "read_coco_karpathy",
    "read_jsonl",
]
