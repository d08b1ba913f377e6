"""One training loop for every trainable application, on `accelerate`.

The same code runs on one CPU, one GPU or many (``accelerate launch``): accelerate shards the
batches over processes, wraps the pipeline in DDP and applies autocast for bf16/fp16.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from mmgpt2.data.datasets import collate_dicts
from mmgpt2.errors import Mmgpt2Error
from mmgpt2.training.config import TrainConfig
from mmgpt2.training.state import (
    ResumeError,
    check_same_run,
    has_checkpoint,
    load_training_state,
    read_trainer_state,
    restore_interrupted_save,
    save_training_state,
)


class EpochShuffleSampler(Sampler[int]):
    """A permutation fixed by (seed, epoch): a resumed run sees the same order as an unbroken one."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        return iter(torch.randperm(self.size, generator=g).tolist())

    def __len__(self) -> int:
        return self.size


def linear_warmup(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warm-up to the peak, then linear decay to zero at `total` (ClipCap's schedule)."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def train(
    model: torch.nn.Module,
    dataset: Dataset,
    config: TrainConfig,
    collate_fn: Callable[[list], dict[str, Any]] = collate_dicts,
) -> Path:
    """Train the pipeline's trainable parts; returns the folder of the final model.

    Build the model after seeding (``accelerate.utils.set_seed(config.seed)``) for runs that repeat
    to the bit; `train` seeds everything it draws itself. With ``config.resume`` it continues from
    ``out_dir/checkpoint`` and ends with the weights an unbroken run would have, or refuses a
    checkpoint made with another seed, batch size, dataset size or process count (`ResumeError`).

    Example:
        >>> set_seed(7)  # doctest: +SKIP
        >>> cap = PrefixCaptioner.build("embedded:shapes-clip", "embedded:shapes-gpt2", mapper="mlp")  # doctest: +SKIP
        >>> train(cap, FeatureCaptionDataset(records, store), TrainConfig(out_dir="runs/x", epochs=1, seed=7))  # doctest: +SKIP
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import set_seed

    if len(dataset) == 0:
        raise Mmgpt2Error("no training examples: the dataset is empty")
    out = Path(config.out_dir)
    ckpt_dir = out / "checkpoint"
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        AcceleratorState._reset_state()  # a second run in one process may change mixed precision
    accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=not torch.cuda.is_available())
    set_seed(config.seed)

    sampler = EpochShuffleSampler(len(dataset), config.seed)
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        collate_fn=collate_fn,
        num_workers=config.num_workers,
        drop_last=False,
    )
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise Mmgpt2Error(f"{type(model).__name__} has no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(loader) / accelerator.num_processes)
    total = config.max_steps if config.max_steps is not None else steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup(config.warmup_steps, total))
    run = {
        "seed": config.seed,
        "batch_size": config.batch_size,
        "dataset_size": len(dataset),
        "num_processes": accelerator.num_processes,
    }
    if callable(getattr(dataset, "fingerprint", None)):  # same size, other rows: still another run
        run["dataset_fingerprint"] = dataset.fingerprint()

    step, epoch, skip = 0, 0, 0
    if config.resume:
        if accelerator.is_main_process and restore_interrupted_save(ckpt_dir):
            accelerator.print(f"restored {ckpt_dir} from the backup a kill during its last save left")
        accelerator.wait_for_everyone()
        if has_checkpoint(ckpt_dir):
            step, epoch, skip = _resume(ckpt_dir, model, optimizer, scheduler, run, steps_per_epoch, total)
            accelerator.print(f"resumed from {ckpt_dir} at step {step}")
        else:
            accelerator.print(f"no checkpoint under {ckpt_dir}; starting from scratch")

    # The scheduler stays unprepared: accelerate would step it once per process per step.
    wrapped, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    wrapped.train()
    bar = tqdm(
        total=total,
        initial=step,
        desc="training",
        unit="step",
        disable=not (config.progress and accelerator.is_main_process),
    )
    while step < total:
        loader.set_epoch(epoch)  # accelerate passes it on to its copy of our sampler
        done_in_epoch = skip
        # Skipping by iterating (not accelerate.skip_first_batches) keeps the epoch's permutation;
        # `_resume` guarantees skip < steps_per_epoch, so every epoch yields a batch.
        batches = itertools.islice(loader, skip, None)
        skip = 0
        for batch in batches:
            with accelerator.autocast():
                loss = wrapped(batch)
            accelerator.backward(loss)
            if config.grad_clip:
                accelerator.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            done_in_epoch += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", epoch=epoch)
            last_in_epoch = done_in_epoch >= steps_per_epoch
            if step % config.save_every == 0 or step >= total:
                where = (epoch + 1, 0) if last_in_epoch else (epoch, done_in_epoch)
                _checkpoint(accelerator, model, optimizer, scheduler, ckpt_dir, step, *where, run)
            if step >= total:
                break
        epoch += 1
    bar.close()
    final = out / "final"
    if accelerator.is_main_process:
        accelerator.unwrap_model(wrapped).save_pretrained(final)
    accelerator.wait_for_everyone()
    return final


def _resume(
    folder: Path, model, optimizer, scheduler, run: dict[str, Any], steps_per_epoch: int, total: int
) -> tuple[int, int, int]:
    """Load the checkpoint; (step, epoch, batches to skip in that epoch), or a `ResumeError`."""
    state = read_trainer_state(folder)
    check_same_run(folder, state, run)
    step, epoch, skip = state["step"], state["epoch"], state["batches_in_epoch"]
    if skip >= steps_per_epoch:  # only a checkpoint from before runs were recorded can get here
        raise ResumeError(
            f"{folder}: cannot continue this run: it stopped {skip} batches into an epoch, but an epoch "
            f"now has {steps_per_epoch}; resume with the same batch size and training data"
        )
    if step > total:
        raise ResumeError(
            f"{folder}: the checkpoint is at step {step}, past this run's last step {total}; "
            "raise the step or epoch count, or train into a new output folder"
        )
    load_training_state(folder, model, optimizer, scheduler)
    return step, epoch, skip


def _checkpoint(
    accelerator,
    model,
    optimizer,
    scheduler,
    folder: Path,
    step: int,
    epoch: int,
    batches_in_epoch: int,
    run: dict[str, Any],
) -> None:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_training_state(folder, model, optimizer, scheduler, step, epoch, batches_in_epoch, run)
    accelerator.wait_for_everyone()
