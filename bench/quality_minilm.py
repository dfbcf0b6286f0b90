"""bench/quality_minilm.py: quality at low bits on all-MiniLM-L6-v2, ours beside peft DoRA on hqq, in one run.

    python bench/quality_minilm.py [--steps 100] [--quick]     # writes bench/results/quality_minilm.{md,json}

Mean cosine similarity to the fp32 model's embeddings of 128 held-out sentences (Python's help text), for:
  * uniform 4/3/2 bits (g64, axis 0 as the issue's anchor; --axis 1 for the other layout) and mixed 2.5/3.0 bits per weight (calibrated,
    one budget over the model, every bit of metadata counted);
  * PTQ (quantized, no adapter); QDoRA at step 0 with the residual initialisation (calibrated); after N steps of
    QDoRA distillation from the default init (B = 0) and from the residual init;
  * the anchor: peft DoRA (`LoraConfig(use_dora=True)`) on hqq 0.2.8's `HQQLinear` (same bits, group, axis), same
    steps, batch, learning rate, rank and alpha, same training sentences and seed.
Training: r=16, alpha=32, batch 32, AdamW lr 2e-3, cosine-distance distillation of mean-pooled embeddings.
"""
import argparse, copy, json, sys, time
from pathlib import Path
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from qdora_lab.core import quiet_imports
from qdora_lab import recipes
from qdora_lab.model import QuantConfig, DoRAConfig, MixedBitConfig, quantize_model, add_dora, stored_bpw
from qdora_lab.mixedbit import MixedBitLinear


def peft_on_hqq(fp, nbits, axis, r, alpha):
    "peft DoRA on hqq's HQQLinear for every linear layer of a copy of `fp`."
    with quiet_imports():
        import peft
        from hqq.core.quantize import HQQLinear, BaseQuantizeConfig
    m = copy.deepcopy(fp)
    names = [n for n, mod in m.named_modules() if type(mod) is nn.Linear]
    for n in names:
        parent, _, child = n.rpartition('.')
        lin = m.get_submodule(n)
        h = HQQLinear(lin, BaseQuantizeConfig(nbits=nbits, group_size=64, axis=axis), compute_dtype=torch.float32,
                      device='cpu', del_orig=False)
        setattr(m.get_submodule(parent) if parent else m, child, h)
    cfg = peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=[n.rsplit('.', 1)[-1] for n in names], use_dora=True,
                          lora_dropout=0.0)
    return m, lambda: peft.get_peft_model(m, cfg)   # the quantized model, and a function adding peft's DoRA to it (in place)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--steps', type=int, default=100)
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--lr', type=float, default=2e-3)
    p.add_argument('--r', type=int, default=16)
    p.add_argument('--n-train', type=int, default=512)
    p.add_argument('--axis', type=int, default=0, help='quantization axis of the uniform rows (the anchor: 0)')
    p.add_argument('--quick', action='store_true', help='3 steps, 2 bits only (a dry run)')
    p.add_argument('--out', default=str(ROOT/'bench'/'results'/'quality_minilm'))
    a = p.parse_args(argv)
    if a.quick: a.steps = 3
    torch.manual_seed(0); torch.set_num_threads(max(1, torch.get_num_threads()))
    fp, tok, _ = recipes.load_model(recipes.minilm_dir())
    train, held = recipes.split_sentences(recipes.english_sentences(), 128, 0)
    train = train[:a.n_train]
    ref_h, ref_t = recipes.embed_all(fp, tok, held), recipes.embed_all(fp, tok, train)
    cos = lambda m: recipes.mean_cosine(recipes.embed_all(m, tok, held), ref_h)
    calib = lambda m: recipes.embed_all(m, tok, train[:256])
    def train_it(m):
        torch.manual_seed(0)
        return recipes.distill(m, tok, train, ref_t, steps=a.steps, batch_size=a.batch_size, lr=a.lr, seed=0)
    out = Path(a.out); cache = out.with_suffix('.json')   # rows done so far: an interrupted run resumes
    done = {r['config']: r for r in json.loads(cache.read_text())} if cache.is_file() and not a.quick else {}
    configs = [('2-bit', 2, a.axis)] if a.quick else [(f'{b}-bit', b, a.axis) for b in (4, 3, 2)] + \
              [('mixed 2.5 bpw', 2.5, None), ('mixed 3.0 bpw', 3.0, None)]
    rows, t0 = [], time.time()
    for name, bits, axis in configs:
        row = {'config': name if axis is None else f"{name} axis={axis}"}
        if row['config'] in done: rows.append(done[row['config']]); continue
        qc = MixedBitConfig(target_bpw=bits, group_size=128) if axis is None else QuantConfig(nbits=bits, group_size=64, axis=axis)
        q = copy.deepcopy(fp); quantize_model(q, qc, calibration=calib if axis is None else None)
        row['stored bpw'] = stored_bpw(q)
        row['PTQ'] = cos(q)
        res = add_dora(copy.deepcopy(q), DoRAConfig(r=a.r, alpha=2 * a.r, init='residual'), reference=fp, calibration=calib)
        row['step 0 (residual)'] = cos(res)
        dflt = add_dora(copy.deepcopy(q), DoRAConfig(r=a.r, alpha=2 * a.r))
        train_it(dflt); row[f'QDoRA {a.steps} steps (B=0)'] = cos(dflt)
        train_it(res); row[f'QDoRA {a.steps} steps (residual)'] = cos(res)
        if axis is not None:
            hq, wrap = peft_on_hqq(fp, bits, axis, a.r, 2 * a.r)
            row['hqq PTQ'] = cos(hq)
            pm = wrap(); train_it(pm); row[f'peft DoRA on hqq {a.steps} steps'] = cos(pm)
        rows.append(row)
        print(row, f"({time.time() - t0:.0f} s)", flush=True)
        if not a.quick: cache.parent.mkdir(parents=True, exist_ok=True); cache.write_text(json.dumps(rows, indent=1))
    from tabulate import tabulate
    keys = list(dict.fromkeys(k for r in rows for k in r))
    md = (f"# Quality on all-MiniLM-L6-v2: mean cosine to fp32 on 128 held-out sentences\n\n"
          f"`python bench/quality_minilm.py --steps {a.steps}` on this project's CPU ({torch.get_num_threads()} threads), "
          f"{time.time() - t0:.0f} s in the last run (rows are cached in the .json and resumed). g64; r={a.r}, alpha={2 * a.r}, batch {a.batch_size}, AdamW lr {a.lr}, "
          f"{len(train)} training sentences; mixed: one budget over the model (g128, fp16 scales and zeros), calibrated on 256 training sentences. 'stored bpw': the bits the quantized layers hold per weight, all metadata counted (uniform rows keep fp32 scales and zeros, as QLinear does in an fp32 model).\n\n"
          + tabulate([{k: r.get(k, '') for k in keys} for r in rows], headers='keys', tablefmt='github', floatfmt='.4f') + '\n')
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix('.md').write_text(md); out.with_suffix('.json').write_text(json.dumps(rows, indent=1))
    print(md)


if __name__ == '__main__': main()
