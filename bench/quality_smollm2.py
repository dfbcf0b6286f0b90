#!/usr/bin/env python
"""bench/quality_smollm2.py: held-out perplexity of SmolLM2-135M-Instruct at low bits, ours beside peft DoRA on hqq.

    python bench/quality_smollm2.py [--steps 12] [--out bench/results/quality_smollm2]   # writes .md and .json

For uniform 4/3/2 bits (g64, axis 1, `QuantConfig`'s defaults) and mixed 2.5/3.0 bits per weight (`MixedBitConfig`, g192 (divides 576 and 1536),
calibrated on 32 training windows, one budget over the 210 linear layers of the blocks), with the tied head
kept in fp32:
  * PTQ (quantized, no adapter); step 0 of QDoRA with the residual initialisation (calibrated on the same windows);
    after N steps of QDoRA distillation (KL on the logits, the demo's recipe: r=8, alpha=16, batch 4x64, AdamW 3e-3)
    from the residual init and from B = 0;
  * the anchor, for the uniform rows: peft DoRA (`LoraConfig(use_dora=True)`, same r, alpha, targets) on hqq 0.2.8's
    model path (`HQQLinear(linear, BaseQuantizeConfig(nbits, 64))`, its optimizer on), same steps, batch, learning
    rate, windows and seed.
16 held-out windows of 64 tokens (`recipes.token_windows(tok, recipes.lm_text(), 64, 16)`), never trained on.
"""
import argparse, copy, json, sys, time
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT/'bench'))
from _lm_common import hqq_quantize, linear_names, machine


def hqq_bpw(model)->float:
    "Bits per weight hqq's HQQLinear layers of `model` store: packed codes plus their meta tensors (scale, zero)."
    from hqq.core.quantize import HQQLinear
    bits = weights = 0
    for m in model.modules():
        if isinstance(m, HQQLinear):
            held = [m.W_q] + [v for v in m.meta.values() if torch.is_tensor(v) and v.numel() > 1]
            bits += sum(t.numel() * t.element_size() * 8 for t in held); weights += m.in_features * m.out_features
    return bits / weights


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--steps', type=int, default=12)
    p.add_argument('--r', type=int, default=8)
    p.add_argument('--lr', type=float, default=3e-3)
    p.add_argument('--batch-size', type=int, default=4)
    p.add_argument('--out', default=str(ROOT/'bench'/'results'/'quality_smollm2'))
    p.add_argument('--anchor-bits', default='4,3,2', help='uniform widths that also run the peft-on-hqq anchor')
    a = p.parse_args(argv)
    out = Path(a.out); cache = out.with_suffix('.json')   # rows done so far (an interrupted run resumes)
    anchor = {int(b) for b in a.anchor_bits.split(',') if b}
    from qdora_lab import recipes
    from qdora_lab.core import quiet_imports
    from qdora_lab.model import QuantConfig, DoRAConfig, MixedBitConfig, quantize_model, add_dora, stored_bpw
    with quiet_imports(): import peft
    torch.manual_seed(0)
    fp, tok, _ = recipes.load_model(recipes.smollm2_dir())
    train, held = recipes.token_windows(tok, recipes.lm_text(), 64, 16)
    calib = recipes.window_calibration(train)
    ppl = lambda m: recipes.window_perplexity(m, held)
    def distill(m):
        torch.manual_seed(0)
        recipes.lm_distill(m, fp, train, steps=a.steps, batch_size=a.batch_size, lr=a.lr, seed=0)
        return ppl(m)
    dcfg = lambda init: DoRAConfig(r=a.r, alpha=2 * a.r, init=init)
    done = {r['config']: r for r in json.loads(cache.read_text())} if cache.is_file() else {}
    rows, t0 = [done.get('fp32') or {'config': 'fp32', 'PTQ': ppl(fp)}], time.time()
    for name, bits, mixed in [('uniform 4-bit', 4, False), ('uniform 3-bit', 3, False), ('uniform 2-bit', 2, False),
                              ('mixed 3.0 bpw', 3.0, True), ('mixed 2.5 bpw', 2.5, True)]:
        if name in done: rows.append(done[name]); continue
        row = {'config': name}
        qc = MixedBitConfig(target_bpw=bits, group_size=192) if mixed else QuantConfig(nbits=bits, group_size=64)
        q = copy.deepcopy(fp); quantize_model(q, qc, skip=['lm_head'], calibration=calib)
        row['stored bpw'] = stored_bpw(q)
        row['PTQ'] = ppl(q)
        res = add_dora(copy.deepcopy(q), dcfg('residual'), reference=fp, calibration=calib)
        row['step 0 (residual)'] = ppl(res)
        row[f'QDoRA {a.steps} steps (residual)'] = distill(res); del res
        dflt = add_dora(q, dcfg('default'))
        row[f'QDoRA {a.steps} steps (B=0)'] = distill(dflt); del dflt
        if not mixed and bits in anchor:
            hq = hqq_quantize(copy.deepcopy(fp), bits)
            row['hqq stored bpw'] = hqq_bpw(hq)
            row['hqq PTQ'] = ppl(hq)
            with quiet_imports():
                pm = peft.get_peft_model(hq, peft.LoraConfig(r=a.r, lora_alpha=2 * a.r, use_dora=True, lora_dropout=0.0,
                                                             target_modules=linear_names(fp)))
            row[f'peft DoRA on hqq {a.steps} steps'] = distill(pm); del pm, hq
        rows.append(row)
        print(row, f"({time.time() - t0:.0f} s)", flush=True)
        cache.parent.mkdir(parents=True, exist_ok=True); cache.write_text(json.dumps(rows, indent=1))
    from tabulate import tabulate
    keys = list(dict.fromkeys(k for r in rows for k in r))
    md = (f"# Quality on SmolLM2-135M-Instruct: held-out perplexity at low bits\n\n"
          f"`python bench/quality_smollm2.py --steps {a.steps}` on this project's CPU ({machine()}), "
          f"{time.time() - t0:.0f} s in the last run (rows are cached in the .json and resumed). 16 held-out windows of 64 tokens; distillation from fp32 (KL on the logits), r={a.r}, "
          f"alpha={2 * a.r}, batch {a.batch_size}x64, AdamW lr {a.lr}; uniform: g64 axis 1 (`QuantConfig` defaults; hqq: "
          f"`BaseQuantizeConfig(nbits, 64)`); mixed: g192 (576 and 1536 take no 128), one budget over the model, calibrated on 32 training windows; "
          f"lm_head (tied to the embedding) kept in fp32 everywhere.\n\n"
          + tabulate([{k: r.get(k, '') for k in keys} for r in rows], headers='keys', tablefmt='github', floatfmt='.2f') + '\n')
    out.with_suffix('.md').write_text(md); cache.write_text(json.dumps(rows, indent=1))
    print(md)


if __name__ == '__main__': main()
