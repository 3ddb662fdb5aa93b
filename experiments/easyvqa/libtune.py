"""`nanovlm-train` itself (the library's warm-up and loop, not exp.py's) on the tuning split, and its curves.

    python experiments/easyvqa/libtune.py run NAME --seed S [nanovlm-train options]   # in the background
    python experiments/easyvqa/libtune.py collect                                     # results/lib_*.json
    python experiments/easyvqa/libtune.py table                                       # their Markdown table

`run` starts `nanovlm-train --data tune_train.jsonl --eval-data tune_val.jsonl --eval-samples 1000 --threads 1`
with the options given, in runs/easyvqa/tune/NAME (one thread: two runs share the 2-core machine, so no wall
time here is a speed; runs compare by accuracy at a step). `collect` writes each run's command and its
evaluations (every 250 steps, all 1,000 tune_val questions) to results/lib_NAME.json; a run stopped by hand
keeps the evaluations it reached.
"""
import argparse, json, os, subprocess, sys, time
from pathlib import Path
HERE, RUNS, DATA = Path(__file__).parent, Path('runs/easyvqa/tune'), Path('runs/easyvqa/data')

def run(name:str, extra:list[str]):
    out = RUNS / name
    cmd = [str(Path(sys.executable).parent / 'nanovlm-train'), '--data', str(DATA / 'tune_train.jsonl'),
           '--eval-data', str(DATA / 'tune_val.jsonl'), '--eval-samples', '1000', '--threads', '1',
           '--output-dir', str(out), '--overwrite', '--quiet', *extra]
    out.mkdir(parents=True, exist_ok=True)
    (out.parent / f'{name}.cmd.json').write_text(json.dumps({'argv': extra, 'date': time.strftime('%Y-%m-%d %H:%M')}))
    log = open(Path('runs/easyvqa/logs') / f'tune_{name}.log', 'w')
    subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, 'OMP_NUM_THREADS': '1'},
                     start_new_session=True)

def collect():
    for d in sorted(p for p in RUNS.iterdir() if (p / 'metrics.jsonl').is_file()):
        recs = [json.loads(l) for l in (d / 'metrics.jsonl').read_text().splitlines() if l.strip()]
        evals = [{k: v for k, v in r.items() if k == 'step' or k.startswith(('accuracy', 'val_loss'))}
                 for r in recs if 'accuracy' in r]
        cmd = RUNS / f'{d.name}.cmd.json'
        res = {'name': d.name, **(json.loads(cmd.read_text()) if cmd.is_file() else {}),
               'train_config': json.loads((d / 'train_config.json').read_text()), 'evals': evals}
        (HERE / 'results' / f'lib_{d.name}.json').write_text(json.dumps(res, indent=1))
        last = evals[-1] if evals else {}
        print(f"{d.name:22s} step {last.get('step')}: " + ' / '.join(
            f"{k[9:] or 'all'} {100 * v:.1f}" for k, v in last.items() if k.startswith('accuracy')))

def table(steps=(500, 1000, 1500, 2000, 2500, 3000)):
    "Markdown rows: shape / colour / yes-no at `steps`, and the first step with yes/no at 95% or more."
    print('| run | options | ' + ' | '.join(f'{s:,}' for s in steps) + ' | yes/no >= 95% from |')
    print('|---|---|' + '---|' * len(steps) + '---|')
    for p in sorted((HERE / 'results').glob('lib_*.json')):
        r = json.loads(p.read_text())
        at = {e['step']: e for e in r['evals']}
        cell = lambda e: ' / '.join(f"{100 * e[f'accuracy/{k}']:.0f}" for k in ('shape', 'color', 'yes/no'))
        bound = next((e['step'] for e in r['evals'] if e['accuracy/yes/no'] >= 0.95), None)
        print(f"| `{r['name']}` | `{' '.join(r.get('argv', []))}` | "
              + ' | '.join(cell(at[s]) if s in at else '-' for s in steps)
              + f" | {f'{bound:,}' if bound else 'not by ' + format(r['evals'][-1]['step'], ',')} |")

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('what', choices=['run', 'collect', 'table'])
    ap.add_argument('name', nargs='?')
    a, extra = ap.parse_known_args(argv)
    if a.what == 'run': run(a.name, extra)
    elif a.what == 'collect': collect()
    else: table()

if __name__ == '__main__': main()
