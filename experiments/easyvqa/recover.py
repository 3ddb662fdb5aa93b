"""Result files for the runs H2 stopped by hand before exp.py wrote theirs (baltype, ps4, ps8, rep3, shift6,
lrvit2e-4): their evaluations, read from `runs/easyvqa/NAME/metrics.jsonl`, and the config fields that differ
from the tiny preset, read from `runs/easyvqa/NAME/best/config.json`. Their command lines were not recorded; the
`setting` below is what the run's name and H2's notes say, marked as such.

    python experiments/easyvqa/recover.py
"""
import json
from pathlib import Path
from nanovlm.config import get_preset

HERE = Path(__file__).parent
SETTINGS = {'baltype': '--balance type', 'ps4': '--set mp_pixel_shuffle_factor=4',
            'ps8': '--set mp_pixel_shuffle_factor=8', 'rep3': '--repeat shape=3', 'shift6': '--aug shift:6',
            'lrvit2e-4': '--lr-vit 2e-4'}

def main(runs=Path('runs/easyvqa')):
    tiny = get_preset('tiny').to_dict()
    for name, setting in SETTINGS.items():
        d = runs / name
        evals = [r for r in map(json.loads, (d / 'metrics.jsonl').read_text().splitlines()) if 'accuracy' in r]
        cfg = json.loads((d / 'best' / 'config.json').read_text()) if (d / 'best' / 'config.json').exists() else {}
        diff = {k: v for k, v in cfg.items() if k in tiny and v != tiny[k] and k != 'lm_eos_token_id'}
        res = {'name': name, 'recovered': True, 'setting (from the name, not recorded)': setting,
               'config': diff, 'stopped_after': evals[-1]['step'] if evals else None,
               'evals': [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in evals]}
        (HERE / 'results' / f'{name}.json').write_text(json.dumps(res, indent=1))
        print(name, res['config'], res['stopped_after'])

if __name__ == '__main__': main()
