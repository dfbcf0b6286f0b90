#!/usr/bin/env python
"""Held-out perplexity of SmolLM2-135M-Instruct quantized at the model level: our `QuantConfig` options against hqq 0.2.8's
model path, on the same windows. Chooses `QuantConfig`'s defaults (chapter 15_causal_lm shows the table).

    python bench/lm_quant_ppl.py [--bits 4,3] [--windows 64] [--out bench/results/lm_quant_ppl.md]

Every linear layer but the (tied) head is quantized, group size 64. hqq's path is `HQQLinear(linear,
BaseQuantizeConfig(nbits, 64), compute_dtype=float32, device='cpu')` (PYTORCH backend), exactly what a hqq user runs.
Rows are cached in a JSON file beside the table, so an interrupted run resumes; --fresh starts over. Times are the wall
clock of the quantization on whatever the machine was doing (noisy on a shared machine: compare ratios, not values).
"""
import argparse, copy, json, os, sys, time
from pathlib import Path
import torch
from torch import nn
sys.path.insert(0, str(Path(__file__).parent))
from _lm_common import hqq_quantize

def configs(bits):
    "(name, nbits, QuantConfig kwargs or 'hqq') for every row of the table."
    rows = []
    for nb in bits:
        rows.append((f'hqq 0.2.8 HQQLinear, BaseQuantizeConfig({nb}, 64)', nb, 'hqq'))
        for axis in (1, 0):
            for rz in (False, True):
                for mode, kw in (('intended', {'opt_params': {'hqq_compat': False}}), ('hqq_compat', {'opt_params': {'hqq_compat': True}}),
                                 ('intended, iters=40', {'opt_params': {'hqq_compat': False, 'iters': 40}}),
                                 ('round to nearest', {'optimize': False})):
                    if mode == 'intended, iters=40' and (axis != 1): continue
                    rows.append((f'ours {nb}-bit axis={axis} round_zero={rz} {mode}', nb,
                                 dict(nbits=nb, group_size=64, axis=axis, round_zero=rz, **kw)))
    return rows

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--bits', default='4,3'); ap.add_argument('--windows', type=int, default=64)
    ap.add_argument('--seq-len', type=int, default=64); ap.add_argument('--out', default='bench/results/lm_quant_ppl.md')
    ap.add_argument('--only', default=None, help='run only rows whose name contains one of these |-separated strings')
    ap.add_argument('--fresh', action='store_true')
    a = ap.parse_args()
    from qdora_lab import recipes
    from qdora_lab.model import quantize_model
    from qdora_lab.linear import QuantConfig
    out = Path(a.out); cache = out.with_suffix('.json')
    done = {} if a.fresh or not cache.is_file() else json.loads(cache.read_text())
    fp, tok, _ = recipes.load_model(recipes.smollm2_dir())
    held = recipes.token_windows(tok, recipes.lm_text(), a.seq_len, a.windows)[1]
    def save():
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(done, indent=1))
        write_table(done, out, a, torch.get_num_threads())
    if 'fp32' not in done:
        done['fp32'] = dict(bits='fp32', ppl=recipes.window_perplexity(fp, held), seconds=None); save()
    for name, nb, kw in configs([int(b) for b in a.bits.split(',')]):
        if name in done or (a.only and not any(o in name for o in a.only.split('|'))): continue
        m = copy.deepcopy(fp)
        t = time.perf_counter()
        with recipes.quiet_transformers():
            if kw == 'hqq': hqq_quantize(m, nb)
            else: quantize_model(m, QuantConfig(**kw), skip=['lm_head'])
        dt = time.perf_counter() - t
        done[name] = dict(bits=nb, ppl=recipes.window_perplexity(m, held), seconds=round(dt, 1))
        print(f"{name}: ppl {done[name]['ppl']:.2f}, quantized in {dt:.0f} s", flush=True)
        del m; save()

def write_table(done, out, a, threads):
    from tabulate import tabulate
    hqq = {v['bits']: v['ppl'] for k, v in done.items() if k.startswith('hqq')}
    order = lambda kv: (str(kv[1]['bits']) != 'fp32', -int(kv[1]['bits']) if kv[1]['bits'] != 'fp32' else 0, not kv[0].startswith('hqq'))
    rows = [{'config': k + (' **(default)**' if k.endswith('axis=1 round_zero=True hqq_compat') else ''), 'bits': v['bits'],
             'held-out ppl': v['ppl'], 'ppl / hqq': v['ppl'] / hqq[v['bits']] if v['bits'] in hqq else None,
             'quantize s': v['seconds']} for k, v in sorted(done.items(), key=order)]
    load = os.getloadavg()[0]
    text = (f"# SmolLM2-135M-Instruct: held-out perplexity after model-level quantization (g64, lm_head kept)\n\n"
            f"{a.windows} held-out windows of {a.seq_len} tokens (`recipes.token_windows(tok, recipes.lm_text(), {a.seq_len}, "
            f"{a.windows})`), torch {torch.__version__}, {threads} CPU threads, load average {load:.1f} at the last row. "
            f"Rows are cached and resumed, so they may come from different runs on a shared machine under different loads: "
            f"the quantize seconds are a rough indication only (`bench/results/quantize_speed.md` times ours against hqq "
            f"side by side). 'intended': our optimizer's own update (beta grows, the best "
            f"zeros kept); 'hqq_compat': hqq 0.2.8's loop exactly. The default `QuantConfig(nbits)` is axis=1, round_zero=True, "
            f"hqq_compat.\n\n"
            + tabulate(rows, headers='keys', tablefmt='github', floatfmt='.2f') + '\n')
    out.write_text(text)

if __name__ == '__main__': main()
