"""One mapper training step through the frozen GPT-2 124M: mmgpt2's FrozenLM vs ClipCap's frozen variant.

Both variants train the same ClipCap transformer mapper (512 -> 10 x 768, 8 layers) with AdamW on
random features and random 20-token captions (batch 16 by default), through the same GPT-2 124M
architecture (random weights, seed 0), in eval mode (no dropout) in both.

- ours: `FrozenLM` (GPT-2 `requires_grad_(False)`), `FrozenLM.loss` (its captions carry one more
  token, the EOS, so ours does slightly more work).
- ClipCap-style: as `ClipCaptionPrefix` in rmokady/CLIP_prefix_caption: GPT-2 parameters keep
  `requires_grad=True`, only the mapper is in the optimizer, `train()` puts GPT-2 back in eval mode,
  and `model.zero_grad()` only reaches the mapper (`parameters()` is overridden), so GPT-2's
  `.grad` tensors are computed every step and stay allocated. Loss: cross-entropy over the caption
  logits with `ignore_index=0`, as in its train.py.

Method: each variant runs in its own fresh Python process. After building the model, optimizer and
data, the process records its resident set size (VmRSS), resets the kernel's peak-RSS counter
(``echo 5 > /proc/self/clear_refs``), runs 1 warm-up step and N timed steps, then reads the peak
(VmHWM). "peak extra memory" = VmHWM - VmRSS-before-steps: what the training steps themselves add
(activations, gradients, optimizer state). Step time is the median of the N timed steps. Linux only.

Usage:
    python benchmarks/train_step.py             # 124M GPT-2, batch 16, 3 timed steps
    python benchmarks/train_step.py --quick     # 2-layer GPT-2, batch 4: smoke check
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}; this benchmark needs Linux")


def run_variant(variant: str, args: argparse.Namespace) -> dict:
    """Build one variant, run its steps, return timings and memory (runs inside the child process)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from mmgpt2.lm import FrozenLM
    from mmgpt2.mappers import TransformerMapper, TransformerMapperConfig

    torch.manual_seed(0)
    gpt = GPT2LMHeadModel(GPT2Config(n_layer=2) if args.quick else GPT2Config())
    mapper = TransformerMapper(TransformerMapperConfig(input_dim=512, lm_dim=768, prefix_length=args.prefix))
    optimizer = torch.optim.AdamW(mapper.parameters(), lr=2e-5)
    feats = torch.randn(args.batch, 512)
    tokens = torch.randint(1, 50000, (args.batch, args.caption_len))

    if variant == "ours":
        lm = FrozenLM(gpt, None)
        targets = [t + [lm.eos_token_id] for t in tokens.tolist()]

        def step() -> float:
            loss = lm.loss(mapper(feats), targets)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return loss.item()

    else:
        gpt.eval()  # ClipCaptionPrefix.train() calls self.gpt.eval(); its parameters keep requires_grad=True
        mask = torch.ones(args.batch, args.prefix + args.caption_len, dtype=torch.long)

        def step() -> float:
            mapper.zero_grad()  # ClipCap's model.zero_grad(): `parameters()` only yields the mapper's
            prefix = mapper(feats)
            emb = torch.cat([prefix, gpt.transformer.wte(tokens)], dim=1)
            logits = gpt(inputs_embeds=emb, attention_mask=mask).logits[:, args.prefix - 1 : -1]
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.flatten(), ignore_index=0)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            return loss.item()

    rss_before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM so it measures only the steps below
    step()  # warm-up
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = _status_kb("VmHWM")
    gpt_grads = sum(p.grad.numel() for p in gpt.parameters() if p.grad is not None)
    return {
        "variant": variant,
        "step_s": statistics.median(times),
        "steps_s": times,
        "rss_before_mb": rss_before / 1024,
        "peak_extra_mb": (peak - rss_before) / 1024,
        "gpt2_grad_elements": gpt_grads,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--caption-len", type=int, default=20)
    p.add_argument("--prefix", type=int, default=10)
    p.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads in each variant (default: torch's)"
    )
    p.add_argument("--quick", action="store_true", help="2-layer GPT-2, batch 4, 1 timed step")
    p.add_argument("--variant", choices=["ours", "clipcap"], help=argparse.SUPPRESS)  # child-process mode
    args = p.parse_args()
    if args.quick:
        args.batch, args.steps = 4, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.variant:
        print(json.dumps(run_variant(args.variant, args)))
        return

    results = {}
    for variant in ("clipcap", "ours"):
        cmd = [
            sys.executable,
            __file__,
            "--variant",
            variant,
            "--batch",
            str(args.batch),
            "--steps",
            str(args.steps),
        ]
        cmd += ["--caption-len", str(args.caption_len), "--prefix", str(args.prefix)]
        cmd += (["--quick"] if args.quick else []) + (
            ["--threads", str(args.threads)] if args.threads else []
        )
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        results[variant] = json.loads(out.strip().splitlines()[-1])

    ours, cc = results["ours"], results["clipcap"]
    print(f"GPT-2 {'2-layer (quick)' if args.quick else '124M'}, batch {args.batch}, caption {args.caption_len} "
          f"tokens, prefix {args.prefix}, median of {args.steps} steps, torch threads {torch.get_num_threads()}\n")  # fmt: skip
    print("| variant | step time (s) | peak extra RSS (MB) | GPT-2 grad elements |")
    print("|---|---:|---:|---:|")
    for name, r in (("ClipCap-style (grads on, not optimized)", cc), ("ours (FrozenLM)", ours)):
        print(f"| {name} | {r['step_s']:.2f} | {r['peak_extra_mb']:.0f} | {r['gpt2_grad_elements']:,} |")
    print(
        f"\nspeed-up: {cc['step_s'] / ours['step_s']:.2f}x; peak extra memory: "
        f"{ours['peak_extra_mb']:.0f} MB vs {cc['peak_extra_mb']:.0f} MB "
        f"({cc['peak_extra_mb'] / max(ours['peak_extra_mb'], 1e-9):.2f}x less)"
    )
    print(
        f"raw step times: ClipCap-style {[round(t, 2) for t in cc['steps_s']]}, ours {[round(t, 2) for t in ours['steps_s']]}"
    )


if __name__ == "__main__":
    main()
