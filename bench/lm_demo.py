#!/usr/bin/env python
"""`qdora-lab demo --model smollm2` with its defaults, timed: writes the README/chapter table.

    python bench/lm_demo.py [--out bench/results/lm_demo.md] [extra run_lm_demo keyword=value ...]

Runs `recipes.run_lm_demo` into a temporary folder and writes its table, the greedy continuations, the checks, the
wall time and how loaded the machine was (the 5-minute budget holds for a quiet 2-core CPU), plus the loss curves as
`lm_demo_loss.png` beside the table.
"""
import argparse, ast, os, resource, shutil, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from _lm_common import machine

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default='bench/results/lm_demo.md'); ap.add_argument('kw', nargs='*')
    a = ap.parse_args()
    kw = {k: ast.literal_eval(v) for k, v in (x.split('=', 1) for x in a.kw)}
    from tabulate import tabulate
    from qdora_lab import recipes
    recipes.smollm2_dir()                                   # the one-time conversion is not part of the demo's time
    load0 = os.getloadavg()[0]
    cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    c0 = cpu()
    with tempfile.TemporaryDirectory() as d:
        res = recipes.run_lm_demo(Path(d)/'demo', **kw)
        out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(d)/'demo'/'loss.png', out.with_name(out.stem + '_loss.png'))
    cpu_s = cpu() - c0
    gens = '\n'.join(f"| {k} | {res['prompt']}{v!r} |".replace('\n', ' ') for k, v in res['generations'].items())
    text = (f"# `qdora-lab demo --model smollm2`{' ' + ' '.join(a.kw) if a.kw else ''}\n\n"
            f"{res['steps']} distillation steps per width (KL to fp32{', + ' + str(res['ce_weight']) + ' x next-token loss' if res['ce_weight'] else ''}), "
            f"batch {res['batch_size']}x{res['seq_len']} tokens, r={res['r']}, {res['heldout_windows']} held-out windows of "
            f"{res['seq_len']} tokens. Wall time **{res['seconds']:.0f} s** on {res['device']}; {machine()} at the end, "
            f"{load0:.1f} at the start. CPU time {cpu_s:.0f} s (user + system, both threads). Wall seconds by phase: "
            + ', '.join(f'{k} {v:.0f}' for k, v in res['phase_seconds'].items()) + ".\n\n"
            + tabulate(res['table'], headers='keys', tablefmt='github', floatfmt='.2f')
            + f"\n\n| model | greedy continuation |\n|---|---|\n{gens}\n\nchecks: "
            + ', '.join(f'{k}: {v:.3g}' if isinstance(v, float) else f'{k}: {v}' for k, v in res['checks'].items()) + '\n')
    out.write_text(text); print(text)

if __name__ == '__main__': main()
