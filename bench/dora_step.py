"""bench/dora_step.py: the QDoRA training step beside the anchors, side by side in one process.

    python bench/dora_step.py cpu   [--reps 5]    # writes bench/results/dora_step_cpu.md (+ .json)
    python bench/dora_step.py gpu   [--reps 5]    # writes OUT/dora_step_gpu.md (+ .json); run by bench/gpu_check.sh
    python bench/dora_step.py gpu --dry-run       # the GPU script's shapes shrunk, on the CPU (argument and path check)

CPU (2-core machine like CI's; float32): one AdamW training step (forward, backward, update) of
  * one 1024 x 1024 layer, M = 512 tokens, r = 16;
  * all-MiniLM-L6-v2 (37 linear layers), embedding distillation, batch 32 sentences, r = 16, 3-bit and 2-bit g64;
  * SmolLM2-135M (210 linear layers), next-token loss, batch 4 x 64 tokens, r = 8, 3-bit g64;
each for: dense LoRA (peft, fp32 weights), peft DoRA on hqq 0.2.8's HQQLinear (same bits and group size), and ours
(`quantize_model` + `add_dora`) in its default memory mode (recompute='auto': each layer recomputes x W^T only where
nothing else keeps its output) and in the two fixed modes (recompute=False keeps every output, True none). The steps
are interleaved model by model, repetition by repetition; the table gives the median step, the ratios ours / peft-on-hqq
and ours / dense LoRA as medians of the per-repetition ratios (steps timed next to each other share the state of this
shared machine, so its drift cancels), and the activation bytes the graph of one forward holds when it returns (public
`saved_tensors_hooks`, counted once per live storage, parameters and buffers excluded). A last row per workload is the
floor of any exact step at LoRA's memory: dense LoRA's step plus the products x W^T that ours recomputes there (the
layers whose output nothing else keeps), timed alone in the same loop on inputs of the step's shapes.
GPU (bf16): forward + backward of one layer with x requiring grad, r = 16, for dense LoRA (peft), peft DoRA on the
dense layer and on hqq 4-bit, ours on 4-bit and 3-bit QLinear, at 4096x4096 M=2048 and M=8192 and 11008x4096 M=8192
(the shapes of ../shared/ANCHORS.md), timed as the anchors were (`triton.testing.do_bench`, median; one call per model
per repetition, repetitions interleaved), and the extra peak memory of a step (torch.cuda.max_memory_allocated above
the level before it), and the host's time to launch one step while the GPU is busy (`host_ms`: above the device time,
the step is bound by the host). The log also gets a profile of one step of dense LoRA and of ours (where the time goes).
"""
import argparse, copy, json, sys, time, weakref
from pathlib import Path
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from qdora_lab.core import quiet_imports
from qdora_lab.model import QuantConfig, DoRAConfig, quantize_model, add_dora


def _peft():
    with quiet_imports():
        import peft
        from hqq.core.quantize import HQQLinear, BaseQuantizeConfig, HQQBackend
    return peft, HQQLinear, BaseQuantizeConfig


def linear_names(model): return [n for n, m in model.named_modules() if type(m) is nn.Linear]


def peft_model(fp, r, use_dora, nbits=None, skip=(), dtype=torch.float32, device='cpu', fp32_adapters=True):
    "peft LoRA/DoRA (alpha = 2r) on a copy of `fp`, optionally with every linear layer (but `skip`) replaced by HQQLinear."
    peft, HQQLinear, BQC = _peft()
    m = copy.deepcopy(fp)
    names = [n for n in linear_names(m) if n.rsplit('.', 1)[-1] not in skip]
    if nbits is not None:
        for n in names:
            parent, _, child = n.rpartition('.')
            h = HQQLinear(m.get_submodule(n), BQC(nbits=nbits, group_size=64), compute_dtype=dtype, device=str(device), del_orig=True)
            setattr(m.get_submodule(parent) if parent else m, child, h)
    cfg = peft.LoraConfig(r=r, lora_alpha=2 * r, target_modules=sorted({n.rsplit('.', 1)[-1] for n in names}),
                          use_dora=use_dora, lora_dropout=0.0)
    return peft.get_peft_model(m, cfg, autocast_adapter_dtype=fp32_adapters)   # peft's default: float32 adapters


def ours(fp, r, nbits, skip=None, recompute='auto'):
    "`quantize_model` + `add_dora` on a copy of `fp`, with the given memory mode (the default 'auto')."
    m = copy.deepcopy(fp)
    quantize_model(m, QuantConfig(nbits=nbits, group_size=64), skip=skip)
    return add_dora(m, DoRAConfig(r=r, alpha=2 * r, recompute=recompute))

def ours_modes(fp, r, nbits, skip=None)->dict:
    "Ours in the default memory mode and, for comparison, with every output kept (recompute=False) and none (True)."
    return {f'ours {nbits}-bit': ours(fp, r, nbits, skip), f'ours {nbits}-bit, recompute=False': ours(fp, r, nbits, skip, False),
            f'ours {nbits}-bit, recompute=True': ours(fp, r, nbits, skip, True)}


def saved_bytes(fn, model):
    "Bytes of the distinct storages the graph of `fn()`'s result still holds when it returns (a forward), parameters and buffers excluded."
    skip, saved = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}, []
    def pack(t): saved.append(weakref.ref(t)); return t      # a graph dropped inside the forward frees its tensors: not counted
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t): out = fn()
    live = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in (r() for r in saved) if t is not None}
    del out
    return sum(v for p, v in live.items() if p not in skip)


def interleaved(steps:dict, reps:int)->dict:
    "Seconds of each step function per repetition, interleaved rep by rep after one warm-up step each."
    for f in steps.values(): f()
    ts = {k: [] for k in steps}
    for _ in range(reps):
        for k, f in steps.items():
            t = time.perf_counter(); f(); ts[k].append(time.perf_counter() - t)
    return ts


def median(v): return sorted(v)[len(v) // 2]


def paired_ratio(a:list, b:list)->float:
    "Median over repetitions of a[i] / b[i]: steps timed next to each other share the machine's state (drift cancels)."
    return median([x / y for x, y in zip(a, b)])


def train_step(model, loss_fn, lr=2e-3):
    "A function doing one AdamW step of `model` on `loss_fn(model)`."
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    def step():
        loss = loss_fn(model); opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    return step


def recompute_products(model, loss_fn):
    "A function doing only the products x W^T that `model`'s adapters recompute in one step, on inputs of the step's shapes."
    from qdora_lab.dora import QDoRALinear
    loss_fn(model); loss_fn(model)      # with autograd: recompute='auto' looks at the first forward and applies its choice at the second
    layers = [l for l in model.modules() if isinstance(l, QDoRALinear)
              and (l.recompute is True or (l.recompute == 'auto' and l._auto_recompute))]
    rows = {}
    hooks = [l.register_forward_pre_hook(lambda mod, args: rows.__setitem__(mod, args[0].numel() // mod.in_features)) for l in layers]
    with torch.no_grad(): loss_fn(model)
    for h in hooks: h.remove()
    work = [(torch.randn(rows[l], l.in_features), l.base.dequantize()) for l in layers]
    def products():
        for x, W in work: x @ W.T
    return products, len(layers)

FLOOR = 'floor at LoRA\'s memory: dense LoRA + the recomputed products'

def rows_for(name, models:dict, loss_fn, reps):
    """Timing and saved-memory rows for one workload, ours against each anchor, and the floor of an exact step at LoRA's
    memory: dense LoRA's step plus the products x W^T that ours (default mode) recomputes, timed alone in the same loop."""
    steps = {k: train_step(m, loss_fn) for k, m in models.items()}
    auto = next((k for k in models if k.startswith('ours') and 'recompute=' not in k), None)
    if auto is not None and 'dense LoRA (peft)' in models:
        steps['recomputed products'], n_rc = recompute_products(models[auto], loss_fn)
    ts = interleaved(steps, reps)
    mem = {k: saved_bytes(lambda: loss_fn(m), m) for k, m in models.items()}
    lora, peft_hqq = ts.get('dense LoRA (peft)'), next((ts[k] for k in ts if k.startswith('peft DoRA on hqq')), None)
    if 'recomputed products' in ts:
        print(f"{name}: {n_rc} layers recompute x W^T, {median(ts['recomputed products']):.4f} s per step", flush=True)
        ts[FLOOR], mem[FLOOR] = [a + b for a, b in zip(lora, ts['recomputed products'])], mem['dense LoRA (peft)']
    out = []
    for k in [*models, *([FLOOR] if FLOOR in ts else [])]:
        out.append({'workload': name, 'model': k, 'step (s)': median(ts[k]), 'saved (MiB)': mem[k] / 2**20,
                    '/ peft DoRA on hqq': paired_ratio(ts[k], peft_hqq) if peft_hqq else None,
                    '/ dense LoRA': paired_ratio(ts[k], lora) if lora else None})
        print(out[-1], flush=True)
    return out


def cpu(a):
    from qdora_lab import recipes
    torch.manual_seed(0)
    rows = []
    # one layer
    lin = nn.Sequential(nn.Linear(1024, 1024))
    x = torch.randn(512, 1024)
    loss = lambda m: m(x).pow(2).mean()
    rows += rows_for('one layer 1024x1024, M=512, r=16', {
        'dense LoRA (peft)': peft_model(lin, 16, False), 'peft DoRA on hqq 4-bit': peft_model(lin, 16, True, 4),
        **ours_modes(lin, 16, 4)}, loss, a.reps)
    # MiniLM distillation
    fp, tok, _ = recipes.load_model(recipes.minilm_dir())
    sents = recipes.english_sentences()[:32]
    with torch.no_grad(): target = recipes.embed(fp, tok, sents)
    dloss = lambda m: (1 - (recipes.embed(m, tok, sents) * target).sum(-1)).mean()
    for nb in (3, 2):
        rows += rows_for(f'MiniLM distillation, batch 32, r=16, {nb}-bit', {
            'dense LoRA (peft)': peft_model(fp, 16, False), f'peft DoRA on hqq {nb}-bit': peft_model(fp, 16, True, nb),
            **ours_modes(fp, 16, nb)}, dloss, a.reps)
    # causal LM
    if not a.skip_lm:
        try: lm, ltok, _ = recipes.load_model(recipes.smollm2_dir())
        except Exception as e: print(f"SmolLM2 not available ({e}); skipping the causal-LM rows"); lm = None
        if lm is not None:
            ids = torch.tensor(ltok(' '.join(recipes.english_sentences()[:400]))['input_ids'][:256]).view(4, 64)
            lmloss = lambda m: m(input_ids=ids, labels=ids).loss
            rows += rows_for('SmolLM2-135M next-token, batch 4x64, r=8, 3-bit', {
                'dense LoRA (peft)': peft_model(lm, 8, False, skip=('lm_head',)),
                'peft DoRA on hqq 3-bit': peft_model(lm, 8, True, 3, skip=('lm_head',)),
                **ours_modes(lm, 8, 3, skip=['lm_head'])}, lmloss, max(2, a.reps // 2))
    return rows


def bench_ms(fn, dry_run):
    "Median ms of `fn`: triton's do_bench where present (as the anchors were measured: L2 flushed, no sync between calls)."
    if dry_run:
        t0 = time.perf_counter(); fn(); return (time.perf_counter() - t0) * 1e3
    try: from triton.testing import do_bench
    except ImportError: do_bench = None
    if do_bench is not None: return do_bench(fn, warmup=10, rep=60, return_mode='median')
    ts = []
    for _ in range(20):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record(); fn(); e1.record(); e1.synchronize(); ts.append(e0.elapsed_time(e1))
    return median(ts)


def host_ms(fn, dry_run, reps=15):
    "Median ms the host spends in `fn()` while the GPU is held busy ahead of it (its launches queue): the launch cost alone."
    ts = []
    for _ in range(2 if dry_run else reps):            # (a dry run on the CPU times the calls alone)
        if not dry_run: torch.cuda.synchronize(); torch.cuda._sleep(50_000_000)   # tens of ms: fn()'s launches queue behind
        t0 = time.perf_counter(); fn(); ts.append((time.perf_counter() - t0) * 1e3)
    if not dry_run: torch.cuda.synchronize()
    return median(ts)


def launch_costs(dev, dt, dry_run)->list:
    "Host microseconds per call of single operations, the GPU held busy: what one launch costs the CPU, ATen's and ours."
    from qdora_lab.linear import QLinear
    K = 256 if dry_run else 4096
    lin = nn.Linear(K, K, bias=False)
    q = QLinear.from_linear(lin, nbits=4, group_size=64, optimize=False, compute_dtype=dt).to(dev)
    w, x16, v = lin.weight.to(dev, dt), torch.randn(16, K, device=dev, dtype=dt), torch.randn(K, device=dev)
    ops = {'ATen: v * 2 (a [K] float32 vector)': lambda: v * 2, 'ATen: x @ W.T (M=16, dense bf16)': lambda: x16 @ w.T,
           'ours: QLinear.dequantize() (4-bit)': lambda: q.dequantize(), 'ours: QLinear.matmul(x) (M=16, 4-bit)': lambda: q.matmul(x16)}
    for f in ops.values(): f(); f()
    return [{'operation': k, 'host (us per call)': host_ms(lambda f=f: [f() for _ in range(20)], dry_run) * 1e3 / 20}
            for k, f in ops.items()]


def capture(step, m):
    "A CUDA graph of one `step(m)` (forward + backward), after warm-up on a side stream with the gradients cleared."
    st = torch.cuda.Stream(); st.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(st):
        for _ in range(3): step(m)
    torch.cuda.current_stream().wait_stream(st); torch.cuda.synchronize()
    for p in m.parameters(): p.grad = None             # allocated from the graph's pool, written by every replay
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g): step(m)
    g.replay(); torch.cuda.synchronize()
    return g


def graph_ms(g, reps=20, trials=5):
    "Median ms per replay of graph `g` (CUDA events around `reps` replays): the step's device time, no host overhead."
    ts = []
    for _ in range(trials):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        for _ in range(reps): g.replay()
        e1.record(); e1.synchronize(); ts.append(e0.elapsed_time(e1) / reps)
    return median(ts)


def profile_step(step, m, label):
    "Print the 15 costliest ops of one step of `m` (CPU and CUDA time): where a step's time goes."
    from torch.profiler import profile, ProfilerActivity
    for _ in range(3): step(m)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(5): step(m)
        torch.cuda.synchronize()
    print(f"--- profile of 5 steps: {label}")
    print(prof.key_averages().table(sort_by='self_cuda_time_total', row_limit=15, max_name_column_width=60))
    print(prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=12, max_name_column_width=60))


# ../shared/ANCHORS.md, one H100, do_bench medians (ms): the same step of dense LoRA and peft's DoRA, measured by the lead
ANCHOR_MS = {(4096, 4096, 2048): {'dense LoRA (peft)': 0.318, 'peft DoRA (dense)': 1.165, 'peft DoRA on hqq 4-bit': 1.392},
             (4096, 4096, 8192): {'dense LoRA (peft)': 1.189, 'peft DoRA (dense)': 2.138, 'peft DoRA on hqq 4-bit': 2.602},
             (11008, 4096, 8192): {'dense LoRA (peft)': 2.762, 'peft DoRA (dense)': 5.156, 'peft DoRA on hqq 4-bit': 6.395}}


def gpu(a):
    dev = 'cpu' if a.dry_run else 'cuda'
    dt = torch.float32 if a.dry_run else torch.bfloat16
    shapes = [(256, 256, 64), (256, 256, 128)] if a.dry_run else [(4096, 4096, 2048), (4096, 4096, 8192), (11008, 4096, 8192)]
    sync = (lambda: None) if a.dry_run else torch.cuda.synchronize
    rows = []
    for N, K, M in shapes:
        torch.manual_seed(0)
        lin = nn.Sequential(nn.Linear(K, N, bias=False)).to(dev, dt)
        x = torch.randn(M, K, device=dev, dtype=dt, requires_grad=True)
        g = torch.randn(M, N, device=dev, dtype=dt)
        models = {'dense LoRA (peft)': peft_model(lin, 16, False, dtype=dt, device=dev),
                  'dense LoRA (peft), bf16 adapters': peft_model(lin, 16, False, dtype=dt, device=dev, fp32_adapters=False),
                  'peft DoRA (dense)': peft_model(lin, 16, True, dtype=dt, device=dev),
                  'peft DoRA on hqq 4-bit': peft_model(lin, 16, True, 4, dtype=dt, device=dev),
                  'ours 4-bit': ours(lin, 16, 4).to(dev), 'ours 3-bit': ours(lin, 16, 3).to(dev),
                  'ours 4-bit, recompute=False': ours(lin, 16, 4, recompute=False).to(dev),
                  'ours 3-bit, recompute=False': ours(lin, 16, 3, recompute=False).to(dev)}
        for m in models.values():
            for p in m.parameters():
                if p.requires_grad: p.data.normal_(0, 0.01)
        def step(m): m(x).backward(g); x.grad = None
        times, peaks, graphs, why = {}, {}, {}, {}
        if a.graphs and not a.dry_run:                 # each model's step captured once, replays timed in rounds
            for k, m in models.items():
                try: graphs[k] = capture(step, m)
                except Exception as e:
                    why[k] = f'{type(e).__name__}: {(str(e).splitlines() or [""])[0][:100]}'
                    try: torch.cuda.synchronize()
                    except Exception: pass
            for r in range(a.reps):
                for k in graphs: times.setdefault(k, []).append(graph_ms(graphs[k]))
            for k in why: times[k] = [float('nan')]
        else:
            for k, m in models.items():
                for _ in range(3): step(m)
                sync()
                if not a.dry_run:
                    torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
                    step(m); sync(); peaks[k] = (torch.cuda.max_memory_allocated() - base) / 2**20
            for r in range(a.reps):  # rounds: every model once per round, so drift hits all alike
                for k, m in models.items():
                    times.setdefault(k, []).append(bench_ms(lambda m=m: step(m), a.dry_run))
            host = {k: host_ms(lambda m=m: step(m), a.dry_run) for k, m in models.items()}
        med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
        if not a.dry_run and not a.graphs and M == shapes[0][2]:
            for k in ('dense LoRA (peft), bf16 adapters', 'ours 4-bit, recompute=False'):
                try: profile_step(step, models[k], f'{k} {N}x{K} M={M}')
                except Exception as e: print(f'profile of {k} failed: {type(e).__name__}: {e}')
        for k in models:
            rows.append({'layer (out x in)': f'{N}x{K}', 'M': M, 'model': k, 'fwd+bwd (ms)': med[k],
                         'anchor (ms)': ANCHOR_MS.get((N, K, M), {}).get(k),
                         '/ dense LoRA': med[k] / med['dense LoRA (peft)'],
                         '/ LoRA bf16 adapters': med[k] / med['dense LoRA (peft), bf16 adapters'],
                         **({'not captured': why.get(k, '')} if a.graphs else
                            {'host (ms)': host[k], 'extra peak (MiB)': peaks.get(k)})})
            print(rows[-1], flush=True)
    if not a.graphs: LAUNCH_ROWS.extend(launch_costs(dev, dt, a.dry_run))
    return rows

LAUNCH_ROWS = []  # gpu(): host cost of single launches (ATen's and our CuPy kernels'), a second table


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('device', choices=['cpu', 'gpu'])
    p.add_argument('--reps', type=int, default=None)
    p.add_argument('--dry-run', action='store_true')
    p.add_argument('--graphs', action='store_true', help='GPU: time each step captured in a CUDA graph (device time only)')
    p.add_argument('--skip-lm', action='store_true', help='CPU: leave out the SmolLM2 rows')
    p.add_argument('--out', default=None, help='folder for the results (default bench/results)')
    a = p.parse_args(argv)
    if a.reps is None: a.reps = 5 if a.device == 'cpu' else 5
    if a.dry_run: a.reps = 2
    t0 = time.time()
    rows = cpu(a) if a.device == 'cpu' else gpu(a)
    from tabulate import tabulate
    dev = (f"CPU ({torch.get_num_threads()} threads), float32" if a.device == 'cpu' or a.dry_run else
           f"{torch.cuda.get_device_name()}, bfloat16")
    how = ("median step, ratios as medians of the per-repetition ratios (SmolLM2: half as many repetitions)"
           if a.device == 'cpu' else
           "each step captured once in a CUDA graph (forward + backward; the device's time alone, no launch or Python "
           "overhead), each repetition the median of 5 x 20 replays per model; medians of the repetitions" if a.graphs else "each repetition one `triton.testing.do_bench` median per model (as ANCHORS.md was "
             "measured: L2 flushed before each call, no sync between calls); medians of the repetitions, ratios of the medians; "
             "'host (ms)': the CPU's time to launch one step while the GPU is held busy ahead of it (median of 15; a step whose "
             "host time exceeds its device time is bound by the host); 'extra peak (MiB)': the most memory allocated during one step "
             "above what was allocated before it (the returned output and the input's gradient included)")
    md = (f"# QDoRA training step beside the anchors ({a.device}{', CUDA graphs' if a.graphs else ''}{', dry run' if a.dry_run else ''})\n\n"
          f"`python bench/dora_step.py {a.device}{' --graphs' if a.graphs else ''}` on {dev}; {a.reps} interleaved repetitions; "
          + how + f"; {time.time() - t0:.0f} s in all.\n\n"
          + tabulate(rows, headers='keys', tablefmt='github', floatfmt='.3f') + '\n')
    if LAUNCH_ROWS:
        md += ("\nHost time of single launches (4096x4096 weights, the GPU held busy; 20 calls per sample, median of 15 "
               "samples): where a step's host time goes.\n\n" + tabulate(LAUNCH_ROWS, headers='keys', tablefmt='github', floatfmt='.1f') + '\n')
    out = Path(a.out or ROOT/'bench'/'results'); out.mkdir(parents=True, exist_ok=True)
    stem = out/f"dora_step_{a.device}{'_graphs' if a.graphs else ''}{'_dry' if a.dry_run else ''}"
    stem.with_suffix('.md').write_text(md); stem.with_suffix('.json').write_text(json.dumps(rows, indent=1))
    print(md)


if __name__ == '__main__': main()
