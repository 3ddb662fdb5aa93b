"""What the library does to easy-VQA before the model sees it: the tokenizer and the image processor.

    python experiments/easyvqa/checks.py        # writes results/checks.json and results/samples.png

- the word-level tokenizer `nanovlm-train` trains on a JSONL file's prompts and answers (vocabulary size, words
  mapped to <unk>, tokens per prompt, how each answer word tokenizes);
- the image processor the tiny preset uses on a 64x64 easy-VQA image: is it exactly `pixel / 127.5 - 1`, the
  same on every call (no augmentation, no resize);
- the shapes' sizes (pixels that differ from the background) per kind, and a picture of 32 training images.
"""
import json
from collections import Counter
from pathlib import Path
import numpy as np
import torch
from PIL import Image, ImageDraw
from nanovlm.config import get_preset
from nanovlm.data import train_tokenizer, format_prompt, format_answer, image_processor_for
from probe import shape_area, SHAPES, COLORS

HERE = Path(__file__).parent
DATA = Path('runs/easyvqa/data')

def main():
    rows = [json.loads(l) for l in (DATA / 'train.jsonl').read_text().splitlines()]
    texts = [s for r in rows for t in r['texts'] for s in (format_prompt(t['user']), format_answer(t['assistant']))]
    cfg = get_preset('tiny')
    tok = train_tokenizer(texts, cfg.lm_vocab_size, 'wordlevel')
    unk = tok.tok.token_to_id('<unk>')
    lens = Counter(len(tok.encode(format_prompt(r['texts'][0]['user']))) for r in rows)
    res = {'tokenizer': {'vocab_size': tok.vocab_size, 'lm_vocab_size': cfg.lm_vocab_size,
                         'texts_with_unk': sum(unk in tok.encode(t) for t in texts),
                         'prompt_tokens': dict(sorted(lens.items())), 'lm_max_length': cfg.lm_max_length,
                         'answers': {a: tok.convert_ids_to_tokens(tok.encode(format_answer(a)))
                                     for a in SHAPES + COLORS + ('yes', 'no')},
                         'example': tok.convert_ids_to_tokens(tok.encode(format_prompt(
                             'is there not a teal shape in the image?')))}}
    proc = image_processor_for(cfg)
    im = Image.open(DATA / 'images' / 'train' / '0.png')
    x = proc(im)
    ref = torch.tensor(np.asarray(im.convert('RGB')), dtype=torch.float32).permute(2, 0, 1) / 127.5 - 1
    res['image_processor'] = {'repr': repr(proc), 'input_size': list(im.size), 'output_shape': list(x.shape),
                              'equals_pixel_over_127.5_minus_1': bool(torch.allclose(x, ref, atol=1e-6)),
                              'same_on_every_call': bool(torch.equal(proc(im), proc(im)))}
    labels = json.loads((DATA / 'labels.json').read_text())['train']
    areas = {}
    for i, d in labels.items():
        if 'shape' in d: areas.setdefault(d['shape'], []).append(shape_area(Image.open(DATA / 'images' / 'train' / f'{i}.png')))
    res['shape_area_px'] = {k: {'min': int(min(v)), 'p10': int(np.percentile(v, 10)), 'median': int(np.median(v)),
                                'p90': int(np.percentile(v, 90)), 'max': int(max(v)), 'n': len(v)}
                            for k, v in sorted(areas.items())}
    (HERE / 'results' / 'checks.json').write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    g = Image.new('RGB', (8 * 72, 4 * 80), 'white')
    d = ImageDraw.Draw(g)
    for k in range(32):
        x0, y0 = (k % 8) * 72, (k // 8) * 80
        g.paste(Image.open(DATA / 'images' / 'train' / f'{k}.png'), (x0 + 4, y0))
        lab = labels.get(str(k), {})
        d.text((x0 + 4, y0 + 66), f"{lab.get('color', '?')} {lab.get('shape', '?')}", fill='black')
    g.save(HERE / 'results' / 'samples.png')

if __name__ == '__main__': main()
