"""The final easy-VQA number (issue 27): `nanovlm-train --data train.jsonl --eval-data test.jsonl` with the defaults,
one seed after another, each run alone on the machine; then each run's final model (its last step, not the
checkpoint that scored best on the held-out sample) answers all 1,000 test questions.

    python experiments/easyvqa/final.py --seeds 0 1 2

The runs go to runs/easyvqa/final_seedS; results/final_seedS.json records the command, the machine, the load,
the run's wall time (the whole `nanovlm-train` process, data and vision warm-up included) and the accuracy per
type on the 1,000 test questions; `--table` prints the Markdown table of README.md from those files.
"""
import argparse, json, os, subprocess, sys, time
from pathlib import Path
import torch
HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from exp import load_rows, machine

def evaluator(run:Path, test:Path):
    "The model in run directory `run`, and an `Evaluator` of every row of `test` with the run's tokenizer."
    from nanovlm.data import VQADataset, VQACollator, get_tokenizer, load_image_processor
    from nanovlm.training import Evaluator
    from nanovlm.vision_language_model import VisionLanguageModel
    model = VisionLanguageModel.from_pretrained(str(run)).eval()
    tok, proc = get_tokenizer(str(run)), load_image_processor(run)
    rows, types = load_rows(test, {})
    return model, Evaluator(VQADataset(rows, tok, proc), VQACollator(tok, model.cfg.lm_max_length), tok, types)

def evaluate(run:Path, test:Path) -> dict:
    "Accuracy per type of the model in run directory `run` on every row of `test`."
    model, ev = evaluator(run, test)
    return {k: round(v, 4) for k, v in ev(model).items() if k.startswith(('accuracy', 'val_loss'))}

def table():
    rows = [json.loads(p.read_text()) for p in sorted((HERE / 'results').glob('final_seed*.json'))]
    print('| seed | overall | yes/no | shape | colour | minutes |\n|---|---|---|---|---|---|')
    for r in rows:
        t = r['test']
        print(f"| {r['seed']} | {100 * t['accuracy']:.1f}% | {100 * t['accuracy/yes/no']:.1f}% | "
              f"{100 * t['accuracy/shape']:.1f}% | {100 * t['accuracy/color']:.1f}% | {r['wall_s'] / 60:.1f} |")

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seeds', type=int, nargs='*', default=[0, 1, 2])
    ap.add_argument('--data-dir', type=Path, default=Path('runs/easyvqa/data'))
    ap.add_argument('--table', action='store_true', help='only print the table of the results so far')
    a = ap.parse_args(argv)
    if a.table: return table()
    for seed in a.seeds:
        out = Path(f'runs/easyvqa/final_seed{seed}')
        cmd = [str(Path(sys.executable).parent / 'nanovlm-train'), '--data', str(a.data_dir / 'train.jsonl'),
               '--eval-data', str(a.data_dir / 'test.jsonl'), '--seed', str(seed), '--output-dir', str(out),
               '--overwrite', '--quiet']
        load0, t0 = os.getloadavg(), time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode: sys.exit(f"seed {seed}: nanovlm-train failed:\n{proc.stderr}")
        res = {'seed': seed, 'command': ' '.join(cmd), 'date': time.strftime('%Y-%m-%d %H:%M'), 'machine': machine(),
               'loadavg_start': load0, 'loadavg_end': os.getloadavg(), 'wall_s': round(wall, 1),
               'metrics': json.loads((out / 'metrics.json').read_text()),
               'test': evaluate(out, a.data_dir / 'test.jsonl'), 'stdout_tail': proc.stdout.splitlines()[-20:]}
        (HERE / 'results' / f'final_seed{seed}.json').write_text(json.dumps(res, indent=1))
        print(seed, res['wall_s'], res['test'], flush=True)
    table()

if __name__ == '__main__': main()
