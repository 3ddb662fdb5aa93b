"""Which answers a run gets wrong: by question subtype, by the shape's size, the shapes confused, and a picture.

    python experiments/easyvqa/errors.py base            # reads runs/easyvqa/base/predictions.jsonl

Writes `results/errors_NAME.json` and `results/errors_NAME.png` (wrong answers to "what shape" questions, with
the image, the prediction and the reference).
"""
import argparse, json, sys
from collections import Counter, defaultdict
from pathlib import Path
from PIL import Image, ImageDraw
sys.path.insert(0, str(Path(__file__).parent))
from exp import subtype, SHAPES
from probe import shape_area

HERE = Path(__file__).parent

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('name')
    ap.add_argument('--runs', type=Path, default=Path('runs/easyvqa'))
    ap.add_argument('--images', type=Path, default=Path('runs/easyvqa/data/images/train'))
    ap.add_argument('--labels', type=Path, default=Path('runs/easyvqa/data/labels.json'))
    a = ap.parse_args(argv)
    preds = [json.loads(l) for l in (a.runs / a.name / 'predictions.jsonl').read_text().splitlines()]
    split = a.images.name
    labels = json.loads(a.labels.read_text())[split]
    area = {p['image']: shape_area(Image.open(a.images / p['image'])) for p in preds}
    bins = [0, 100, 200, 400, 800, 10**6]  # pixels of the shape
    size_of = lambda px: next(f'{lo}-{hi}px' for lo, hi in zip(bins, bins[1:]) if lo <= px < hi)
    acc = defaultdict(lambda: [0, 0])
    for p in preds:
        st = subtype(p['question'], p['answer'])
        kind = labels.get(p['image'].split('.')[0], {}).get('shape', '?')
        for key in (st, f'{st} | {size_of(area[p["image"]])}', f'{st} | {kind}'):
            acc[key][0] += p['correct']
            acc[key][1] += 1
    res = {'by': {k: {'accuracy': round(c / n, 3), 'n': n} for k, (c, n) in sorted(acc.items())},
           'shape_confusion': {f'{r} -> {q}': n for (r, q), n in sorted(Counter(
               (p['answer'], p['prediction']) for p in preds if p['answer'] in SHAPES).items())}}
    (HERE / 'results' / f'errors_{a.name}.json').write_text(json.dumps(res, indent=1))
    for k, v in res['by'].items():
        if k.startswith('shape') or k.startswith('yes/no shape'): print(f"{k:45s} {v['accuracy']:.3f} of {v['n']}")
    print(res['shape_confusion'])
    wrong = [p for p in preds if p['answer'] in SHAPES and not p['correct']][:24]
    g = Image.new('RGB', (8 * 100, 3 * 96), 'white')
    d = ImageDraw.Draw(g)
    for k, p in enumerate(wrong):
        x, y = (k % 8) * 100, (k // 8) * 96
        g.paste(Image.open(a.images / p['image']), (x + 18, y))
        d.text((x + 2, y + 66), f"said {p['prediction']}\nis {p['answer']}", fill='black')
    g.save(HERE / 'results' / f'errors_{a.name}.png')

if __name__ == '__main__': main()
