#!/usr/bin/env python
"""What a re-quantized merge keeps of the adapters: held-out perplexity of a QDoRA run, merged several ways.

    python bench/merge_quality.py --run RUN [--more] [--out bench/results/merge_quality.md]

RUN is a causal-LM run folder with adapters (`qdora-lab demo --model smollm2 --out RUN` writes one: SmolLM2-135M,
4-bit g64, r=8). Perplexity on 64-token windows of the last 200 bundled English sentences (`recipes.english_sentences`),
for: the run with its adapters; the base without them; `merge_model` (the library's merge: the merged weight
re-quantized with the HQQ optimizer); the same re-quantization started from the base layer's own grid (scales times
the DoRA row factor, same zeros), round-to-nearest and optimized (fake-quantized: dequantized into dense layers);
the library's calibrated merge, `merge_model(model, calibration=...)` (H = X^T X of each adapter's inputs over 32 x 64
tokens of the first 600 sentences; GPTQ per layer on the base's grid with each row rescaled, or on fresh min/max
group ranges, whichever keeps that layer's outputs better on the calibration inputs; packed QLinear layers), and
each of its two grids alone for every layer; with --more, the calibrated merge block by block (each transformer block
calibrated on the inputs of the model merged so far, GPTQ's order) and on 128 calibration windows; and the dense
merge (exact).
"""
import argparse, copy, sys, time
from pathlib import Path
import torch
from torch import nn
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from qdora_lab import recipes, quant
from qdora_lab.optimize import optimize_weights_proximal
from qdora_lab.cli import rebuild_run
from qdora_lab.dora import QDoRALinear
from qdora_lab.linear import QLinear
from qdora_lab.model import find_modules, replace_modules, merge_model
from qdora_lab.layer import input_grams


def adapters(m): return find_modules(m, lambda n, x: isinstance(x, QDoRALinear))

def dense(W, b):
    "A frozen nn.Linear holding W and b."
    lin = nn.Linear(W.shape[1], W.shape[0], bias=b is not None)
    with torch.no_grad():
        lin.weight.copy_(W)
        if b is not None: lin.bias.copy_(b)
    return lin.requires_grad_(False)

def grid_merge(m, optimize):
    "Each merged weight re-quantized from its base's grid (scale x row factor c, same zero) instead of min-max; fake-quantized."
    out = copy.deepcopy(m)
    def build(n, d):
        base = d.base
        s, z = base._scale_zero()                                   # hqq's grouped [N*K/g, 1] (axis=1)
        c = d.magnitude.detach().float() / d.weight_norm().float()
        inv, zero = 1 / (s.float() * c.repeat_interleave(d.in_features // base.group_size)[:, None]), z.float().clone()
        Wg, qmax = d.dense_weight().float().reshape(-1, base.group_size), 2**base.nbits - 1
        if optimize: q, inv, zero = optimize_weights_proximal(Wg, inv, zero, [0, qmax], 1)
        else: q = (Wg * inv + zero).round().clamp(0, qmax)
        return dense(((q - zero) / inv).reshape(d.out_features, d.in_features), base.bias)
    replace_modules(out, adapters(out), build)
    return out

def calibrated_variant(m, grams, own_grid):
    "Each merged weight re-quantized by GPTQ on one kind of grid only (the library picks per layer): packed QLinear layers."
    out = copy.deepcopy(m)
    def build(n, d):
        W, base = d.dense_weight(torch.float32), d.base
        grid = base._own_grid(W) if own_grid else None
        W_q, meta = quant.quantize_calibrated(W, grams[n], nbits=base.nbits, group_size=base.group_size,
                                              compute_dtype=base.compute_dtype, grid=grid)
        return QLinear(W_q, meta, base.bias)
    replace_modules(out, adapters(out), build)
    return out

def blockwise_merge(m, calibrate):
    "merge_model(calibration=...) one transformer block at a time, each on the inputs of the model merged so far (GPTQ's order)."
    out = copy.deepcopy(m)
    blocks = {}
    for n, _ in adapters(out): blocks.setdefault(n.split('.mlp')[0].split('.self_attn')[0], []).append(n)
    for names in blocks.values():
        grams = input_grams(out, calibrate, lambda n, x: n in names)
        mods = dict(out.named_modules())
        replace_modules(out, [(n, mods[n]) for n in names], lambda n, d: d.merge(hessian=grams[n]).requires_grad_(False))
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--run', required=True); ap.add_argument('--out', default=str(ROOT/'bench'/'results'/'merge_quality.md'))
    ap.add_argument('--more', action='store_true', help="also: block-by-block calibration order, and 128 calibration windows")
    a = ap.parse_args()
    t0 = time.time()
    torch.manual_seed(0)
    m, tok, kind, info = rebuild_run(a.run, 'cpu')
    if kind != 'causal' or not adapters(m): sys.exit(f"{a.run} is not a causal-LM run with adapters")
    if not all(isinstance(d.base, QLinear) and d.base.axis == 1 for _, d in adapters(m)):
        sys.exit(f"{a.run}: this script handles QLinear bases quantized along K (axis=1), as the demo's")
    m.eval()
    sents = recipes.english_sentences()
    held = ' '.join(sents[-200:])
    ppl = lambda model: recipes.perplexity(model, tok, held, 64)
    calib = tok(' '.join(sents[:600]), return_tensors='pt')['input_ids'][0]
    n = min(32, calib.numel() // 64); calib = calib[:n * 64].view(n, 64)
    rows = []
    def row(name, model): rows.append((name, ppl(model))); print(rows[-1], flush=True)
    row('with adapters (the run)', m)
    base = copy.deepcopy(m); replace_modules(base, adapters(base), lambda n, d: d.base); row('base, adapters dropped', base)
    row('merge_model (re-quantized, HQQ optimizer): the library', merge_model(copy.deepcopy(m)))
    row("re-quantized from the base's grid, round-to-nearest", grid_merge(m, False))
    row("re-quantized from the base's grid, HQQ optimizer", grid_merge(m, True))
    calibrate = lambda model: [model(input_ids=calib[i:i + 8]) for i in range(0, len(calib), 8)]
    t1 = time.time(); cm = merge_model(copy.deepcopy(m), calibration=calibrate); t_cal = time.time() - t1
    row(f'merge_model(calibration=...): the library, GPTQ ({n} x 64 tokens of the first 600 sentences)', cm)
    grams = input_grams(m, calibrate, lambda n_, x: isinstance(x, QDoRALinear))
    row("  GPTQ on the base's grid (each row rescaled) for every layer", calibrated_variant(m, grams, True))
    row('  GPTQ on fresh min/max ranges for every layer', calibrated_variant(m, grams, False))
    if a.more:
        row("  calibrated block by block, each block on the partly merged model's inputs", blockwise_merge(m, calibrate))
        ids = tok(' '.join(sents[:-200]), return_tensors='pt')['input_ids'][0]
        big = ids[:min(128, ids.numel() // 64) * 64].view(-1, 64)
        row(f'  calibrated on {len(big)} x 64 tokens (all but the held-out sentences)',
            merge_model(copy.deepcopy(m), calibration=lambda model: [model(input_ids=big[i:i + 8]) for i in range(0, len(big), 8)]))
    row('merge_model(dense=True): exact', merge_model(copy.deepcopy(m), dense=True))
    q = info.get('quant', {})
    md = (f"# What a merge keeps of the adapters\n\n`python bench/merge_quality.py --run RUN{' --more' if a.more else ''}`, RUN = `qdora-lab demo --model smollm2` "
          f"({q.get('nbits')}-bit g{q.get('group_size')}, adapters r={info.get('dora', {}).get('r')}); perplexity on 64-token windows "
          f"of the last 200 bundled English sentences; on the CPU (this project's 2-core x86 machine, no GPU), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{time.time() - t0:.0f} s in all, of which the calibrated merge_model {t_cal:.0f} s.\n\n| model | perplexity |\n|---|---|\n" + ''.join(f"| {k} | {v:.2f} |\n" for k, v in rows))
    Path(a.out).write_text(md); print(md)

if __name__ == '__main__': main()
