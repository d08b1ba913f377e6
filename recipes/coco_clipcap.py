"""ClipCap, frozen-GPT-2 transformer configuration, on COCO (Karpathy splits) with real weights.

Reproduces the setting of Mokady et al. 2021 (Table 1, "Ours; Transformer"): CLIP ViT-B/32 and GPT-2
(124M) frozen, a transformer mapper with K = L = 10 and 8 layers (~42M trainable parameters), AdamW
lr 2e-5, 5000 warm-up steps, 10 epochs, batch 40. Paper: BLEU-4 33.53, METEOR 27.45, CIDEr 113.08.

The setup is read from the named config ``clipcap-coco-transformer`` (``mmgpt2/configs``); any
flag given here overrides it. Needs network on first use (downloads `ViT-B-32/openai` and `gpt2`),
COCO 2014 images (``train2014/``, ``val2014/``) and Karpathy's ``dataset_coco.json`` (from
``caption_datasets.zip``; the official ``captions_*.json`` has no Karpathy split and is refused with
that message); Java for the metrics. Usage:

    python recipes/coco_clipcap.py --karpathy /data/dataset_coco.json --images /data/coco --out runs/coco
    accelerate launch --multi_gpu --num_processes 4 recipes/coco_clipcap.py ...   # many GPUs
    python recipes/coco_clipcap.py ... --resume                                    # after a crash
    python recipes/coco_clipcap.py ... --limit 50 --max-steps 20                   # a smoke run

Steps: (1) encode each train/test image once into OUT/features, (2) train the mapper with
resumable checkpoints in OUT/checkpoint, (3) caption the test split (beam 5) and (4) write
OUT/predictions.json (``[{"id": cocoid, "image", "prediction", "references"}]``) and
OUT/scores.json (BLEU, METEOR, ROUGE-L, CIDEr; test images that could not be read are listed
under ``"unreadable_images"``, never silently dropped).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # recipe_common, when imported from elsewhere

import recipe_common as common  # noqa: E402

CONFIG = "clipcap-coco-transformer"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--karpathy", required=True, help="path of Karpathy's dataset_coco.json")
    p.add_argument("--images", required=True, help="COCO root holding train2014/ and val2014/")
    common.add_model_arguments(p, CONFIG)
    common.add_train_arguments(p)
    p.add_argument("--num-beams", type=int, help="beam width at test time (default: the config's)")
    args = p.parse_args(argv)

    import torch
    from accelerate import PartialState

    from mmgpt2.apps.captioning.model import PrefixCaptioner
    from mmgpt2.configs import build_from_config
    from mmgpt2.data import FeatureCaptionDataset, extract_features, read_coco_karpathy
    from mmgpt2.encoders import load_encoder
    from mmgpt2.eval import score_captions
    from mmgpt2.training import train

    named = common.load_config(args)
    out = args.out
    state = PartialState()
    device = args.device or str(state.device)
    train_records = common.limited(read_coco_karpathy(args.karpathy, args.images, "train"), args.limit)
    test_records = common.limited(read_coco_karpathy(args.karpathy, args.images, "test"), args.limit)
    if not train_records or not test_records:
        raise SystemExit(
            f"{args.karpathy}: no {'train' if not train_records else 'test'} images in the split"
        )
    encoder = load_encoder(args.encoder, device=device)
    with state.main_process_first():  # rank 0 encodes; the others then read its cache
        store = extract_features(
            [r.image for r in train_records + test_records],
            encoder,
            out / "features",
            progress=state.is_main_process,
        )

    generation = dict(common.build_settings(named).get("generation", {}))
    if args.num_beams:
        generation["num_beams"] = args.num_beams
    common.seed_everything(named, args)
    model = build_from_config(named, encoder, args.lm, generation=generation)
    final = train(model, FeatureCaptionDataset(train_records, store), common.train_config(named, args, out))
    if not state.is_main_process:
        return 0

    model = PrefixCaptioner.from_pretrained(final, encoder=encoder, device=device)
    test = [r for r in test_records if r.image in store]
    preds: dict[str, str] = {}
    for i in range(0, len(test), 64):
        chunk = test[i : i + 64]
        pooled = torch.stack([store.pooled(r.image) for r in chunk])
        preds.update({r.id: c for r, c in zip(chunk, model.caption_features(pooled), strict=True)})
    rows = [{"id": r.id, "image": r.image, "prediction": preds[r.id], "references": r.captions} for r in test]
    scores = score_captions(preds, {r.id: r.captions for r in test}, common.metrics(args))
    scores["images_scored"] = len(test)
    scores["unreadable_images"] = [r.id for r in test_records if r.image not in store]
    common.write_results(out, rows, scores)
    return 0


if __name__ == "__main__":
    raise SystemExit(common.run_main(main))
