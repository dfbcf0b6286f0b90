"Shared by the bench/ scripts: hqq's model path, machine notes, how idle the machine is."
import os, time, torch
from torch import nn

def hqq_quantize(model, nbits, group_size=64, optimize=True):
    "hqq 0.2.8's model path: every nn.Linear but lm_head becomes HQQLinear(linear, BaseQuantizeConfig(nbits, group_size))."
    from hqq.core.quantize import HQQLinear, BaseQuantizeConfig, HQQBackend
    HQQLinear.set_backend(HQQBackend.PYTORCH)
    cfg = BaseQuantizeConfig(nbits=nbits, group_size=group_size)
    cfg['weight_quant_params']['optimize'] = optimize
    for n in [n for n, m in model.named_modules() if type(m) is nn.Linear and n != 'lm_head']:
        parent, _, child = n.rpartition('.')
        p = model.get_submodule(parent)
        setattr(p, child, HQQLinear(getattr(p, child), cfg, compute_dtype=torch.float32, device='cpu', del_orig=True))
    return model

def linear_names(model):
    "Dotted names of the linear layers of the blocks (everything but the head)."
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n != 'lm_head']

def machine()->str:
    "A line saying what the machine was doing."
    return f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, load average {os.getloadavg()[0]:.1f}"

def idle_percent(dt=1.0):
    "Share of CPU time the whole machine spent idle over `dt` seconds (/proc/stat), or None where unavailable."
    try:
        a = list(map(int, open('/proc/stat').readline().split()[1:9])); time.sleep(dt)
        b = list(map(int, open('/proc/stat').readline().split()[1:9]))
    except OSError: return None
    d = [y - x for x, y in zip(a, b)]
    return 100 * d[3] / max(1, sum(d))
