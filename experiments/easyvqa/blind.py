"""The question-only baseline: for each question text the most frequent training answer (else the most frequent
answer overall), scored on a held-out file, per type.

    python experiments/easyvqa/blind.py runs/easyvqa/data/tune_train.jsonl runs/easyvqa/data/tune_val.jsonl
"""
import json, sys
from collections import Counter, defaultdict

def rows(p): return [json.loads(l) for l in open(p) if l.strip()]

def main(train, held):
    by_q, overall = defaultdict(Counter), Counter()
    for r in rows(train):
        t = r['texts'][0]
        by_q[t['user']][t['assistant']] += 1
        overall[t['assistant']] += 1
    top = overall.most_common(1)[0][0]
    ok = defaultdict(list)
    for r in rows(held):
        t = r['texts'][0]
        guess = by_q[t['user']].most_common(1)[0][0] if t['user'] in by_q else top
        ok[r['type']].append(guess == t['assistant'])
        ok['overall'].append(guess == t['assistant'])
    res = {k: round(sum(v) / len(v), 4) for k, v in sorted(ok.items())}
    print(json.dumps(res))
    return res

if __name__ == '__main__': main(*sys.argv[1:3])
