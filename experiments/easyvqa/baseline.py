"""The question-only baseline (`nanovlm.train_cli.question_only_baseline`: each held-out question answered with
its most frequent training answer, no image) on the tuning split and on the test sample; `results/question_only.json`.

    python experiments/easyvqa/baseline.py
"""
import json
from pathlib import Path
from nanovlm.train_cli import question_only_baseline

HERE = Path(__file__).parent

def rows(p:Path) -> list: return [json.loads(l) for l in p.read_text().splitlines() if l.strip()]

def main(data=Path('runs/easyvqa/data')):
    res = {f'{tr} -> {ev}': {k: round(v, 4) for k, v in question_only_baseline(rows(data / f'{tr}.jsonl'),
                                                                                rows(data / f'{ev}.jsonl')).items()}
           for tr, ev in (('tune_train', 'tune_val'), ('train', 'test'))}
    (HERE / 'results' / 'question_only.json').write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))

if __name__ == '__main__': main()
