#!/usr/bin/env python
"""SmolLM2-135M-Instruct under transformers.Trainer: QDoRA on the 3-bit model, activation checkpointing on.

    python bench/lm_trainer.py [--steps 3] [--batch 2] [--out bench/results/lm_trainer.md]

Round-to-nearest 3-bit weights (quick to build), rank 8 on all 210 linear layers of the blocks, `recipes.trainer_fit`
(Trainer, AdamW, activation checkpointing), then held-out perplexity on 16 windows before and after and the wall time
per step (noisy on a shared machine).
"""
import argparse, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from _lm_common import machine

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--steps', type=int, default=3); ap.add_argument('--batch', type=int, default=2)
    ap.add_argument('--lr', type=float, default=3e-3); ap.add_argument('--out', default='bench/results/lm_trainer.md')
    a = ap.parse_args()
    from qdora_lab import recipes
    from qdora_lab.linear import QuantConfig
    from qdora_lab.model import quantize_model, add_dora, DoRAConfig
    fp, tok, _ = recipes.load_model(recipes.smollm2_dir())
    train_w, held_w = recipes.token_windows(tok, recipes.lm_text(), 64, 16)
    quantize_model(fp, QuantConfig(nbits=3, optimize=False), skip=['lm_head'])
    add_dora(fp, DoRAConfig(r=8, alpha=16))
    before = recipes.window_perplexity(fp, held_w)
    t = time.perf_counter()
    losses = recipes.trainer_fit(fp, train_w, steps=a.steps, batch_size=a.batch, lr=a.lr, gradient_checkpointing=True)
    dt = (time.perf_counter() - t) / a.steps
    after = recipes.window_perplexity(fp, held_w)
    text = (f"# SmolLM2-135M-Instruct, 3-bit (round to nearest), QDoRA r=8 under transformers.Trainer with activation "
            f"checkpointing\n\n{machine()} at the end.\n\n| steps | batch | losses | held-out ppl before | after | s / step |\n"
            f"|---|---|---|---|---|---|\n| {a.steps} | {a.batch}x64 | {', '.join(f'{l:.3f}' for l in losses)} | {before:.1f} | "
            f"{after:.1f} | {dt:.1f} |\n")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True); Path(a.out).write_text(text); print(text)

if __name__ == '__main__': main()
