"""Does the LM look at the image when it answers? Attention mass on the image tokens, per question type.

    python experiments/easyvqa/lm_looks.py base shapeonly plastic        # run names under runs/easyvqa

For the tuning-validation questions: the attention of the last prompt position (where the answer is read off)
to all image tokens, summed over the image tokens, averaged over heads and questions, per decoder block and per
finer question type (exp.subtype). Writes results/lm_looks.json.
"""
import json, sys
from collections import defaultdict
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).parent))
from exp import load_rows, subtype
from inspect_vit import run_dir
from nanovlm.data import VQADataset, VQACollator, get_tokenizer, image_processor_for
from nanovlm.vision_language_model import VisionLanguageModel, image_attention

HERE = Path(__file__).parent

@torch.no_grad()
def looks(name:str, rows:list) -> dict:
    d = run_dir(name)
    model, tok = VisionLanguageModel.from_pretrained(d).eval(), get_tokenizer(d)
    ds = VQADataset(rows, tok, image_processor_for(model.cfg))
    collate = VQACollator(tok, model.cfg.lm_max_length)
    items = [ds[i] for i in range(len(ds))]
    sums = defaultdict(lambda: [0.0] * model.cfg.lm_n_blocks)
    count = defaultdict(int)
    for i in range(0, len(items), 200):
        b = collate.collate_for_generation(items[i:i + 200])
        kinds = [subtype(it['texts'][-1]['user'], a) for it, a in zip(items[i:i + 200], b['answers'])]
        for layer in range(model.cfg.lm_n_blocks):
            mass = image_attention(model, b['input_ids'], b['images'], b['attention_mask'], layer).sum((1, 2))
            for k, m in zip(kinds, mass.tolist()): sums[k][layer] += m
        for k in kinds: count[k] += 1
    return {k: [round(s / count[k], 3) for s in v] for k, v in sorted(sums.items())}

def main(names):
    torch.set_num_threads(1)
    rows, _ = load_rows(Path('runs/easyvqa/data/tune_val.jsonl'), {})
    out = {}
    for n in names:
        out[n] = looks(n, rows)
        print(n, json.dumps(out[n]))
    f = HERE / 'results' / 'lm_looks.json'
    old = json.loads(f.read_text()) if f.is_file() else {}
    f.write_text(json.dumps({**old, **out}, indent=1))

if __name__ == '__main__': main(sys.argv[1:])
