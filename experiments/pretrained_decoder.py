"""Chapter 11's experiment: ShapesVQA with the pretrained SmolLM2-135M-Instruct as the decoder (frozen) against
the tiny decoder trained from scratch, on the same held-out questions; and what a training step of each costs.

    python experiments/pretrained_decoder.py train --preset smollm2 --output-dir runs/exp/smollm2
    python experiments/pretrained_decoder.py train --preset tiny --output-dir runs/exp/tiny16 --batch-size 16 \\
        --steps 1000 --eval-every 100 --eval-samples 250 --save-every 100
    python experiments/pretrained_decoder.py train --preset tiny --output-dir runs/exp/tiny64 --eval-every 100 \\
        --eval-samples 250
    python experiments/pretrained_decoder.py time --steps 10 \\
        --out experiments/results/pretrained_decoder/timing.json
    python experiments/pretrained_decoder.py collect runs/exp/smollm2 runs/exp/tiny16 runs/exp/tiny64 \\
        --out experiments/results/pretrained_decoder
    python experiments/pretrained_decoder.py ask runs/exp/smollm2 runs/exp/tiny16 runs/exp/tiny64 \\
        --out experiments/results/pretrained_decoder/ask.json

`train` is `nanovlm-train --preset NAME [options]` (one thread) plus three records the command does not keep,
written to `<output-dir>.evals.jsonl` beside the run directory: an evaluation before the first step, the share
of answers that are a word of the right kind for their question ("formed": a colour for a colour question, a
number for a count...) with a few answers verbatim, and the CPU seconds the process spent in training steps so
far (one thread: on a quiet machine, about the wall time; on a shared one the wall time is not a speed).
`--resume` continues a run. `time` measures the cost of one training step of each run's recipe
(`nanovlm.pretrained.time_steps`: the median over `--steps` after two untimed steps, wall and CPU time, on one
thread), with the load average. `collect` writes one small JSON per run, which chapter 11 reads. `ask` asks
each trained run a few questions about the first held-out picture, ShapesVQA's and others (greedy answers, in
its own chat template), and writes them to one JSON.
"""
import argparse, json, os, platform, sys, time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault('OMP_NUM_THREADS', '1')
import torch
import nanovlm.train_cli as CLI
import nanovlm.training as T
from nanovlm.pretrained import formed_rate, time_steps

RUNS = {'smollm2': ('smollm2', {}), 'tiny16': ('tiny', {'batch_size': 16}), 'tiny64': ('tiny', {})}  # `time`
N_ANSWERS = 10  # answers kept verbatim per evaluation


class _Evaluator(T.Evaluator):
    "The library's evaluator, also writing `evals.jsonl`: accuracy, formed answers, a few answers, CPU time."
    out, step, cpu_train_s = None, 0, 0.0

    def predictions(self, model):
        self.last = super().predictions(model)
        return self.last

    def __call__(self, model):
        t0, c0 = time.perf_counter(), time.process_time()
        res = super().__call__(model)
        formed = {f'formed/{t}': v for t, v in formed_rate(self.last).items()}
        rec = {'step': self.step, **res, **formed, 'cpu_train_s': round(self.cpu_train_s, 2),
               'eval_wall_s': round(time.perf_counter() - t0, 2),
               'eval_cpu_s': round(time.process_time() - c0, 2),
               'load': os.getloadavg()[0], 'answers': [{k: p[k] for k in ('question', 'prediction', 'answer')}
                                                       for p in self.last[:N_ANSWERS]]}
        with open(_evals_file(self.out), 'a') as f: f.write(json.dumps(rec) + '\n')
        return res


def _patch(out: Path):
    "Route the trainer through `_Evaluator`, count CPU time in steps, and evaluate once before step 1."
    _Evaluator.out = out
    CLI.Evaluator = _Evaluator
    step, evaluate, train = T._Loop.step, T._Loop.evaluate, CLI.train
    def timed_step(self, i, batches):
        c0 = time.process_time()
        step(self, i, batches)
        if self.evaluator is not None: self.evaluator.cpu_train_s += time.process_time() - c0
    def evaluate_at(self, i):
        self.evaluator.step = i
        return evaluate(self, i)
    def train_from_0(model, tc, *a, resume=False, **kw):
        ev = a[2] if len(a) > 2 else kw.get('evaluator')
        if resume: ev.cpu_train_s = _last_eval(out).get('cpu_train_s', 0.0)
        else: ev(model)  # step 0: the untrained towers (and, for smollm2, the pretrained decoder)
        return train(model, tc, *a, resume=resume, **kw)
    T._Loop.step, T._Loop.evaluate, CLI.train = timed_step, evaluate_at, train_from_0


def _evals_file(out: Path) -> Path:
    return out.parent / f'{out.name}.evals.jsonl'  # outside the run: --overwrite keeps it


def _last_eval(out: Path) -> dict:
    p = _evals_file(out)
    lines = p.read_text().splitlines() if p.is_file() else []
    return json.loads(lines[-1]) if lines else {}


def cmd_train(a, rest):
    out = Path(a.output_dir)
    if not a.resume: _evals_file(out).unlink(missing_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    _patch(out)
    argv = ['--preset', a.preset, '--output-dir', str(out), '--threads', '1', '--quiet', *rest]
    return CLI.train_cli(argv + (['--resume'] if a.resume else ['--overwrite']))


def cmd_time(a, rest):
    "The cost of a training step of each run's recipe, on one thread."
    torch.set_num_threads(1)
    runs = []
    for name, (preset, overrides) in RUNS.items():
        runs.append({'run': name, **time_steps(preset, a.steps, **overrides)})
        print(json.dumps(runs[-1]))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps({**_machine(), 'runs': runs}, indent=1) + '\n')
    return 0


def _cpu_name() -> str:
    "The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows."
    info = Path('/proc/cpuinfo')
    names = [l.split(':', 1)[1].strip() for l in info.read_text().splitlines()
             if l.startswith('model name')] if info.is_file() else []
    return names[0] if names else platform.processor() or platform.machine()


def _machine() -> dict:
    return {'date': datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC'), 'cpu': _cpu_name(),
            'cpus': os.cpu_count(), 'torch': torch.__version__, 'threads': torch.get_num_threads(),
            'load_avg_1_5_15': [round(x, 2) for x in os.getloadavg()]}


def cmd_collect(a, rest):
    "One JSON per run directory: its settings and every evaluation (answers kept for the first few only)."
    dest = Path(a.out)
    dest.mkdir(parents=True, exist_ok=True)
    for d in map(Path, a.runs):
        evals = [json.loads(l) for l in _evals_file(d).read_text().splitlines() if l.strip()]
        for e in evals[4:]: e.pop('answers', None)
        tc = json.loads((d / 'train_config.json').read_text())
        metrics = [json.loads(l) for l in (d / 'metrics.jsonl').read_text().splitlines() if l.strip()]
        cfg = json.loads((d / 'config.json').read_text())
        keys = ('lr_mp', 'lr_backbones', 'lr_decoder', 'batch_size', 'max_steps', 'warmup_steps', 'lr_schedule',
                'eval_interval', 'eval_samples', 'seed', 'precision')
        rec = {'run': d.name, 'train_config': {k: tc[k] for k in keys},
               'decoder': cfg['lm_model_type'] or 'tiny, from scratch',
               'train_loss': [[m['step'], round(m['loss'], 4)] for m in metrics if 'loss' in m],
               'evals': evals,
               'collected': _machine()}  # when collect ran (the runs' dates: README)
        (dest / f'{d.name}.json').write_text(json.dumps(rec, indent=None) + '\n')
        print(f'{d.name}: {len(evals)} evaluations, last at step {evals[-1]["step"]}')
    return 0


QUESTIONS = ['What color is the square?', 'How many shapes are there?', 'Describe this picture.',
             'What is the capital of France?', 'Write a poem about the sea.']  # ShapesVQA's, then others


def cmd_ask(a, rest):
    "Greedy answers of each run to `QUESTIONS` about the first held-out picture."
    from nanovlm.data import ShapesVQA
    from nanovlm.generate import load_for_inference, ask
    torch.set_num_threads(1)
    item = ShapesVQA.heldout(1)[0]
    out = {'image': 'ShapesVQA.heldout(1)[0]', 'its question': item['texts'][0], 'questions': QUESTIONS,
           'runs': {}}
    for d in map(Path, a.runs):
        model, tok, proc = load_for_inference(str(d), 'cpu')
        out['runs'][d.name] = [ask(model, tok, proc, item['images'][0], q, greedy=True, max_new_tokens=24)[0]
                               for q in QUESTIONS]
        print(d.name, out['runs'][d.name])
    Path(a.out).write_text(json.dumps({**out, **_machine()}, indent=1) + '\n')
    return 0


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest='cmd', required=True)
    t = sub.add_parser('train', help='nanovlm-train --preset NAME, with the records above')
    t.add_argument('--preset', required=True)
    t.add_argument('--output-dir', required=True)
    t.add_argument('--resume', action='store_true')
    m = sub.add_parser('time', help='the cost of one training step of each run')
    m.add_argument('--steps', type=int, default=10)
    m.add_argument('--out')
    c = sub.add_parser('collect', help='one JSON per run directory')
    c.add_argument('runs', nargs='+')
    c.add_argument('--out', required=True)
    q = sub.add_parser('ask', help="each run's answers to a few questions, ShapesVQA's and others")
    q.add_argument('runs', nargs='+')
    q.add_argument('--out', required=True)
    a, rest = ap.parse_known_args()
    sys.exit({'train': cmd_train, 'time': cmd_time, 'collect': cmd_collect, 'ask': cmd_ask}[a.cmd](a, rest))
