"""Decoding throughput: mmgpt2's cached batched decoding vs ClipCap-style decoding vs transformers' generate.

Setup: the GPT-2 124M architecture (`GPT2Config()`, random weights, seed 0), a random prefix of K=10
embeddings per image, no prompt, exactly N new tokens per image (default 20). Random weights would
stop at EOS at arbitrary points, so every method is forced to run all N steps: ours and transformers
get ``min_new_tokens=N`` (EOS logit set to -inf), the ClipCap-style loops get the same EOS mask.

ClipCap-style (rmokady/CLIP_prefix_caption, ``generate2`` / ``generate_beam``): one image at a time,
no KV cache, the whole (prefix + generated) sequence re-run through GPT-2 for every new token, with
its top-p filter (greedy) and its beam bookkeeping. Because it is strictly one image after another,
its images/s does not depend on the batch size, so it is timed once per mode on the first
``--clipcap-images`` images of the largest batch (default 3) and every batch row is compared with it.

Usage:
    python benchmarks/decode.py            # batches 1, 8, 32; greedy and beam-5
    python benchmarks/decode.py --quick    # a 2-layer GPT-2, batches 1 and 2, 3 tokens: smoke check
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch.nn import functional as F

from mmgpt2.lm import FrozenLM
from mmgpt2.lm.decoding import decode

# --------------------------------------------------------------------------- ClipCap-style baselines


@torch.no_grad()
def clipcap_greedy(gpt, embed: torch.Tensor, entry_length: int, eos: int, top_p: float = 0.8) -> list[int]:
    """ClipCap's `generate2` for one image: top-p filtered argmax, the full sequence re-run each step."""
    generated, tokens = embed, []
    for _ in range(entry_length):
        logits = gpt(inputs_embeds=generated).logits[:, -1, :]
        logits[:, eos] = -float("inf")  # forced length (see module docstring)
        sorted_logits, sorted_indices = torch.sort(logits, descending=True)
        cumulative_probs = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)
        sorted_indices_to_remove = cumulative_probs > top_p
        sorted_indices_to_remove[..., 1:] = sorted_indices_to_remove[..., :-1].clone()
        sorted_indices_to_remove[..., 0] = 0
        logits[:, sorted_indices[sorted_indices_to_remove]] = -float("inf")
        next_token = torch.argmax(logits, -1).unsqueeze(0)
        tokens.append(next_token.item())
        generated = torch.cat((generated, gpt.transformer.wte(next_token)), dim=1)
    return tokens


@torch.no_grad()
def clipcap_beam(gpt, embed: torch.Tensor, beam_size: int, entry_length: int, eos: int) -> list[int]:
    """ClipCap's `generate_beam` for one image (its length-averaged scores, no cache)."""
    tokens, scores = None, None
    seq_lengths = torch.ones(beam_size)
    is_stopped = torch.zeros(beam_size, dtype=torch.bool)
    generated = embed
    for _ in range(entry_length):
        logits = gpt(inputs_embeds=generated).logits[:, -1, :]
        logits[:, eos] = -float("inf")  # forced length (see module docstring)
        logits = logits.softmax(-1).log()
        if scores is None:
            scores, next_tokens = logits.topk(beam_size, -1)
            generated = generated.expand(beam_size, *generated.shape[1:])
            next_tokens, scores = next_tokens.permute(1, 0), scores.squeeze(0)
            tokens = next_tokens
        else:
            logits[is_stopped] = -float("inf")
            logits[is_stopped, 0] = 0
            scores_sum = scores[:, None] + logits
            seq_lengths[~is_stopped] += 1
            scores_sum_average = scores_sum / seq_lengths[:, None]
            scores_sum_average, next_tokens = scores_sum_average.view(-1).topk(beam_size, -1)
            next_tokens_source = next_tokens // scores_sum.shape[1]
            seq_lengths = seq_lengths[next_tokens_source]
            next_tokens = (next_tokens % scores_sum.shape[1]).unsqueeze(1)
            tokens = torch.cat((tokens[next_tokens_source], next_tokens), dim=1)
            generated = generated[next_tokens_source]
            scores = scores_sum_average * seq_lengths
            is_stopped = is_stopped[next_tokens_source]
        next_token_embed = gpt.transformer.wte(next_tokens.squeeze()).view(generated.shape[0], 1, -1)
        generated = torch.cat((generated, next_token_embed), dim=1)
        is_stopped = is_stopped + next_tokens.eq(eos).squeeze()
        if is_stopped.all():
            break
    order = (scores / seq_lengths).argsort(descending=True)
    return tokens[order[0]].tolist()


# --------------------------------------------------------------------------- runners


def timed(fn, label: str) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    elapsed = time.perf_counter() - start
    print(f"  {label}: {elapsed:.1f} s", file=sys.stderr, flush=True)  # progress: a full run takes minutes
    return elapsed, out


def run(args: argparse.Namespace) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2) if args.quick else GPT2Config()
    gpt = GPT2LMHeadModel(cfg).eval()
    lm = FrozenLM(gpt, None, spec="random:gpt2")
    eos, n_new, k = lm.eos_token_id, args.new_tokens, args.prefix
    ours_kw = dict(max_new_tokens=n_new, min_new_tokens=n_new)
    hf_kw = dict(
        max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False, eos_token_id=eos, pad_token_id=eos
    )

    print(
        f"torch threads: {torch.get_num_threads()}; model: GPT-2 {'2-layer (quick)' if args.quick else '124M'}; "
    )
    print(f"prefix K={k}, {n_new} new tokens forced; beam={args.beams}\n")
    with torch.no_grad():  # warm-up: first calls pay one-off allocation costs
        wb = lm.build_inputs(torch.randn(2, k, lm.hidden_size), pad_left=True)
        wb.pop("labels")
        decode(lm, wb, max_new_tokens=2)
        clipcap_greedy(gpt, wb["inputs_embeds"][:1], 2, eos)

    # ClipCap-style decoding handles one image after another, so its images/s does not depend on the batch
    # size: time it once per mode on the first images of the largest batch and compare every row with that.
    torch.manual_seed(max(args.batches))
    big = lm.build_inputs(torch.randn(max(args.batches), k, lm.hidden_size), pad_left=True)
    n_cc = min(args.clipcap_images, max(args.batches))
    modes = (("greedy", 1), (f"beam-{args.beams}", args.beams))
    clipcap, clipcap_greedy_out = {}, None
    with torch.no_grad():
        for mode, beams in modes:
            embeds = big["inputs_embeds"][:n_cc]
            if beams == 1:
                t_cc, clipcap_greedy_out = timed(
                    lambda: [clipcap_greedy(gpt, e[None], n_new, eos) for e in embeds],  # noqa: B023
                    f"ClipCap-style greedy, {n_cc} images",
                )
            else:
                t_cc, _ = timed(
                    lambda: [clipcap_beam(gpt, e[None], beams, n_new, eos) for e in embeds],  # noqa: B023
                    f"ClipCap-style {mode}, {n_cc} images",
                )
            clipcap[mode] = n_cc / t_cc

    rows, checks = [], []
    for b in args.batches:
        torch.manual_seed(b)
        batch = (
            big
            if b == max(args.batches)
            else lm.build_inputs(torch.randn(b, k, lm.hidden_size), pad_left=True)
        )
        batch = {key: v for key, v in batch.items() if key != "labels"}
        for mode, beams in modes:
            with torch.no_grad():
                t_ours, ours = timed(
                    lambda: decode(lm, batch, num_beams=beams, **ours_kw),  # noqa: B023
                    f"ours {mode}, batch {b}",
                )
                t_hf, hf = timed(
                    lambda: lm.model.generate(  # noqa: B023
                        inputs_embeds=batch["inputs_embeds"],  # noqa: B023
                        attention_mask=batch["attention_mask"],  # noqa: B023
                        num_beams=beams,  # noqa: B023
                        **hf_kw,
                    ),
                    f"transformers {mode}, batch {b}",
                )
            rows.append((b, mode, {"ours": b / t_ours, "transformers": b / t_hf, "clipcap": clipcap[mode]}))
            if beams == 1:
                line = f"batch {b}: greedy ours == transformers: {ours == hf.tolist()}"
                if b == max(args.batches):
                    line += (
                        f"; ours == ClipCap-style on its {n_cc} images: {ours[:n_cc] == clipcap_greedy_out}"
                    )
                checks.append(line)

    print(
        f"ClipCap-style timed once per mode on {n_cc} images (one at a time, so batch size does not apply)\n"
    )
    print(
        "| batch | mode | ours img/s | transformers img/s | ClipCap-style img/s | ours / transformers | ours / ClipCap |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|")
    for b, mode, ips in rows:
        print(
            f"| {b} | {mode} | {ips['ours']:.2f} | {ips['transformers']:.2f} | {ips['clipcap']:.3f} | "
            f"{ips['ours'] / ips['transformers']:.2f}x | {ips['ours'] / ips['clipcap']:.1f}x |"
        )
    print()
    for line in checks:
        print("- " + line)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--new-tokens", type=int, default=20)
    p.add_argument("--prefix", type=int, default=10, help="prefix length K")
    p.add_argument("--beams", type=int, default=5)
    p.add_argument("--clipcap-images", type=int, default=3, help="images to time ClipCap-style decoding on")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument(
        "--quick", action="store_true", help="2-layer GPT-2, batches 1 and 2, 3 tokens, 1 ClipCap image"
    )
    args = p.parse_args()
    if args.quick:
        args.batches, args.new_tokens, args.clipcap_images = [1, 2], 3, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    run(args)


if __name__ == "__main__":
    main()
