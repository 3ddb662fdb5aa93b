"""The trained checkpoint committed in pretrained/shapes-tiny (the landing page asks it questions): its files
are the ones its card lists, byte for byte, and the library's own loader gives a model that answers at least
95% of the main job's held-out ShapesVQA questions right, within a point of the accuracy the card states."""
import hashlib, re
from pathlib import Path
import pytest
import torch
from nanovlm.data import ShapesVQA, VQADataset, VQACollator
from nanovlm.generate import load_for_inference
from nanovlm.training import Evaluator

ROOT = Path(__file__).resolve().parents[1]
CKPT = ROOT / 'pretrained' / 'shapes-tiny'
INFERENCE_FILES = {'config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json',
                   'preprocessor_config.json'}


def card() -> str: return (CKPT / 'README.md').read_text(encoding='utf-8')


def card_files(text: str) -> dict:
    "{file name: (bytes, sha256)} from the card's table of files."
    rows = re.findall(r'^\| `([\w.]+)` \| ([\d,]+) \| `([0-9a-f]{64})` \|$', text, re.M)
    return {name: (int(size.replace(',', '')), sha) for name, size, sha in rows}


def card_accuracy(text: str) -> float:
    "The held-out accuracy the card states, as a fraction."
    m = re.search(r'held-out accuracy:\s+\*\*(\d+\.\d)%\*\*', text)
    assert m, 'the card states no held-out accuracy'
    return float(m.group(1)) / 100


def test_card_rules_read_what_they_should():
    "The two readers above on a made-up card: they find the rows and the figure, and nothing else."
    text = ('| file | bytes | sha256 |\n|---|---|---|\n| `config.json` | 1,234 | `' + 'a' * 64 + '` |\n'
            '| `notes.txt` | 12 | `abc` |\nheld-out accuracy: **97.5%** (500 questions)\n')
    assert card_files(text) == {'config.json': (1234, 'a' * 64)}
    assert card_accuracy(text) == 0.975


def test_the_files_are_the_ones_the_card_lists():
    files = card_files(card())
    assert set(files) == INFERENCE_FILES, 'the card lists the five files inference needs'
    assert sorted(p.name for p in CKPT.iterdir()) == sorted([*INFERENCE_FILES, 'README.md']), 'nothing else'
    for name, (size, sha) in files.items():
        data = (CKPT / name).read_bytes()
        assert len(data) == size, name
        assert hashlib.sha256(data).hexdigest() == sha, f'{name} is not the file the card lists'
    assert sum(size for size, _ in files.values()) < 10_000_000, 'a few MB, not more'


@pytest.fixture(scope='module')
def held_out_accuracy():
    "The main job's held-out evaluation (500 ShapesVQA test-split questions, greedy) of the committed model."
    torch.set_num_threads(1)
    model, tok, proc = load_for_inference(CKPT, device='cpu')  # the library's own loader, as the landing page
    held = ShapesVQA.heldout(500, img_size=model.cfg.vit_img_size)
    qtypes = [held.scene(i)[3] for i in range(len(held))]
    evaluator = Evaluator(VQADataset(held, tok, proc), VQACollator(tok, model.cfg.lm_max_length), tok, qtypes,
                          device='cpu', precision='fp32')  # fp32: the same on every CPU
    return evaluator(model)


def test_it_scores_at_least_95_percent_held_out(held_out_accuracy):
    m = held_out_accuracy
    assert m['accuracy'] >= 0.95, m
    assert all(m[f'accuracy/{t}'] >= 0.9 for t in ('color', 'shape', 'count', 'exists', 'side')), m


def test_the_card_states_its_accuracy(held_out_accuracy):
    "The card's figure is the run's own evaluation (bf16 autocast on its CPU); fp32 here may change a few."
    assert abs(held_out_accuracy['accuracy'] - card_accuracy(card())) <= 0.01, held_out_accuracy
