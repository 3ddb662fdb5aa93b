"""Step time of an easy-VQA configuration against the ShapesVQA main job's, measured back to back in one process.

    python experiments/easyvqa/timing.py --threads 2 --blocks 6 --block-steps 10 [--set mp_pixel_shuffle_factor=1]

The machine these experiments ran on was shared, so absolute step times say little; the ratio of two step times
measured in alternating blocks of steps, in one process, under the same load, is what carries over. A quiet-machine
estimate is then that ratio times the main job's quiet step time (README: 3,000 steps in 270 s, 2 threads).
Each block: `--block-steps` optimizer steps of batch 64 (bf16 autocast where native, as `nanovlm-train`), the
model and the optimizer of each side kept between blocks; the first block of each side is a warm-up, not counted.
"""
import argparse, json, os, sys, time
from dataclasses import replace
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).parent))
from exp import kv, load_rows, Augment
from nanovlm.config import get_preset
from nanovlm.data import (VQADataset, VQACollator, ShapesVQA, shapes_tokenizer, train_tokenizer, format_prompt,
                          format_answer, image_processor_for)
from nanovlm.training import (train_config_for, make_optimizer, accumulate_gradients, precision_context,
                              SHAPES_DESCRIBE, SHAPES_DESCRIBE_ORDERS)
from nanovlm.vision_language_model import VisionLanguageModel

HERE = Path(__file__).parent

class Side:
    def __init__(self, cfg, tc, ds, tok):
        cfg = replace(cfg, lm_eos_token_id=tok.eos_token_id)
        torch.manual_seed(0)
        self.model, self.ds = VisionLanguageModel(cfg), ds
        self.opt = make_optimizer(self.model, tc)
        self.collate, self.amp, self.i, self.bs = VQACollator(tok, cfg.lm_max_length), precision_context('cpu', 'auto'), 0, tc.batch_size
        self.times, self.tokens = [], 0

    def block(self, n:int, count:bool):
        t0, tok = time.perf_counter(), 0
        for _ in range(n):
            idx = [(self.i + j) % len(self.ds) for j in range(self.bs)]
            self.i += self.bs
            b = self.collate([self.ds[j] for j in idx])
            accumulate_gradients(self.model, [b], 'cpu', self.amp)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            tok += int(b['attention_mask'].sum())
        if count:
            self.times.append((time.perf_counter() - t0) / n)
            self.tokens += tok

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data-dir', type=Path, default=Path('runs/easyvqa/data'))
    ap.add_argument('--train', default='train.jsonl')
    ap.add_argument('--set', action='append', default=[], metavar='FIELD=VALUE', help='easy-VQA side only')
    ap.add_argument('--aug', default='')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--blocks', type=int, default=6)
    ap.add_argument('--block-steps', type=int, default=10)
    ap.add_argument('--name', default='timing')
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    tc = train_config_for('tiny')
    base = get_preset('tiny')
    stok = shapes_tokenizer(base.lm_vocab_size)
    shapes = VQADataset(ShapesVQA('train', length=10**6, img_size=64, describe=SHAPES_DESCRIBE,
                                  describe_orders=SHAPES_DESCRIBE_ORDERS), stok, image_processor_for(base))
    ecfg = get_preset('tiny', **kv(a.set))
    rows, _ = load_rows(a.data_dir / a.train, {})
    import random
    random.Random(0).shuffle(rows)
    etok = train_tokenizer([s for r in rows for t in r['texts'] for s in (format_prompt(t['user']),
                            format_answer(t['assistant']))], ecfg.lm_vocab_size, 'wordlevel')
    proc = image_processor_for(ecfg)
    easy = VQADataset(rows, etok, Augment(proc, a.aug) if a.aug else proc)
    sides = {'shapes': Side(base, tc, shapes, stok), 'easyvqa': Side(ecfg, tc, easy, etok)}
    load0 = os.getloadavg()
    for k in range(a.blocks + 1):
        for s in sides.values(): s.block(a.block_steps, count=k > 0)
    med = lambda v: sorted(v)[len(v) // 2]
    res = {'args': {k: str(v) for k, v in vars(a).items()}, 'date': time.strftime('%Y-%m-%d %H:%M'),
           'loadavg_start': load0, 'loadavg_end': os.getloadavg(),
           **{f'{n}_s_per_step': [round(t, 4) for t in s.times] for n, s in sides.items()},
           **{f'{n}_tokens_per_step': s.tokens / (a.blocks * a.block_steps) for n, s in sides.items()},
           'ratio_median': round(med([e / s for e, s in zip(sides['easyvqa'].times, sides['shapes'].times)]), 3)}
    res['quiet_estimate_s_per_step'] = round(res['ratio_median'] * 270 / 3000, 4)
    (HERE / 'results').mkdir(exist_ok=True)
    (HERE / 'results' / f'{a.name}.json').write_text(json.dumps(res, indent=1))
    print(json.dumps(res))

if __name__ == '__main__': main()
