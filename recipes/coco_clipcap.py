"""ClipCap, frozen-GPT-2 transformer configuration, on COCO (Karpathy splits) with real weights.

Reproduces the setting of Mokady et al. 2021 (Table 1, "Ours; Transformer"): CLIP ViT-B/32 and GPT-2
(124M) frozen, a transformer mapper with K = L = 10 and 8 layers (~42M trainable parameters), AdamW
lr 2e-5, 5000 warm-up steps, 10 epochs, batch 40. Paper: BLEU-4 33.53, METEOR 27.45, CIDEr 113.08.

Needs network on first use (downloads `ViT-B-32/openai` and `gpt2`), COCO 2014 images and Karpathy's
`dataset_coco.json`; Java for the metrics. Usage:

    python recipes/coco_clipcap.py --karpathy /data/dataset_coco.json --images /data/coco --out runs/coco
    accelerate launch --multi_gpu --num_processes 4 recipes/coco_clipcap.py ...   # many GPUs
    python recipes/coco_clipcap.py ... --resume                                    # after a crash

Steps: (1) encode each train/test image once into OUT/features, (2) train the mapper with
resumable checkpoints in OUT/checkpoint, (3) caption the test split with beam 5 into
OUT/test_predictions.json, (4) score it into OUT/test_scores.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ENCODER = "open_clip:ViT-B-32/openai"
LM = "gpt2"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--karpathy", required=True, help="path of dataset_coco.json")
    p.add_argument("--images", required=True, help="COCO root holding train2014/ and val2014/")
    p.add_argument("--out", required=True)
    p.add_argument("--encoder", default=ENCODER)
    p.add_argument("--lm", default=LM)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=40)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--warmup-steps", type=int, default=5000)
    p.add_argument("--save-every", type=int, default=2000)
    p.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], default="no")
    p.add_argument("--num-beams", type=int, default=5)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--max-steps", type=int, help="stop early (smoke runs)")
    args = p.parse_args(argv)

    import torch
    from accelerate import PartialState

    from mmgpt2.apps.captioning.model import PrefixCaptioner
    from mmgpt2.data import FeatureCaptionDataset, extract_features, read_coco_karpathy
    from mmgpt2.encoders import load_encoder
    from mmgpt2.eval import score_captions
    from mmgpt2.training import TrainConfig, train

    out = Path(args.out)
    state = PartialState()
    train_records = read_coco_karpathy(args.karpathy, args.images, "train")
    test_records = read_coco_karpathy(args.karpathy, args.images, "test")
    encoder = load_encoder(args.encoder, device=str(state.device))
    with state.main_process_first():  # rank 0 encodes; the others then read its cache
        store = extract_features(
            [r.image for r in train_records + test_records],
            encoder,
            out / "features",
            progress=state.is_main_process,
        )

    model = PrefixCaptioner.build(
        encoder,
        args.lm,
        mapper="transformer",
        prefix_length=10,
        clip_length=10,
        num_layers=8,
        num_heads=8,
        generation={"max_new_tokens": 30, "num_beams": args.num_beams},
    )
    config = TrainConfig(
        out_dir=str(out),
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        save_every=args.save_every,
        mixed_precision=args.mixed_precision,
        resume=args.resume,
    )
    final = train(model, FeatureCaptionDataset(train_records, store), config)
    if not state.is_main_process:
        return

    model = PrefixCaptioner.from_pretrained(final, encoder=encoder, device=str(state.device))
    test = [r for r in test_records if r.image in store]
    preds = {}
    for i in range(0, len(test), 64):
        chunk = test[i : i + 64]
        pooled = torch.stack([store.pooled(r.image) for r in chunk])
        preds.update({r.id: c for r, c in zip(chunk, model.caption_features(pooled))})
    (out / "test_predictions.json").write_text(json.dumps(preds, indent=1))
    scores = score_captions(preds, {r.id: r.captions for r in test})
    (out / "test_scores.json").write_text(json.dumps(scores, indent=2))
    print(json.dumps(scores, indent=2))


if __name__ == "__main__":
    main()
