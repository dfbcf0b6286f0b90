"""bench/kernels.py: qdora_lab's CUDA kernels (through `HQQPlan`) against what users would pick instead, side by side.

One process, interleaved per shape, so the ratios are comparable:
  * y = x @ W.T, bf16, issue 11's shapes: dense bf16 (cuBLAS, `F.linear`) | aten tinygemm int4 g64
    (`torch.ops.aten._weight_int4pack_mm`) | hqq 0.2.8 `HQQLinear`, PYTORCH backend | ours (`HQQPlan.matmul`,
    meta in bf16 as the layers store it);
  * dequantize 4096x4096 to bf16: ours (`HQQPlan.dequantize`), hqq's `HQQLinear.dequantize`, and ours as a
    fraction of the device-to-device copy bandwidth measured in the same run;
  * mixed-bit (`MixedBitLinear` through `MixedBitPlan`): 4096x4096 with 16/32/16 groups of 64 at 4/3/2 bits (3.0 bits
    per code, 3.5 bpw with its fp16 scale and zero), y = x @ W.T at M = 1 and 8 against dense bf16, and its
    dequantize to bf16;
  * tuning data: each M = 1 matmul again at every split of K over blocks (1, 2, 4, ... and `mm_config`'s choice),
    each checked, to show whether more blocks (more loads in flight) pay for the atomics they need.

Method: every candidate's weights are replicated into enough copies to exceed 2x the L2 cache and the timed
calls rotate through them (no L2-resident weights); each timing is a CUDA graph of `REPS` rotated calls
(replayed `TRIALS` times, median per call; eager CUDA-event timing where a candidate cannot be captured, and
the table says so). Every "ours" result is checked against an fp32 reference before it is timed.

    python bench/kernels.py --out OUTDIR         # GPU: OUTDIR/kernels.json and OUTDIR/kernels.md
    python bench/kernels.py --dry-run            # CPU: argument parsing, cases and reference paths, no timing
"""
import argparse, json, math, statistics, sys, time, traceback
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

G = 64
BF = torch.bfloat16
# (label, N, K, M, bits, target us for ours or None); anchors: ../shared/ANCHORS.md (H100, measured by the lead)
MATMULS = [
    ('4096x4096 M=1 4-bit', 4096, 4096, 1, 4, 7.8),
    ('4096x4096 M=1 3-bit', 4096, 4096, 1, 3, 7.0),
    ('4096x4096 M=1 2-bit', 4096, 4096, 1, 2, 6.0),
    ('11008x4096 M=1 4-bit', 11008, 4096, 1, 4, 15.5),
    ('4096x4096 M=16 4-bit', 4096, 4096, 16, 4, 11.6),
    ('11008x4096 M=16 4-bit', 11008, 4096, 16, 4, None),
    ('4096x4096 M=64 4-bit (DoRA W A^T)', 4096, 4096, 64, 4, None),
]
ANCHORS = {('4096x4096', 1): (23.3, 11.4), ('11008x4096', 1): (46.4, 21.9), ('4096x4096', 16): (23.2, 25.0),
           ('11008x4096', 16): (46.7, 57.3)}
DEQUANTS = [('4096x4096 4-bit -> bf16', 4096, 4096, 4, 15.0), ('4096x4096 3-bit -> bf16', 4096, 4096, 3, None),
            ('4096x4096 2-bit -> bf16', 4096, 4096, 2, None)]
MIXED = [('4096x4096 M=1 mixed 4/3/2-bit', 4096, 4096, 1, (0, 0, 0, 16, 32, 16), 64),
         ('4096x4096 M=8 mixed 4/3/2-bit', 4096, 4096, 8, (0, 0, 0, 16, 32, 16), 64)]
MIXED_DEQ = [('4096x4096 mixed 4/3/2-bit -> bf16', 4096, 4096, (0, 0, 0, 16, 32, 16), 64)]
REPS, TRIALS = 20, 15


def l2_bytes():
    try: return torch.cuda.get_device_properties(0).L2_cache_size
    except Exception: return 50 * 2**20


def copies_for(nbytes):
    "How many copies of a working set rotate through more than twice the L2 cache."
    return max(2, min(64, math.ceil(2 * l2_bytes() / max(nbytes, 1)) + 1))


def time_graph(fns, reps=REPS, trials=TRIALS):
    "Median microseconds per call of a CUDA graph that runs `reps` calls rotating through `fns`."
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for f in fns: f()  # warm-up outside the capture: compiles, builds every plan's launcher, allocates
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(reps): fns[i % len(fns)]()
    g.replay(); torch.cuda.synchronize()
    ts = []
    for _ in range(trials):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); g.replay(); b.record(); b.synchronize()
        ts.append(a.elapsed_time(b) * 1e3 / reps)
    return statistics.median(ts)


def time_eager(fns, reps=REPS, trials=TRIALS):
    "Median microseconds per call, eager launches timed with CUDA events."
    for f in fns[:3]: f()
    torch.cuda.synchronize()
    ts = []
    for _ in range(trials):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for i in range(reps): fns[i % len(fns)]()
        b.record(); b.synchronize()
        ts.append(a.elapsed_time(b) * 1e3 / reps)
    return statistics.median(ts)


def timed(fns):
    "(us, how): CUDA-graph timing, or eager timing where capture fails."
    try: return time_graph(fns), 'graph'
    except Exception as e:
        torch.cuda.synchronize()
        return time_eager(fns), f'eager ({type(e).__name__})'


def quantized(W, bits):
    "W_q and bf16 (scale, zero) as QLinear stores them (round-to-nearest: timing does not need the optimizer)."
    from qdora_lab.quant import quantize
    W_q, m = quantize(W, nbits=bits, group_size=G, axis=1, optimize=False, compute_dtype=BF)
    return W_q, m['scale'].to(BF).contiguous(), m['zero'].to(BF).contiguous()


def ours(N, K, bits, W, dev):
    "(plans with their meta, one per copy, and the first copy's pieces for the correctness check)."
    from qdora_lab.cuda import HQQPlan
    W_q, s, z = quantized(W, bits)
    nbytes = W_q.numel() * W_q.element_size() + 2 * s.numel() * 2
    cps = [(W_q, s, z)] + [(W_q.clone(), s.clone(), z.clone()) for _ in range(copies_for(nbytes) - 1)] if dev == 'cuda' else [(W_q, s, z)]
    plans = [(HQQPlan(q, nbits=bits, group_size=G, axis=1, shape=(N, K)) if dev == 'cuda' else None, q, s_, z_) for q, s_, z_ in cps]
    return plans


def tinygemm(W):
    "Copies of (packed int4 weight, scales_and_zeros) for aten's tinygemm (`_weight_int4pack_mm`), or None and why."
    try:
        from qdora_lab.tinygemm import TinyGemmLinear
        lin = torch.nn.Linear(W.shape[1], W.shape[0], bias=False, device=W.device, dtype=BF)
        lin.weight.data.copy_(W)
        tg = TinyGemmLinear.from_linear(lin, group_size=G, optimize=False)
        n = copies_for(W.numel() // 2 + tg.scales_and_zeros.numel() * 2)
        return [(tg.weight_packed, tg.scales_and_zeros)] + [(tg.weight_packed.clone(), tg.scales_and_zeros.clone())
                                                            for _ in range(n - 1)], None
    except Exception as e:
        return None, f'{type(e).__name__}: {e}'


def hqq_layer(W, bits):
    "hqq 0.2.8's HQQLinear on the PYTORCH backend, or None with the reason."
    try:
        from hqq.core.quantize import HQQLinear, HQQBackend, BaseQuantizeConfig
        lin = torch.nn.Linear(W.shape[1], W.shape[0], bias=False, device=W.device, dtype=BF)
        lin.weight.data.copy_(W)
        HQQLinear.set_backend(HQQBackend.PYTORCH)
        return HQQLinear(lin, quant_config=BaseQuantizeConfig(nbits=bits, group_size=G, axis=1), compute_dtype=BF,
                         device=str(W.device)), None
    except Exception as e:
        return None, f'{type(e).__name__}: {e}'


def mixed(N, K, counts, g, dev, seed=0):
    "A MixedBitLinear (random codes, groups of each width shuffled, bf16 compute) and plans over copies of it."
    from qdora_lab.mixedbit import MixedBitLinear, WIDTHS
    from qdora_lab.cuda import MixedBitPlan
    gen = torch.Generator().manual_seed(seed)
    bits = [b for b, n in zip(WIDTHS, counts) for _ in range(n)]
    bits = [bits[i] for i in torch.randperm(len(bits), generator=gen).tolist()]
    codes = torch.cat([torch.randint(0, 2**b, (N, g), generator=gen) for b in bits], 1)
    scale = (torch.rand(N, len(bits), generator=gen) / 2**max(bits) / K**0.5).half()
    zero = (torch.rand(N, len(bits), generator=gen) * 2**max(bits)).half()
    ml = MixedBitLinear(codes, bits, scale, zero, torch.randperm(K, generator=gen), compute_dtype=BF).to(dev)
    if dev != 'cuda': return ml, []
    pl = [getattr(ml, n) for n in ml._planes]
    nbytes = sum(t.numel() for t in pl) + 4 * scale.numel()
    plans = []
    for i in range(copies_for(nbytes)):
        cp = pl if i == 0 else [t.clone() for t in pl]
        s_, z_ = (ml.scale, ml.zero) if i == 0 else (ml.scale.clone(), ml.zero.clone())
        plans.append((MixedBitPlan(cp, counts=ml.counts.tolist(), group_size=g, perm=ml.perm, scaled_zero=False, shape=(N, K)), s_, z_))
    return ml, plans


def ks_choices(N, K, bits, M=1):
    "(default split-K, the splits to try) of the fused matmul: powers of two up to one unit per warp, and the default."
    from qdora_lab.cuda import plan_layout, mm_kind, mm_config
    lay = plan_layout(bits, G, 1, (N, K))
    kind = mm_kind(lay)
    cfg = mm_config(lay, kind, M, BF, BF)
    units, warps = (K // 64, 4) if kind == '3bit' else ((lay.K // lay.g) * (lay.g // 64), 8)
    return cfg.ks, sorted({cfg.ks, *(1 << i for i in range(8) if (1 << i) <= max(1, units // warps))})


@contextmanager
def mm_config_patched(plans, config):
    "Inside: the plans' fused matmuls launch with `config(chosen, *args)` instead of the library's `mm_config` (restored after)."
    from qdora_lab import cuda
    chosen = cuda.mm_config
    for p in plans: p._mm.clear()          # launch closures are built (with their config) on first use
    cuda.mm_config = lambda *args, **kw: config(chosen, *args, **kw)
    try: yield
    finally:
        cuda.mm_config = chosen
        for p in plans: p._mm.clear()


def split_k(ks, plans):
    "Inside: the plans' fused matmuls launch with `ks` K splits."
    from qdora_lab.cuda import mm_name
    def forced(chosen, lay, kind, M, x_dtype, meta_dtype, sms=132):
        c = chosen(lay, kind, M, x_dtype, meta_dtype, sms)
        atomic = kind == '3bit' or ks > 1
        return c._replace(grid=c.grid[:2] + (ks,), ks=ks, atomic=atomic,
                          name=mm_name(kind, lay.nbits, x_dtype, c.mt, meta_dtype, atomic, c.rw))
    return mm_config_patched(plans, forced)


def check_ours(plan, q, s, z, x, N, K, bits):
    "Assert the fused result is within tolerance of the fp32 reference: ||y - ref||_inf <= 2^-7 ||ref||_inf."
    from qdora_lab.quant import dequantize_packed
    from qdora_lab.cuda import plan_layout
    lay = plan_layout(bits, G, 1, (N, K))
    ref = x.float() @ dequantize_packed(q, lay.nbits, lay.R, (N, K), s, z, torch.float32).t()
    y = plan.matmul(x, s, z) if plan is not None else ref.to(BF)
    err = float((y.float() - ref).abs().max() / ref.abs().max().clamp_min(1e-30))
    if not err <= 2**-7: raise AssertionError(f"ours is off by {err:.3g} (relative to max |ref|) on {N}x{K} {bits}-bit M={x.shape[0]}")
    if plan is not None:
        d = plan.dequantize(s, z, BF)
        if not torch.equal(d, dequantize_packed(q, lay.nbits, lay.R, (N, K), s, z, BF)): raise AssertionError("dequantize is not bit-exact")
    return err


def sweep_split_k(label, N, K, bits, plans, x, dev)->list:
    "Rows timing the M=1 matmul at each split-K factor (each checked against the fp32 reference first): data to tune `mm_config`."
    default, choices = ks_choices(N, K, bits)
    rows = []
    for ks in choices:
        row = dict(work=label, ks=ks, default=ks == default)
        try:
            if dev == 'cuda':
                with split_k(ks, [p for p, *_ in plans]):
                    row['err'] = check_ours(*plans[0], x, N, K, bits)
                    row['us'], row['how'] = timed([lambda p=p, s=s, z=z: p.matmul(x, s, z) for p, _, s, z in plans])
        except Exception as e: row['error'] = f'{type(e).__name__}: {e}'
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def run(args):
    dev = 'cuda' if torch.cuda.is_available() and not args.dry_run else 'cpu'
    torch.manual_seed(0)
    info = dict(device=torch.cuda.get_device_name() if dev == 'cuda' else 'cpu (dry run: no timing)',
                torch=torch.__version__, dry_run=dev == 'cpu', l2_bytes=l2_bytes() if dev == 'cuda' else None,
                reps=REPS, trials=TRIALS, started=time.strftime('%Y-%m-%d %H:%M:%S'))
    rows, drows, notes, krows = [], [], [], []
    info['split_k'] = krows
    sel = lambda cases: [c for c in cases if not args.only or any(o in c[0] for o in args.only)]
    if dev == 'cuda':
        src = torch.randn(128 * 2**20, dtype=BF, device=dev)  # 256 MB
        dst = torch.empty_like(src)
        us = time_eager([lambda: dst.copy_(src)], reps=5, trials=7)
        info['copy_TBps'] = 2 * src.numel() * 2 / us / 1e6
        del src, dst
    cache = {}
    for label, N, K, M, bits, target in sel(MATMULS):
        t0 = time.time()
        row = dict(work=label, N=N, K=K, M=M, bits=bits, target_us=target)
        try:
            scale = 1 / math.sqrt(K)
            if (N, K) not in cache: cache.clear(); cache[(N, K)] = {'W': torch.randn(N, K, device=dev, dtype=BF) * scale}
            c = cache[(N, K)]
            W = c['W']
            x = torch.randn(M, K, device=dev, dtype=BF)
            if ('ours', bits) not in c: c[('ours', bits)] = ours(N, K, bits, W, dev)
            plans = c[('ours', bits)]
            row['ours_err'] = check_ours(*plans[0], x, N, K, bits)
            if dev == 'cuda':
                Ws = [W] + [W.clone() for _ in range(copies_for(W.numel() * 2) - 1)]
                row['dense_us'], row['dense_how'] = timed([lambda w=w: F.linear(x, w) for w in Ws])
                del Ws
                if bits == 4:
                    if 'tg' not in c: c['tg'] = tinygemm(W)
                    tgs, why = c['tg']
                    op = torch.ops.aten._weight_int4pack_mm
                    if tgs: row['tinygemm_us'], row['tinygemm_how'] = timed([lambda p=p, sz=sz: op(x, p, G, sz) for p, sz in tgs])
                    else: row['tinygemm_us'], row['tinygemm_how'] = None, why
                if M in (1, 16) and N == 4096:
                    if ('hqq', bits) not in c: c[('hqq', bits)] = hqq_layer(W, bits)
                    h, why = c[('hqq', bits)]
                    if h is not None: row['hqq_us'], row['hqq_how'] = timed([lambda: h(x)])
                    else: row['hqq_us'], row['hqq_how'] = None, why
                row['ours_us'], row['ours_how'] = timed([lambda p=p, s=s, z=z: p.matmul(x, s, z) for p, _, s, z in plans])
                row['ours_kernel'] = repr(plans[0][0])
            if M == 1: krows.extend(sweep_split_k(label, N, K, bits, plans, x, dev))
        except Exception as e:
            row['error'] = f'{type(e).__name__}: {e}'
            notes.append(f"{label}: {traceback.format_exc(limit=3)}")
        row['secs'] = round(time.time() - t0, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
        write(args, info, rows, drows, notes)  # always keep what we have
    cache.clear()
    for label, N, K, bits, target in sel(DEQUANTS):
        row = dict(work=label, N=N, K=K, bits=bits, target_us=target)
        try:
            W = torch.randn(N, K, device=dev, dtype=BF) / math.sqrt(K)
            plans = ours(N, K, bits, W, dev)
            nbytes = plans[0][1].numel() * plans[0][1].element_size() + 2 * plans[0][2].numel() * 2 + N * K * 2
            row['MB'] = nbytes / 1e6
            if dev == 'cuda':
                outs = [torch.empty(N, K, dtype=BF, device=dev) for _ in range(2)]
                row['ours_us'], row['ours_how'] = timed([lambda p=p, s=s, z=z, i=i: p.dequantize(s, z, BF, out=outs[i % 2])
                                                         for i, (p, _, s, z) in enumerate(plans)])
                row['ours_TBps'] = nbytes / row['ours_us'] / 1e6
                row['pct_of_copy'] = 100 * row['ours_TBps'] / info['copy_TBps']
                h, why = hqq_layer(W, bits)
                if h is not None: row['hqq_us'], row['hqq_how'] = timed([lambda: h.dequantize()])
                else: row['hqq_us'], row['hqq_how'] = None, why
            else:
                from qdora_lab.quant import dequantize_packed
                from qdora_lab.cuda import plan_layout
                lay = plan_layout(bits, G, 1, (N, K))
                _, q, s, z = plans[0]
                dequantize_packed(q, lay.nbits, lay.R, (N, K), s, z, BF)  # the reference path runs
        except Exception as e:
            row['error'] = f'{type(e).__name__}: {e}'
            notes.append(f"{label}: {traceback.format_exc(limit=3)}")
        drows.append(row)
        print(json.dumps(row), flush=True)
        write(args, info, rows, drows, notes)
    mrows = []
    for label, N, K, M, counts, g in sel(MIXED):
        t0 = time.time()
        row = dict(work=label, N=N, K=K, M=M, counts=counts, group_size=g)
        try:
            ml, plans = mixed(N, K, counts, g, dev)
            row['bpw'] = float(ml.bpw)
            x = torch.randn(M, K, device=dev, dtype=BF)
            ref = x.float() @ ml._dequantize(torch.float32).t()
            y = plans[0][0].matmul(x, plans[0][1], plans[0][2]) if plans else ref.to(BF)
            row['ours_err'] = float((y.float() - ref).abs().max() / ref.abs().max().clamp_min(1e-30))
            if not row['ours_err'] <= 2**-7: raise AssertionError(f"ours is off by {row['ours_err']:.3g} on {label}")
            if dev == 'cuda':
                W = ml._dequantize(BF)
                Ws = [W] + [W.clone() for _ in range(copies_for(W.numel() * 2) - 1)]
                row['dense_us'], row['dense_how'] = timed([lambda w=w: F.linear(x, w) for w in Ws])
                del Ws, W
                row['ours_us'], row['ours_how'] = timed([lambda p=p, s=s, z=z: p.matmul(x, s, z) for p, s, z in plans])
                row['ours_kernel'] = repr(plans[0][0])
        except Exception as e:
            row['error'] = f'{type(e).__name__}: {e}'
            notes.append(f"{label}: {traceback.format_exc(limit=3)}")
        row['secs'] = round(time.time() - t0, 1)
        mrows.append(row)
        print(json.dumps(row), flush=True)
        write(args, info, rows, drows, notes, mrows)
    for label, N, K, counts, g in sel(MIXED_DEQ):
        row = dict(work=label, N=N, K=K, counts=counts, group_size=g, mixed=True)
        try:
            ml, plans = mixed(N, K, counts, g, dev)
            row['MB'] = (ml.storage_bits() / 8 + N * K * 2) / 1e6
            if dev == 'cuda':
                if not torch.equal(plans[0][0].dequantize(plans[0][1], plans[0][2], BF), ml._dequantize(BF)):
                    raise AssertionError("mixed-bit dequantize is not bit-exact")
                outs = [torch.empty(N, K, dtype=BF, device=dev) for _ in range(2)]
                row['ours_us'], row['ours_how'] = timed([lambda p=p, s=s, z=z, i=i: p.dequantize(s, z, BF, out=outs[i % 2])
                                                         for i, (p, s, z) in enumerate(plans)])
                row['ours_TBps'] = row['MB'] / row['ours_us']
                row['pct_of_copy'] = 100 * row['ours_TBps'] / info['copy_TBps']
            else: ml._dequantize(BF)  # the reference path runs
        except Exception as e:
            row['error'] = f'{type(e).__name__}: {e}'
            notes.append(f"{label}: {traceback.format_exc(limit=3)}")
        drows.append(row)
        print(json.dumps(row), flush=True)
        write(args, info, rows, drows, notes, mrows)
    return rows, drows


def f1(v): return '-' if v is None else f'{v:.1f}' if isinstance(v, (int, float)) else str(v)


def write(args, info, rows, drows, notes, mrows=()):
    "Write OUTDIR/kernels.json and OUTDIR/kernels.md with whatever has been measured so far."
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'kernels.json').write_text(json.dumps(dict(info=info, matmul=rows, dequantize=drows, mixed=list(mrows), notes=notes), indent=1))
    L = [f"# CUDA kernels benchmark (issue 11)\n",
         f"Device: **{info['device']}**; torch {info['torch']}; started {info['started']}. "
         + (f"Device-to-device copy {info['copy_TBps']:.2f} TB/s (read + write). " if info.get('copy_TBps') else '')
         + f"Times in microseconds per call: median of {TRIALS} replays of a CUDA graph of {REPS} calls rotating through "
           "copies of the weights (more than 2x L2), bf16 activations, g64, axis=1, meta in bf16. "
           "Anchors (ANCHORS.md, H100, measured earlier by the lead) are in parentheses.\n",
         "## y = x @ W.T\n",
         "| work | dense bf16 (anchor) | tinygemm int4 (anchor) | hqq PYTORCH | ours | target | met | ours/dense | ours vs fp32 ref |",
         "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        shape = r['work'].split()[0]
        anc = ANCHORS.get((shape, r['M']), (None, None))
        met = '-' if r.get('target_us') is None or r.get('ours_us') is None else ('yes' if r['ours_us'] <= r['target_us'] else 'NO')
        ratio = '-' if not (r.get('ours_us') and r.get('dense_us')) else f"{r['dense_us'] / r['ours_us']:.2f}x faster"
        L.append(f"| {r['work']} | {f1(r.get('dense_us'))} ({f1(anc[0])}) | {f1(r.get('tinygemm_us'))} ({f1(anc[1])}) | "
                 f"{f1(r.get('hqq_us'))} | {f1(r.get('ours_us'))} | {f1(r.get('target_us'))} | {met} | {ratio} | "
                 f"{'-' if r.get('ours_err') is None else format(r['ours_err'], '.1e')} |"
                 + (f" error: {r['error']}" if r.get('error') else ''))
    L += ["\n## dequantize to bf16\n",
          "| work | ours | hqq | MB moved | ours TB/s | % of copy | target | met |",
          "|---|---|---|---|---|---|---|---|"]
    for r in drows:
        met = '-' if r.get('target_us') is None or r.get('ours_us') is None else ('yes' if r['ours_us'] <= r['target_us'] else 'NO')
        L.append(f"| {r['work']} | {f1(r.get('ours_us'))} | {f1(r.get('hqq_us'))} | {f1(r.get('MB'))} | "
                 f"{'-' if r.get('ours_TBps') is None else format(r['ours_TBps'], '.2f')} | {f1(r.get('pct_of_copy'))} | "
                 f"{f1(r.get('target_us'))} | {met} |"
                 + (f" error: {r['error']}" if r.get('error') else ''))
    L += ["\n## Mixed-bit (MixedBitLinear, MixedBitPlan): y = x @ W.T\n",
          "16/32/16 groups of 64 input channels at 4/3/2 bits in a random channel permutation (3.0 bits per code; bpw "
          "counts the fp16 scale and zero and the permutation too); ours is the fused kernels (x permuted once, one "
          "launch per width) at M <= 8.\n",
          "| work | bpw | dense bf16 | ours | ours/dense | ours vs fp32 ref |", "|---|---|---|---|---|---|"]
    for r in mrows:
        ratio = '-' if not (r.get('ours_us') and r.get('dense_us')) else f"{r['dense_us'] / r['ours_us']:.2f}x faster"
        L.append(f"| {r['work']} | {'-' if r.get('bpw') is None else format(r['bpw'], '.3f')} | {f1(r.get('dense_us'))} | "
                 f"{f1(r.get('ours_us'))} | {ratio} | {'-' if r.get('ours_err') is None else format(r['ours_err'], '.1e')} |"
                 + (f" error: {r['error']}" if r.get('error') else ''))
    how = sorted({f"{k}: {v}" for r in [*rows, *drows, *mrows] for k, v in r.items() if k.endswith('_how') and v != 'graph'})
    if how: L += ["\nTimed eagerly (CUDA graph capture failed): " + '; '.join(how)]
    krows = info.get('split_k') or []
    if krows:
        L += ["\n## Split-K at M=1: the fused matmul at each K split (tuning data for `cuda.mm_config`)\n",
              "Each variant is checked against the fp32 reference before it is timed; K splits > 1 (and every 3-bit launch) add "
              "their partial sums with fp32 atomics into a zeroed buffer, then cast: those two extra launches are in the time. "
              "`default` marks what `mm_config` chooses today.\n",
              "| work | K splits | default | us | vs fp32 ref |", "|---|---|---|---|---|"]
        for r in krows:
            L.append(f"| {r['work']} | {r['ks']} | {'yes' if r['default'] else ''} | {f1(r.get('us'))} | "
                     f"{'-' if r.get('err') is None else format(r['err'], '.1e')} |" + (f" error: {r['error']}" if r.get('error') else ''))
    L += ["\n## Training step (issue 12)\n",
          "_Measured by `bench/dora_step.py gpu` (its own table, `dora_step_gpu.md`, in the same OUTDIR)._\n"]
    if notes: L += ["\n## Errors\n", '```', *notes, '```']
    (out / 'kernels.md').write_text('\n'.join(L) + '\n')


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default=str(ROOT / 'bench' / 'results'), help='folder for kernels.json and kernels.md')
    ap.add_argument('--dry-run', action='store_true', help='CPU: parse, build the cases, run the reference paths; no timing')
    ap.add_argument('--only', nargs='*', help='run only the cases whose label contains one of these strings')
    args = ap.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available(): sys.exit("bench/kernels.py needs a CUDA device (or --dry-run)")
    if args.dry_run:  # small shapes: the same code paths, minutes -> seconds
        global MATMULS, DEQUANTS
        MATMULS = [(f'{N // 32}x{K // 32} M={M} {b}-bit', N // 32, K // 32, M, b, t) for l, N, K, M, b, t in MATMULS]
        DEQUANTS = [(f'{N // 32}x{K // 32} {b}-bit -> bf16', N // 32, K // 32, b, t) for l, N, K, b, t in DEQUANTS]
        global MIXED, MIXED_DEQ  # 128x128: 1/2/1 groups of 32
        MIXED = [(f'{N // 32}x{K // 32} M={M} mixed 4/3/2-bit', N // 32, K // 32, M, (0, 0, 0, 1, 2, 1), 32) for l, N, K, M, c, g in MIXED]
        MIXED_DEQ = [(f'{N // 32}x{K // 32} mixed 4/3/2-bit -> bf16', N // 32, K // 32, (0, 0, 0, 1, 2, 1), 32) for l, N, K, c, g in MIXED_DEQ]
    run(args)
    print((Path(args.out) / 'kernels.md').read_text())


if __name__ == '__main__':
    main()
