"""Curves and tables of easy-VQA runs: held-out accuracy per answer type against steps.

    python experiments/easyvqa/plot.py --out curves_tokens.png base ps4 ps8      # runs by name
    python experiments/easyvqa/plot.py --table base ps4 ps8                      # a markdown table

A run is read from `results/NAME.json` when it has finished, else from `runs/easyvqa/NAME/metrics.jsonl`.
"""
import argparse, json
from pathlib import Path
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt

HERE = Path(__file__).parent
TYPES = ('accuracy', 'accuracy/shape', 'accuracy/color', 'accuracy/yes/no')

def evals(name:str, runs:Path=Path('runs/easyvqa')) -> list[dict]:
    f = HERE / 'results' / f'{name}.json'
    if f.is_file(): return json.loads(f.read_text())['evals']
    f = runs / name / 'metrics.jsonl'
    recs = [json.loads(l) for l in f.read_text().splitlines() if l.strip()] if f.is_file() else []
    return [r for r in recs if 'accuracy' in r]

def pct(v): return f'{100 * v:.1f}%' if v is not None else '-'

def table(names:list) -> str:
    head = '| run | steps | overall | shape | colour | yes/no | train shape | best overall (step) |\n' + '|' + '---|' * 8
    rows = []
    for n in names:
        ev = evals(n)
        if not ev: continue
        last, best = ev[-1], max(ev, key=lambda r: r['accuracy'])
        rows.append(f"| {n} | {last['step']} | {pct(last['accuracy'])} | {pct(last['accuracy/shape'])} | "
                    f"{pct(last['accuracy/color'])} | {pct(last['accuracy/yes/no'])} | "
                    f"{pct(last.get('train_accuracy/shape'))} | {pct(best['accuracy'])} ({best['step']}) |")
    return '\n'.join([head, *rows])

def plot(names:list, out:Path, title:str='', labels:list|None=None):
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6), sharey=True)
    for n, lab in zip(names, labels or names):
        ev = evals(n)
        steps = [r['step'] for r in ev]
        for ax, k in zip(axes, TYPES):
            line, = ax.plot(steps, [100 * r[k] for r in ev], marker='.', label=lab)
            tk = f'train_{k}'
            if k == 'accuracy/shape' and all(tk in r for r in ev):
                ax.plot(steps, [100 * r[tk] for r in ev], ls=':', color=line.get_color())
    for ax, k in zip(axes, TYPES):
        ax.set_title({'accuracy': 'overall'}.get(k, k.split('/', 1)[1]) +
                     (' (dotted: training questions)' if k == 'accuracy/shape' else ''), fontsize=9)
        ax.set_xlabel('step')
        ax.axhline(95, color='grey', lw=0.5, ls='--')
        ax.grid(alpha=0.3)
    axes[0].set_ylabel('held-out accuracy (%)')
    axes[0].legend(fontsize=8)
    if title: fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    print(out)

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('names', nargs='+')
    ap.add_argument('--out', type=Path)
    ap.add_argument('--title', default='')
    ap.add_argument('--labels', help='comma-separated legend labels')
    ap.add_argument('--table', action='store_true')
    a = ap.parse_args()
    if a.table: print(table(a.names))
    if a.out: plot(a.names, a.out, a.title, a.labels.split(',') if a.labels else None)
