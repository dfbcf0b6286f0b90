#!/usr/bin/env python
"""One training step of SmolLM2-135M-Instruct on the CPU: our QDoRA on QLinear beside peft's DoRA on hqq's HQQLinear.

    python bench/lm_step_time.py [--bits 3] [--r 8] [--batch 4] [--seq-len 64] [--reps 5] [--out bench/results/lm_step_time.md]

All four models are built in one process from the same fp32 SmolLM2, every linear layer of the blocks adapted (210),
rank r, alpha 2r, the head kept in fp32: ours (`quantize_model` + `add_dora`), peft DoRA on hqq 0.2.8's HQQLinear
(PYTORCH backend, the path a user of both libraries takes), and as references peft LoRA and peft DoRA on the fp32 model.
Weights are quantized round-to-nearest on both sides (a step's cost does not depend on how the zeros were found, and the
optimizer would take minutes). A step is AdamW on the adapters after forward + backward of the causal-LM loss on one
fixed batch; one warm-up step each, then `--reps` rounds with the models interleaved; medians. On a shared machine the
absolute seconds are noise: read the ratios.
"""
import argparse, copy, sys, time, statistics
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).parent))
from _lm_common import hqq_quantize, linear_names, machine

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--bits', type=int, default=3); ap.add_argument('--r', type=int, default=8)
    ap.add_argument('--batch', type=int, default=4); ap.add_argument('--seq-len', type=int, default=64)
    ap.add_argument('--reps', type=int, default=5); ap.add_argument('--out', default='bench/results/lm_step_time.md')
    ap.add_argument('--models', default='ours,peft DoRA on hqq,peft LoRA on fp32,peft DoRA on fp32')
    a = ap.parse_args()
    from qdora_lab import recipes
    from qdora_lab.core import quiet_imports
    from qdora_lab.linear import QuantConfig
    from qdora_lab.model import quantize_model, add_dora, DoRAConfig
    with quiet_imports(): from peft import LoraConfig, get_peft_model
    torch.manual_seed(0)
    fp, tok, _ = recipes.load_model(recipes.smollm2_dir())
    names = linear_names(fp)
    batch = recipes.token_windows(tok, recipes.lm_text(), a.seq_len, 16)[0][:a.batch]
    def peft(m, dora): 
        with quiet_imports(): return get_peft_model(m, LoraConfig(r=a.r, lora_alpha=2 * a.r, use_dora=dora, target_modules=names))
    def ours():
        m = copy.deepcopy(fp)
        quantize_model(m, QuantConfig(nbits=a.bits, optimize=False), skip=['lm_head'])
        return add_dora(m, DoRAConfig(r=a.r, alpha=2 * a.r))
    build = {
        'ours': ours,
        'peft DoRA on hqq': lambda: peft(hqq_quantize(copy.deepcopy(fp), a.bits, optimize=False), True),
        'peft LoRA on fp32': lambda: peft(copy.deepcopy(fp), False),
        'peft DoRA on fp32': lambda: peft(copy.deepcopy(fp), True),
    }
    models = {}
    for k in a.models.split(','):
        t = time.perf_counter(); m = build[k](); m.train()
        opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4)
        models[k] = (m, opt); print(f"built {k} in {time.perf_counter() - t:.0f} s", flush=True)
    def step(m, opt):
        opt.zero_grad(set_to_none=True)
        loss = m(input_ids=batch, labels=batch).loss
        loss.backward(); opt.step()
        return loss.item()
    times, losses = {k: [] for k in models}, {k: [] for k in models}
    for k, (m, opt) in models.items(): losses[k].append(step(m, opt))       # warm-up
    for i in range(a.reps):
        for k, (m, opt) in models.items():
            t = time.perf_counter(); losses[k].append(step(m, opt)); times[k].append(time.perf_counter() - t)
        print(f"round {i + 1}: " + ', '.join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
    from tabulate import tabulate
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med.get('ours')
    rows = [{'model': k, 'trainable params': sum(p.numel() for p in models[k][0].parameters() if p.requires_grad),
             's / step (median)': med[k], 'min': min(times[k]), 'max': max(times[k]),
             'ours / this': statistics.median(o / t for o, t in zip(times['ours'], times[k])) if base else None,
             'first loss': losses[k][0]} for k in models]
    text = (f"# SmolLM2-135M-Instruct: one training step on the CPU ({a.bits}-bit where quantized, r={a.r}, batch "
            f"{a.batch}x{a.seq_len} tokens, 210 adapted layers)\n\n{machine()} at the end; {a.reps} interleaved rounds after a "
            f"warm-up, medians; 'ours / this' is the median over rounds of the ratio of the two steps timed in that round "
            f"(below 1: ours is faster).\n\n"
            + tabulate(rows, headers='keys', tablefmt='github', floatfmt='.3f') + '\n')
    Path(a.out).parent.mkdir(parents=True, exist_ok=True); Path(a.out).write_text(text); print(text)

if __name__ == '__main__': main()
