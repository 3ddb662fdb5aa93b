"""Accuracy per question type of every run in `results/`, at the steps asked (default 250 to 1,250), as the
Markdown rows of README.md's table (a dash: the run did not reach that step).

    python experiments/easyvqa/table.py [--steps 500,1000,1250] [NAME ...]
"""
import argparse, json
from pathlib import Path

HERE = Path(__file__).parent

def at(res:dict, step:int) -> dict|None: return next((e for e in res.get('evals', []) if e['step'] == step), None)

def cell(e:dict|None) -> str:
    if e is None: return '–'
    return ' / '.join(f"{100 * e[f'accuracy/{t}']:.0f}" for t in ('shape', 'color', 'yes/no'))

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('names', nargs='*')
    ap.add_argument('--steps', default='250,500,750,1000,1250')
    a = ap.parse_args(argv)
    steps = [int(s) for s in a.steps.split(',')]
    names = a.names or sorted(p.stem for p in (HERE / 'results').glob('*.json'))
    print('| run | ' + ' | '.join(f'{s:,}' for s in steps) + ' |')
    print('|---|' + '---|' * len(steps))
    for n in names:
        res = json.loads((HERE / 'results' / f'{n}.json').read_text())
        if 'evals' not in res: continue
        print(f'| {n} | ' + ' | '.join(cell(at(res, s)) for s in steps) + ' |')

if __name__ == '__main__': main()
