"""Time qdora_lab.optimize.optimize_weights_proximal against hqq 0.2.8's solver on one 4096x4096 weight.

Run: `python bench/optimize_speed.py` (writes bench/results/optimize_speed.md). 4 bits, groups of 64 along axis 1,
weights ~ N(0, 0.02^2), torch.set_num_threads(2), median of N_RUNS runs each, interleaved so that load from other
processes hits both sides alike. Not a test: nothing is asserted on times; equality of the results is checked.
"""
import platform, statistics, sys, time
from pathlib import Path
import torch
from tabulate import tabulate
from hqq.core.optimize import optimize_weights_proximal as hqq_opt
from qdora_lab.optimize import optimize_weights_proximal

N_RUNS, SHAPE, NBITS, G, AXIS = 5, (4096, 4096), 4, 64, 1

def hqq_init(W, nbits, axis):
    "Inverse scale, zero and min_max exactly as hqq's Quantizer.quantize computes them."
    mn, mx = W.min(axis, keepdim=True)[0], W.max(axis, keepdim=True)[0]
    qmax = round(2**nbits - 1); den = mx - mn
    s = torch.where(den.abs() <= 1e-4, torch.full_like(den, 1.0), qmax / den).clamp(max=2e4)
    return s, -mn * s, [0, qmax]

def mean_abs_err(W, s, z, mm): return (W - ((W * s + z).round().clamp(*mm) - z) / s).abs().mean().item()

def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    W = (torch.randn(SHAPE) * 0.02).reshape(-1, G)
    s, z, mm = hqq_init(W, NBITS, AXIS)
    runs = {'hqq 0.2.8': lambda: hqq_opt(W, s, z, mm, axis=AXIS),
            'ours (hqq_compat=True)': lambda: optimize_weights_proximal(W, s, z, mm, AXIS, hqq_compat=True),
            'ours (default)': lambda: optimize_weights_proximal(W, s, z, mm, AXIS)}
    times, outs = {k: [] for k in runs}, {}
    for i in range(N_RUNS):
        for k, f in runs.items():
            t0 = time.perf_counter(); outs[k] = f(); times[k].append(time.perf_counter() - t0)
            print(f'run {i} {k}: {times[k][-1]:.3f} s', flush=True)
    ref, cmp = outs['hqq 0.2.8'], outs['ours (hqq_compat=True)']
    equal = all(torch.equal(a, b) for a, b in zip(ref, cmp))
    t_ref = statistics.median(times['hqq 0.2.8'])
    rows = [['RTN (no optimizer)', '-', '-', '-', f'{mean_abs_err(W, s, z, mm):.6e}']]
    for k in runs:
        med = statistics.median(times[k])
        rows.append([k, f'{med:.3f}', f"{min(times[k]):.3f}-{max(times[k]):.3f}", f'{t_ref / med:.2f}x',
                     f'{mean_abs_err(W, outs[k][1], outs[k][2], mm):.6e}'])
    table = tabulate(rows, headers=['solver', 'median s', 'range s', 'speedup vs hqq', 'mean |W - W_r|'],
                     tablefmt='github')
    head = (f'# optimize_weights_proximal: speed vs hqq 0.2.8\n\n'
            f'Weight {SHAPE[0]}x{SHAPE[1]} ~ N(0, 0.02^2), {NBITS}-bit, group {G}, axis {AXIS}; '
            f'torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability '
            f'{torch.backends.cpu.get_cpu_capability()} ({platform.processor() or platform.machine()}); '
            f'median of {N_RUNS} interleaved runs.\n\n'
            f'ours (hqq_compat=True) equals hqq bit-exactly (torch.equal on W_q, scale, zero): **{equal}**\n\n')
    note = ('\n\nCaveat: measured on a 2-core machine shared with other jobs; absolute times are noisy and the '
            'ranges show the spread. Re-run `python bench/optimize_speed.py` on a quiet machine for clean numbers.\n')
    md = head + table + note
    print(md)
    out = Path(__file__).resolve().parent / 'results' / 'optimize_speed.md'
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md)
    if not equal: sys.exit('hqq_compat result differs from hqq')

if __name__ == '__main__': main()
