"""Tabulate ShapesVQA runs: accuracy per question type at every evaluation, and the steps each run took to reach
90% held-out accuracy.

    python experiments/summarize.py runs/exp/*        # one table per run, then one line per run
"""
import json, sys
from pathlib import Path

def records(d: Path) -> list[dict]:
    return [json.loads(l) for l in (d / 'metrics.jsonl').read_text().splitlines() if l.strip()]

def evals(d: Path) -> list[dict]:
    return [r for r in records(d) if 'accuracy' in r]

def first_step(ev: list[dict], key: str, level: float):
    return next((r['step'] for r in ev if r.get(key, 0) >= level), None)

def table(d: Path) -> str:
    ev = evals(d)
    types = sorted(k.split('/', 1)[1] for k in (ev[0] if ev else {}) if k.startswith('accuracy/'))
    head = '| step | overall | ' + ' | '.join(types) + ' |\n|---|---|' + '---|' * len(types)
    rows = [f"| {r['step']} | {100 * r['accuracy']:.1f}% | " + ' | '.join(f"{100 * r[f'accuracy/{t}']:.0f}%" for t in types)
            + ' |' for r in ev]
    return '\n'.join([head, *rows])

def line(d: Path) -> str:
    ev = evals(d)
    if not ev: return f'| {d.name} | no evaluation yet | | | |'
    last = ev[-1]
    worst = min((v, k.split('/', 1)[1]) for k, v in last.items() if k.startswith('accuracy/'))
    to90 = first_step(ev, 'accuracy', 0.9)
    wall = next((r['elapsed_s'] for r in reversed(records(d)) if 'elapsed_s' in r), None)
    return (f"| {d.name} | {last['step']} | {100 * last['accuracy']:.1f}% | {worst[1]} {100 * worst[0]:.0f}% | "
            f"{to90 if to90 is not None else '-'} | {wall:.0f} s |" if wall else '')

if __name__ == '__main__':
    dirs = [Path(p) for p in sys.argv[1:] if (Path(p) / 'metrics.jsonl').is_file()]
    for d in dirs: print(f'\n{d}\n{table(d)}')
    print('\n| run | steps | final | weakest type | steps to 90% | training time |\n|---|---|---|---|---|---|')
    for d in dirs: print(line(d))
