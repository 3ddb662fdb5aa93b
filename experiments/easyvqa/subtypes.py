"""Accuracy by question subtype (what a yes/no question is about, negated or not) of a run's final model.

    python experiments/easyvqa/subtypes.py runs/easyvqa/final_seed0 [--data runs/easyvqa/data/tune_val.jsonl]

Writes `results/subtypes_NAME.json`. A diagnostic: which questions a model has not learned.
"""
import argparse, json, sys
from collections import defaultdict
from pathlib import Path
import torch
HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from exp import subtype
from final import evaluator

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('run', type=Path)
    ap.add_argument('--data', type=Path, default=Path('runs/easyvqa/data/tune_val.jsonl'))
    ap.add_argument('--threads', type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    model, ev = evaluator(a.run, a.data)
    acc = defaultdict(lambda: [0, 0])
    for p in ev.predictions(model):
        for key in (subtype(p['question'], p['answer']), f"{subtype(p['question'], p['answer'])} -> {p['answer']}"):
            acc[key][0] += p['correct']; acc[key][1] += 1
    res = {'run': str(a.run), 'data': str(a.data),
           'by': {k: {'accuracy': round(c / n, 3), 'n': n} for k, (c, n) in sorted(acc.items())}}
    (HERE / 'results' / f'subtypes_{a.run.name}.json').write_text(json.dumps(res, indent=1))
    for k, v in res['by'].items(): print(f"{k:35s} {v['accuracy']:.3f} of {v['n']}")

if __name__ == '__main__': main()
