"""Markdown tables from the JSON files that experiments/bench_cpu.sh writes.

    python experiments/bench_summary.py experiments/results/<date>
"""
import json, sys
from pathlib import Path
from nanovlm.benchmarks import summary_table, scaling_table

d = Path(sys.argv[1])
load = lambda name: json.loads((d / name).read_text()) if (d / name).is_file() else None
for preset in ('222m', 'tiny'):
    one, two = load(f'{preset}-1thread.json'), load(f'{preset}-2threads.json')
    reps = [r for r in (one, two) if r]
    if not reps: continue
    r0 = reps[0]
    print(f"## {r0['preset']}: {r0['device_name'].split(' (')[0]}, torch {r0['torch_version']}, {r0['date']}\n")
    print(summary_table(reps) + '\n')
    if one and two: print(scaling_table(one, two) + '\n')
comp = load('222m-compiled-1thread.json')
if comp: print('## 222M, torch.compile, 1 thread\n\n' + summary_table([comp]) + '\n')
steps = load('step-breakdown.json')
if steps:
    print(f"## 222M training step, where the time goes ({steps['threads']} thread, CPU seconds)\n")
    print('| variant | forward | backward | optimizer | step | page faults |\n|---|---|---|---|---|---|')
    for v in steps['variants']:
        print(f"| {v['variant']} | {v['forward']:.2f} | {v['backward']:.2f} | {v['optimizer']:.2f} | {v['step']:.2f} | "
              f"{v['page_faults']:,.0f} |")
    print()
for f in sorted(d.glob('vs-nanovlm-v01*.json')):
    vs = json.loads(f.read_text())
    print(f"## nanovlm against nanoVLM v0.1 ({f.name}: {vs['threads']} thread, nanovlm in {vs['precision']}"
          f"{', compiled' if vs.get('compiled') else ''})\n")
    print('| measure | nanoVLM v0.1 wall s | nanovlm wall s | ratio (wall) | ratio (CPU time) |\n|---|---|---|---|---|')
    for what, r in vs['ratios'].items():
        a, b = vs['results'][f'nanoVLM v0.1 | {what}'], vs['results'][f"nanovlm | {what.split(',')[0]}"]
        print(f"| {what} | {a['wall_s']:.2f} | {b['wall_s']:.2f} | {r['wall']:.2f}x | {r['cpu']:.2f}x |")
    print()
ans = load('bf16-answers.json')
if ans:
    print('## bf16 against fp32 weights: held-out answers\n\n| variant | batch | accuracy | answers differing from fp32 |\n'
          '|---|---|---|---|')
    for r in ans['rows']:
        print(f"| {r['variant']} | {r['batch']} | {r['accuracy']:.1%} | {r['answers_differing_from_fp32']} of {r['n']} |")
