"""Reliability battery (issue 16): every bad input a real user produces, fed in on purpose.

Each test asserts the exact behaviour: one line naming the file, line or key (and the fix), a non-zero exit status
for the commands, no traceback, and nothing on disk changed or lost (a refused or failed run leaves the old run
directory byte-identical: every file is hashed before and after).
"""
import hashlib, io, json, os, pickle, re, shutil, signal, subprocess, sys, types, importlib.machinery
from pathlib import Path
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file, load_file

import nanovlm.training as T
import nanovlm.train_cli as CLI
import nanovlm.vision_language_model as V
from nanovlm.config import VLMConfig, TrainConfig, get_preset
from nanovlm.data import (EOS_TOKEN, VQADataset, VQACollator, ShapesVQA, get_image_processor, get_tokenizer, read_jsonl,
                          image_processor_for, load_image_processor,
                          shapes_tokenizer, train_tokenizer, upright)
from nanovlm.generate import generate_cli, read_image, load_for_inference, ask
from nanovlm.vision_language_model import VisionLanguageModel, load_state_strict

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)
FAST = ['--steps', '4', '--batch-size', '8', '--eval-samples', '10', '--eval-every', '0', '--threads', '1', '--quiet']
ORIENTATION = 0x0112


def exe(name: str, module: str) -> list:
    "The installed console script beside this Python (CI installs the package), else `python -m module`."
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, '-m', module]


TRAIN, GENERATE = exe('nanovlm-train', 'nanovlm.train_cli'), exe('nanovlm-generate', 'nanovlm.generate')


def run(cmd, env=None, timeout=300):
    env = {**{k: v for k, v in os.environ.items() if k != 'NANOVLM_DEBUG'}, 'PYTHONPATH': str(ROOT),
           'OMP_NUM_THREADS': '1', **(env or {})}
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, cwd=os.getcwd(), timeout=timeout)


pytestmark = pytest.mark.usefixtures('users_tree')  # every test in a directory of its own (conftest.py)


def one_line_error(r, code=1) -> str:
    "The single stderr line of a command that failed with `code`, checked: no traceback, nothing on stdout."
    assert r.returncode == code, (r.returncode, r.stdout[-2000:], r.stderr[-4000:])
    assert 'Traceback' not in r.stderr, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and 'error' in lines[0], r.stderr
    return lines[0]


def tree(d: Path) -> dict:
    "Every file under `d` (hidden ones included) and the hash of its bytes: the directory, byte for byte."
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(d).rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def old_run(tmp_path_factory):
    "A finished `nanovlm-train` run: the old run directory that later runs must not lose."
    d = tmp_path_factory.mktemp('old') / 'run'
    r = run([*TRAIN, *FAST, '--eval-every', '4', '--output-dir', d])
    assert r.returncode == 0, r.stderr[-3000:]
    assert {'best', 'examples', 'metrics.json', 'metrics.jsonl', 'model.safetensors'} <= set(os.listdir(d))
    return d


@pytest.fixture
def old(old_run, tmp_path):
    "A fresh copy of the old run for one test, and its hashes."
    d = shutil.copytree(old_run, tmp_path / 'old')
    return d, tree(d)


# ================================================================ 1. tied weights

def test_tied_weights_that_differ_are_refused(old, capsys):
    d, _ = old
    sd = load_file(str(d / 'model.safetensors'))
    assert ('decoder.head.weight' in sd) != ('decoder.token_embedding.weight' in sd)  # saved once, under one name
    name = next(k for k in ('decoder.head.weight', 'decoder.token_embedding.weight') if k in sd)
    other = ({'decoder.head.weight', 'decoder.token_embedding.weight'} - {name}).pop()
    model = VisionLanguageModel(VLMConfig.from_json(d / 'config.json'))
    load_state_strict(model, {**sd, other: sd[name].clone()})                      # both names, equal: fine
    save_file({**sd, other: sd[name] + 1}, str(d / 'model.safetensors'), metadata={'format': 'pt'})
    with pytest.raises(ValueError, match='holds both decoder.head.weight and decoder.token_embedding.weight with different values'):
        VisionLanguageModel.from_pretrained(d)
    assert generate_cli(['--checkpoint', str(d), '--image', str(d / 'examples' / '0.png'), '--prompt', 'x']) == 1
    err = capsys.readouterr().err.strip()
    assert '\n' not in err and 'model.safetensors holds both decoder.head.weight and decoder.token_embedding.weight' in err


# ================================================================ 2. non-finite settings

@pytest.mark.parametrize('field', ['vit_ln_eps', 'lm_rms_eps', 'lm_attn_scaling', 'vit_dropout', 'lm_dropout'])
@pytest.mark.parametrize('value', [float('nan'), float('inf'), float('-inf')])
def test_vlm_config_rejects_non_finite(field, value):
    with pytest.raises(ValueError, match=rf'VLMConfig.{field} must be a finite number, got {value!r}'):
        VLMConfig(**{field: value})


@pytest.mark.parametrize('field', ['lr_mp', 'lr_backbones', 'weight_decay', 'max_grad_norm', 'min_lr_ratio'])
@pytest.mark.parametrize('value', [float('nan'), float('inf')])
def test_train_config_rejects_non_finite(field, value):
    with pytest.raises(ValueError, match=rf'TrainConfig.{field} must be a finite number, got {value!r}'):
        TrainConfig(**{field: value})


@pytest.mark.parametrize('option, field', [('--lr-mp', 'lr_mp'), ('--lr-backbones', 'lr_backbones'),
                                           ('--weight-decay', 'weight_decay')])
@pytest.mark.parametrize('value', ['nan', 'inf'])
def test_non_finite_options_exit_2_before_any_work(tmp_path, capsys, option, field, value):
    with pytest.raises(SystemExit) as e: CLI.train_cli([*FAST, option, value, '--output-dir', str(tmp_path / 'x')])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f'TrainConfig.{field} must be a finite number, got {value}' in err, err
    assert not (tmp_path / 'x').exists()


def test_lr_nan_real_process_saves_nothing(tmp_path):
    "The issue's `nanovlm-train --steps 1 --lr-mp nan`: it exited 0 and saved non-finite weights."
    r = run([*TRAIN, '--steps', '1', '--lr-mp', 'nan', '--threads', '1', '--quiet', '--output-dir', tmp_path / 'x'])
    assert r.returncode == 2 and 'lr_mp must be a finite number, got nan' in r.stderr, r.stderr
    assert 'Traceback' not in r.stderr and not (tmp_path / 'x').exists()


def test_config_json_with_nan_is_named(old, capsys):
    d, _ = old
    c = json.loads((d / 'config.json').read_text()); c['lm_rms_eps'] = float('nan')
    (d / 'config.json').write_text(json.dumps(c))                       # json writes and reads NaN
    assert generate_cli(['--checkpoint', str(d), '--image', str(d / 'examples' / '0.png'), '--prompt', 'x']) == 1
    err = capsys.readouterr().err
    assert 'config.json: VLMConfig.lm_rms_eps must be a finite number, got nan' in err, err


def test_nan_normalisation_is_refused(tmp_path):
    with pytest.raises(ValueError, match='normalize std must be positive'): get_image_processor(8, (0.5, float('nan')))
    with pytest.raises(ValueError, match='normalize std must be positive'): get_image_processor(8, (float('nan'), 0.5))
    (tmp_path / 'preprocessor_config.json').write_text('{"size": 8, "do_normalize": true, "image_mean": [NaN, 0.5, 0.5], '
                                                       '"image_std": [0.5, 0.5, 0.5]}')
    with pytest.raises(ValueError, match='normalize std must be positive'): load_image_processor(tmp_path)


def small(n=512):
    cfg = get_preset('tiny', vit_n_blocks=1, lm_n_blocks=1)
    tok = shapes_tokenizer(cfg.lm_vocab_size)
    return cfg, tok, VQADataset(ShapesVQA('train', length=n), tok, image_processor_for(cfg)), VQACollator(tok, cfg.lm_max_length)


def test_weights_are_checked_before_every_save(tmp_path):
    "A backward pass that overflows makes the weights NaN while the step's loss (computed before) is finite."
    cfg, tok, ds, col = small()
    T.seed_everything(0)
    m = VisionLanguageModel(cfg)
    m.MP.proj.weight.register_hook(lambda g: g * float('inf'))
    tc = TrainConfig(batch_size=8, max_steps=1, warmup_steps=0, output_dir=str(tmp_path / 'run'))
    with pytest.raises(T.NonFiniteLossError, match='the weights became NaN or infinite at step 1.*no checkpoint was written'):
        T.train(m, tc, ds, col, progress=False)
    assert not (tmp_path / 'run' / 'model.safetensors').exists()


def test_validation_loss_is_checked_before_saving_best(tmp_path):
    cfg, tok, ds, col = small()
    T.seed_everything(0)
    calls = []
    def evaluator(model):
        calls.append(1)
        return {'val_loss': 1.0, 'accuracy': 0.5} if len(calls) == 1 else {'val_loss': float('nan'), 'accuracy': 0.9}
    tc = TrainConfig(batch_size=8, max_steps=4, warmup_steps=0, eval_interval=2, save_every=2, output_dir=str(tmp_path))
    with pytest.raises(T.NonFiniteLossError, match=r'the validation loss became NaN or infinite at step 4.*\(step 2\)'):
        T.train(VisionLanguageModel(cfg), tc, ds, col, evaluator, progress=False)
    assert json.loads((tmp_path / 'best' / 'best.json').read_text())['step'] == 2        # not the NaN evaluation's
    assert json.loads((tmp_path / 'trainer_state.json').read_text())['step'] == 2


# ================================================================ 3. an old run is never lost

def test_new_run_into_a_run_directory_is_refused(old):
    d, before = old
    line = one_line_error(run([*TRAIN, *FAST, '--output-dir', d]), code=2)
    assert f'output directory {d} is not empty' in line and '--resume' in line and '--overwrite' in line, line
    assert tree(d) == before


def test_failing_overwrite_leaves_the_old_run_byte_identical(old):
    "The loss turns NaN before the new run's first checkpoint: the run fails, and the old run is as it was."
    d, before = old
    r = run([*TRAIN, *FAST, '--steps', '6', '--lr-mp', '1e12', '--lr-backbones', '1e12', '--warmup', '0', '--log-every', '2',
             '--overwrite', '--output-dir', d])
    assert 'loss became NaN or infinite' in one_line_error(r)
    assert tree(d) == before                                          # no .pending, no .staging, no old file touched


def test_failing_overwrite_in_process_leaves_the_old_run_byte_identical(old):
    "Data that breaks mid-run (before the first checkpoint) in the library: same guarantee."
    d, before = old
    cfg, tok, ds, col = small()
    class Breaks(torch.utils.data.Dataset):
        def __len__(self): return len(ds)
        def __getitem__(self, i):
            if i % 7 == 3: raise ValueError('rows.jsonl line 4: cannot decode image cat.png')
            return ds[i]
    tc = TrainConfig(batch_size=8, max_steps=50, save_every=40, log_interval=1, output_dir=str(d))
    with pytest.raises(ValueError, match='line 4: cannot decode'):
        T.train(VisionLanguageModel(cfg), tc, Breaks(), col, progress=False, overwrite=True)
    assert tree(d) == before


def test_overwrite_replaces_the_old_run_whole(old):
    d, before = old
    r = run([*TRAIN, *FAST, '--steps', '3', '--log-every', '1', '--seed', '7', '--overwrite', '--output-dir', d])
    assert r.returncode == 0, r.stderr[-3000:]
    assert {'.pending', '.staging'}.isdisjoint(os.listdir(d))
    assert [json.loads(l)['step'] for l in (d / 'metrics.jsonl').read_text().splitlines()] == [1, 2, 3, 3]  # the new run's only
    assert json.loads((d / 'best' / 'best.json').read_text())['step'] == 3
    assert json.loads((d / 'train_config.json').read_text())['seed'] == 7
    assert tree(d)['model.safetensors'] != before['model.safetensors']


def test_overwrite_removes_old_files_in_its_first_commit(old):
    "A new run that writes no tokenizer, no best/ and no examples: the old run's go, in the same commit as its checkpoint."
    d, before = old
    cfg, tok, ds, col = small()
    tc = TrainConfig(batch_size=8, max_steps=2, save_every=1, log_interval=1, output_dir=str(d))
    T.train(VisionLanguageModel(cfg), tc, ds, col, progress=False, overwrite=True, stop_after=1)
    assert sorted(os.listdir(d)) == ['config.json', 'metrics.jsonl', 'model.safetensors', 'train_config.json',
                                     'trainer_state.json', 'trainer_state.safetensors']
    assert [json.loads(l)['step'] for l in (d / 'metrics.jsonl').read_text().splitlines()] == [1]


def test_killed_overwrite_keeps_the_old_run(old):
    "SIGKILL (no cleanup at all) before the first checkpoint: every old file intact, the old run still resumes."
    d, before = old
    r = run([sys.executable, ROOT / 'tests' / 'kill_after.py', '2', *FAST, '--overwrite', '--output-dir', d])
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-2000:])
    after = tree(d)
    assert {k: v for k, v in after.items() if not k.startswith('.pending') and k != '.lock'} == before  # the new run's scratch
    r = run([*TRAIN, '--resume', '--output-dir', d, '--threads', '1', '--quiet'])
    assert r.returncode == 0 and 'held-out accuracy' in r.stdout, r.stderr[-2000:]
    assert json.loads((d / 'trainer_state.json').read_text())['step'] == 4


def test_output_dir_that_is_a_file(tmp_path):
    f = tmp_path / 'notes.txt'; f.write_text('mine')
    line = one_line_error(run([*TRAIN, *FAST, '--output-dir', f]), code=2)
    assert f'output directory {f} is a file, not a directory' in line
    assert f.read_text() == 'mine'


def test_resume_and_overwrite_together(tmp_path, capsys):
    with pytest.raises(SystemExit) as e: CLI.train_cli([*FAST, '--resume', '--overwrite', '--output-dir', str(tmp_path)])
    assert e.value.code == 2 and '--resume continues the run' in capsys.readouterr().err


# ================================================================ 4. EXIF orientation

@pytest.fixture(scope='module')
def phone_photo(tmp_path_factory):
    "A 'portrait' photo stored as landscape pixels with EXIF orientation 6, and what a viewer shows."
    d = tmp_path_factory.mktemp('photo')
    stored = Image.new('RGB', (64, 32), 'red'); ImageDraw.Draw(stored).rectangle([32, 0, 63, 31], fill='blue')
    seen = stored.transpose(Image.Transpose.ROTATE_270)
    exif = Image.Exif(); exif[ORIENTATION] = 6
    stored.save(d / 'phone.png', exif=exif)
    stored.save(d / 'phone.jpg', exif=exif, quality=95)
    return d, stored, seen


def test_exif_orientation_is_applied_everywhere(phone_photo):
    d, stored, seen = phone_photo
    proc = get_image_processor(32)
    assert not torch.equal(proc(stored), proc(seen))                  # the test image can tell them apart
    assert torch.equal(proc(Image.open(d / 'phone.png')), proc(seen))  # the image processor
    assert np.array_equal(np.asarray(read_image(d / 'phone.png')), np.asarray(seen))  # nanovlm-generate's reader
    assert read_image(d / 'phone.jpg').size == seen.size
    (d / 'rows.jsonl').write_text(json.dumps({'image': 'phone.png', 'texts': [{'user': 'Top?', 'assistant': 'red'}]}) + '\n')
    tok = shapes_tokenizer()
    assert torch.equal(VQADataset.from_jsonl(d / 'rows.jsonl', tok, proc)[0]['image'], proc(seen))  # JSONL datasets
    assert upright(upright(Image.open(d / 'phone.png'))).size == seen.size                      # applied once only


def test_generate_reads_the_photo_upright(old, phone_photo):
    d, _ = old
    p, _, seen = phone_photo
    seen.save(d / 'seen.png')
    a = run([*GENERATE, '--checkpoint', d, '--image', p / 'phone.png', '--prompt', 'What color?', '--generations', '2',
             '--seed', '0', '--max-new-tokens', '4'])
    b = run([*GENERATE, '--checkpoint', d, '--image', d / 'seen.png', '--prompt', 'What color?', '--generations', '2',
             '--seed', '0', '--max-new-tokens', '4'])
    assert a.returncode == b.returncode == 0 and a.stdout == b.stdout, (a.stderr, b.stderr)


# ================================================================ 5. special tokens in user text

def test_special_tokens_in_user_text_are_text(old, tmp_path):
    d, _ = old
    texts = ['Is there a <|endoftext|> circle?', '<|endoftext|>', 'a<|endoftext|>b']
    hub_style = train_tokenizer(['Question: Is there a circle? Answer: yes'] * 20, 300, 'bpe')
    hub_style.tok.add_special_tokens(['<|im_start|>'])
    hub_style.save(tmp_path / 'tok')
    for tok in (shapes_tokenizer(), get_tokenizer(d), hub_style, get_tokenizer(tmp_path / 'tok')):
        specials = {tok.eos_token_id, tok.tok.token_to_id('<|im_start|>')} - {None}
        for t in texts + ['<|im_start|>user']:
            assert not specials & set(tok.encode(t)), (tok, t)
    assert get_tokenizer(tmp_path / 'tok').decode(get_tokenizer(tmp_path / 'tok').encode(texts[0])) == texts[0]
    model, tok, proc = load_for_inference(d, device='cpu')
    seen = []
    real = model.generate
    model.generate = lambda ids, *a, **k: seen.append(ids) or real(ids, *a, **k)
    ask(model, tok, proc, d / 'examples' / '0.png', 'Is there a <|endoftext|> circle?', max_new_tokens=2, greedy=True)
    assert tok.eos_token_id not in seen[0].tolist()[0]                 # the prompt holds no EOS


# ================================================================ JSONL data: one line per bad input

def _rows_file(d: Path, bad: str|bytes) -> Path:
    Image.new('RGB', (16, 16), 'white').save(d / 'ok.png')
    (d / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + bytes(100))
    good = json.dumps({'image': 'ok.png', 'texts': [{'user': 'Is there a circle?', 'assistant': 'no'}]})
    body = ('\n'.join([good] * 3) + '\n').encode() + (bad if isinstance(bad, bytes) else bad.encode()) + b'\n'
    (d / 'rows.jsonl').write_bytes(body + ('\n'.join([good] * 16) + '\n').encode())
    return d / 'rows.jsonl'


GOOD_TEXTS = [{'user': 'Is there a circle?', 'assistant': 'no'}]
BAD_LINES = {  # what is on line 4: (the line, what the message says after 'rows.jsonl line 4')
    'malformed JSON': ('{"image": "ok.png", "texts": [', ': not valid JSON'),
    'not an object': ('["ok.png", "no"]', ': expected a JSON object, got list'),
    'no texts': (json.dumps({'image': 'ok.png'}), ": the row has no 'texts'"),
    'no user/assistant': (json.dumps({'image': 'ok.png', 'texts': [{'question': 'Is there?'}]}),
                          " turn 0: expected {'user': str, 'assistant': str}"),
    'texts not a list': (json.dumps({'image': 'ok.png', 'texts': 'Is there a circle? no'}), ": 'texts' must be a non-empty list"),
    'empty answer': (json.dumps({'image': 'ok.png', 'texts': [{'user': 'Is there?', 'assistant': ' '}]}), ' turn 0: empty answer'),
    'no image': (json.dumps({'texts': GOOD_TEXTS}), ': the row has no image'),
    'image not a path': (json.dumps({'image': 7, 'texts': GOOD_TEXTS}), ": 'image' must be a path string, got 7"),
    'missing image file': (json.dumps({'image': 'gone.png', 'texts': GOOD_TEXTS}), ': image file '),
    'corrupt image file': (json.dumps({'image': 'broken.png', 'texts': GOOD_TEXTS}), ': cannot decode image '),
    'not UTF-8': (b'\xff\xfe{"image": "ok.png"}', ': not UTF-8 text'),
}


@pytest.mark.parametrize('case', list(BAD_LINES))
def test_train_on_a_bad_jsonl_line_is_one_line(tmp_path, capsys, case):
    line, says = BAD_LINES[case]
    rows = _rows_file(tmp_path, line)
    out = tmp_path / 'run'
    assert CLI.train_cli([*FAST, '--data', str(rows), '--output-dir', str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'Traceback' not in err, err
    assert err.startswith(f'nanovlm-train: error: {rows} line 4{says}'), err
    assert not out.exists()                                            # refused before anything was written


@pytest.mark.parametrize('body', ['', '\n\n  \n'])
def test_train_on_an_empty_jsonl_is_one_line(tmp_path, capsys, body):
    (tmp_path / 'rows.jsonl').write_text(body)
    assert CLI.train_cli([*FAST, '--data', str(tmp_path / 'rows.jsonl'), '--output-dir', str(tmp_path / 'run')]) == 1
    err = capsys.readouterr().err
    assert err == f'nanovlm-train: error: {tmp_path / "rows.jsonl"}: no usable rows (the file is empty)\n'


def test_bad_jsonl_real_process_and_debug(tmp_path):
    rows = _rows_file(tmp_path, BAD_LINES['no texts'][0])
    line = one_line_error(run([*TRAIN, *FAST, '--data', rows, '--output-dir', tmp_path / 'run']))
    assert f"{rows} line 4: the row has no 'texts'" in line
    r = run([*TRAIN, *FAST, '--data', rows, '--output-dir', tmp_path / 'run', '--debug'])
    assert r.returncode == 1 and 'Traceback' in r.stderr and "line 4: the row has no 'texts'" in r.stderr
    r = run([*TRAIN, *FAST, '--data', rows, '--output-dir', tmp_path / 'run'], env={'NANOVLM_DEBUG': '1'})
    assert r.returncode == 1 and 'Traceback' in r.stderr


def test_skip_bad_rows_says_how_many_and_which(tmp_path):
    rows = _rows_file(tmp_path, BAD_LINES['missing image file'][0])
    with open(rows, 'a') as f: f.write('not json\n')
    r = run([*TRAIN, *FAST, '--data', rows, '--output-dir', tmp_path / 'run', '--skip-bad-rows'])
    assert r.returncode == 0, r.stderr[-3000:]
    assert f'skipped 2 bad row(s) of {rows}' in r.stderr
    assert f'{rows} line 4: image file' in r.stderr and f'{rows} line 21: not valid JSON' in r.stderr
    skipped = json.loads((tmp_path / 'run' / 'metrics.json').read_text())['skipped_rows']
    assert [re.search(r'line (\d+)', s).group(1) for s in skipped] == ['4', '21']
    assert json.loads((tmp_path / 'run' / 'train_config.json').read_text())['skip_bad_rows'] is True


def test_every_bad_line_is_listed_when_skipping(tmp_path):
    rows = _rows_file(tmp_path, BAD_LINES['no texts'][0])
    with open(rows, 'ab') as f:
        for line, _ in BAD_LINES.values(): f.write((line if isinstance(line, bytes) else line.encode()) + b'\n')
    kept, skipped = read_jsonl(rows, on_error='skip')
    assert len(kept) == 19 and len(skipped) == 1 + len(BAD_LINES)
    assert [int(re.search(r'line (\d+)', s).group(1)) for s in skipped] == [4] + list(range(21, 21 + len(BAD_LINES)))


# ================================================================ the trainer's other errors: one line

def test_damaged_resume_files_are_one_line(old):
    d, _ = old
    (d / 'trainer_state.json').write_text('{"step": 4, "optimizer": ')
    line = one_line_error(run([*TRAIN, '--resume', '--output-dir', d, '--threads', '1', '--quiet']))
    assert f"{d / 'trainer_state.json'} is damaged" in line
    w = d / 'model.safetensors'; w.write_bytes(w.read_bytes()[:1000])
    line = one_line_error(run([*TRAIN, '--resume', '--output-dir', d, '--threads', '1', '--quiet']))
    assert f'{w} is not a valid safetensors file (truncated, or a pickle?)' in line


def test_damaged_train_config_is_exit_2(old):
    d, before = old
    c = json.loads((d / 'train_config.json').read_text()); c['lr_mp'] = float('nan')
    (d / 'train_config.json').write_text(json.dumps(c))
    line = one_line_error(run([*TRAIN, '--resume', '--output-dir', d, '--threads', '1', '--quiet']), code=2)
    assert 'train_config.json: TrainConfig.lr_mp must be a finite number, got nan' in line


# ================================================================ nanovlm-generate

class _Trap:
    "Unpickling this creates the file `path`: proof that a pickle was (or was not) loaded."
    def __init__(self, path): self.path = path
    def __reduce__(self): return (Path.touch, (self.path,))


@pytest.mark.parametrize('damage', ['truncated', 'pickle', 'torch.save', 'empty'])
def test_generate_with_a_weights_file_that_is_not_one(old, tmp_path, damage):
    d, _ = old
    w, trap = d / 'model.safetensors', tmp_path / 'unpickled'
    if damage == 'truncated': w.write_bytes(w.read_bytes()[:len(w.read_bytes()) // 2])
    elif damage == 'pickle': w.write_bytes(pickle.dumps({'decoder.head.weight': _Trap(trap)}))
    elif damage == 'torch.save': torch.save({'decoder.head.weight': _Trap(trap)}, w)
    else: w.write_bytes(b'')
    if damage != 'truncated' and damage != 'empty':
        assert not trap.exists()
    line = one_line_error(run([*GENERATE, '--checkpoint', d, '--image', d / 'examples' / '0.png', '--prompt', 'x']))
    assert f'{w} is not a valid safetensors file (truncated, or a pickle?)' in line, line
    assert not trap.exists()                                           # never unpickled


def test_the_trap_would_fire(tmp_path):
    "The pickles above really would run code when unpickled: what safetensors-only loading avoids."
    pickle.loads(pickle.dumps(_Trap(tmp_path / 'fired')))
    assert (tmp_path / 'fired').exists()


@pytest.fixture
def diverged(old):
    "The old run's checkpoint with NaN weights, as a run that diverged would leave it."
    d, _ = old
    m = VisionLanguageModel.from_pretrained(d)
    with torch.no_grad(): m.MP.proj.weight.fill_(float('nan'))
    m.save_pretrained(d)
    return d


@pytest.mark.parametrize('how', [['--greedy'], ['--seed', '0'], ['--seed', '0', '--top-k', '3', '--top-p', '0.9']])
@pytest.mark.parametrize('n', ['1', '30'])
def test_generate_with_nan_logits_is_an_error(diverged, capsys, how, n):
    d = diverged
    assert generate_cli(['--checkpoint', str(d), '--image', str(d / 'examples' / '0.png'), '--prompt', 'Is there a circle?',
                         '--max-new-tokens', n, *how]) == 1
    out = capsys.readouterr()
    assert out.out == '' and "error: the model's logits are NaN or infinite" in out.err and out.err.count('\n') == 1


def test_generate_nan_real_process(diverged):
    d = diverged
    line = one_line_error(run([*GENERATE, '--checkpoint', d, '--image', d / 'examples' / '0.png', '--prompt', 'x', '--greedy']))
    assert "logits are NaN or infinite" in line


def test_max_new_tokens_beyond_the_positions(old, capsys, monkeypatch):
    d, _ = old
    cfg = VLMConfig.from_json(d / 'config.json')
    allocated = []
    monkeypatch.setattr(V.VisionLanguageModel, 'embed', lambda *a, **k: allocated.append(1))
    args = ['--checkpoint', str(d), '--image', str(d / 'examples' / '0.png'), '--prompt', 'Is there a circle?', '--greedy']
    assert generate_cli([*args, '--max-new-tokens', '100000']) == 1
    err = capsys.readouterr().err
    n_prompt = len(get_tokenizer(d).encode('Question: Is there a circle? Answer:'))
    room = cfg.lm_max_position_embeddings - cfg.n_image_tokens - n_prompt
    assert f'max_new_tokens=100000' in err and f'ask for at most {room} new tokens' in err and err.count('\n') == 1, err
    assert not allocated                                               # refused before the model ran
    monkeypatch.undo()
    assert generate_cli([*args, '--max-new-tokens', str(room)]) == 0
    assert generate_cli([*args, '--max-new-tokens', str(room + 1)]) == 1


# ================================================================ small but real

def test_saved_files_get_the_normal_mode(tmp_path):
    cfg, tok, ds, col = small()
    m = VisionLanguageModel(cfg)
    old_umask = os.umask(0o027)
    try:
        T.train(m, TrainConfig(batch_size=8, max_steps=1, output_dir=str(tmp_path / 'run')), ds, col, save_with=[tok],
                progress=False)
        m.save_pretrained(tmp_path / 'm')
    finally: os.umask(old_umask)
    modes = {str(p.relative_to(tmp_path)): p.stat().st_mode & 0o777 for p in tmp_path.rglob('*') if p.is_file()}
    assert modes and all(v == 0o640 for v in modes.values()), modes


@pytest.mark.skipif(not Path('/proc/self/fd').is_dir(), reason='counts open descriptors in /proc')
def test_saving_leaks_no_file_descriptor(tmp_path):
    cfg = get_preset('tiny', vit_n_blocks=1, lm_n_blocks=1)
    m = VisionLanguageModel(cfg)
    m.save_pretrained(tmp_path)
    before = len(os.listdir('/proc/self/fd'))
    for _ in range(20): m.save_pretrained(tmp_path); cfg.to_json(tmp_path / 'c.json')
    assert len(os.listdir('/proc/self/fd')) == before


def test_a_save_interrupted_between_the_two_files_is_refused(tmp_path, monkeypatch):
    a = VisionLanguageModel(get_preset('tiny', vit_n_blocks=1, lm_n_blocks=1))
    b = VisionLanguageModel(get_preset('tiny', vit_n_blocks=1, lm_n_blocks=1, lm_re_base=5000))  # same shapes
    a.save_pretrained(tmp_path)
    before = tree(tmp_path)
    real = os.replace
    def disk_full_on_config(src, dst):
        if Path(src).name.startswith('.config.json.'): raise OSError(28, 'No space left on device')
        return real(src, dst)
    def full_before_any(*args, **kwargs): raise OSError(28, 'No space left on device')
    monkeypatch.setattr(V, 'save_model', full_before_any)
    with pytest.raises(OSError): b.save_pretrained(tmp_path)
    assert tree(tmp_path) == before                                   # nothing swapped, no temporary file left
    monkeypatch.undo()
    monkeypatch.setattr(os, 'replace', disk_full_on_config)           # the instant between the two renames
    with pytest.raises(OSError): b.save_pretrained(tmp_path)
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"config.json does not belong to .*model.safetensors: they differ in \['lm_re_base'\]"):
        VisionLanguageModel.from_pretrained(tmp_path)
    b.save_pretrained(tmp_path)
    assert VisionLanguageModel.from_pretrained(tmp_path).cfg.lm_re_base == 5000


def test_no_test_hooks_in_the_library():
    "No environment variable can kill a run, and importing nanovlm patches nothing in torch."
    src = '\n'.join(p.read_text() for p in (ROOT / 'nanovlm').glob('*.py'))
    assert 'KILL' not in src and 'os.kill' not in src
    code = ("import torch; before = {m: torch.Tensor.__dict__.get(m) for m in dir(torch.Tensor)}\n"
            "import nanovlm.config, nanovlm.data, nanovlm.training, nanovlm.train_cli, nanovlm.generate, nanovlm.benchmarks\n"
            "after = {m: torch.Tensor.__dict__.get(m) for m in dir(torch.Tensor)}\n"
            "assert before == after, sorted(m for m in before if before[m] is not after.get(m))")
    r = run([sys.executable, '-c', code])
    assert r.returncode == 0, r.stderr


def test_count_host_syncs_restores_everything():
    from nanovlm.benchmarks import count_host_syncs, _SYNC_METHODS
    own = {m: torch.Tensor.__dict__.get(m) for m in _SYNC_METHODS}
    found = {m: getattr(torch.Tensor, m) for m in _SYNC_METHODS}
    with count_host_syncs(__name__) as outer:
        with count_host_syncs(__name__) as inner: torch.ones(1).item()
        torch.ones(1).item()
    assert (outer, inner) == ({'item': 2}, {'item': 1})
    with pytest.raises(RuntimeError, match='boom'):
        with count_host_syncs(__name__): raise RuntimeError('boom')
    assert {m: torch.Tensor.__dict__.get(m) for m in _SYNC_METHODS} == own
    assert all(getattr(torch.Tensor, m) is f for m, f in found.items())


def test_wandb_runs_get_their_own_id(tmp_path, monkeypatch):
    inits = []
    wandb = types.ModuleType('wandb'); wandb.__spec__ = importlib.machinery.ModuleSpec('wandb', None)
    wandb.init = lambda **kw: inits.append(kw) or types.SimpleNamespace(log=lambda *a, **k: None)
    monkeypatch.setitem(sys.modules, 'wandb', wandb)
    cfg, tok, ds, col = small()
    def go(d, resume=False, steps=2):
        T.seed_everything(0)
        tc = TrainConfig(batch_size=8, max_steps=steps, save_every=1, log_wandb=True, output_dir=str(d))
        T.train(VisionLanguageModel(cfg), tc, ds, col, progress=False, resume=resume)
    go(tmp_path / 'a' / 'run'); go(tmp_path / 'b' / 'run')           # two runs in folders of the same name
    go(tmp_path / 'a' / 'run', resume=True, steps=3)
    ids = [i['id'] for i in inits]
    assert [i['name'] for i in inits] == ['run'] * 3
    assert ids[0] != ids[1] and ids[2] == ids[0], ids
    assert json.loads((tmp_path / 'a' / 'run' / 'trainer_state.json').read_text())['run_id'] == ids[0]


def test_truncated_backbone_is_named(tmp_path):
    "The LM and ViT backbones are read through the same check."
    from transformers import LlamaConfig, LlamaForCausalLM, SiglipVisionConfig, SiglipVisionModel
    from nanovlm.language_model import LanguageModel
    from nanovlm.vision_transformer import ViT
    LlamaForCausalLM(LlamaConfig(vocab_size=96, hidden_size=48, intermediate_size=96, num_hidden_layers=1, num_attention_heads=4,
                                 num_key_value_heads=2, tie_word_embeddings=True)).save_pretrained(tmp_path / 'llama')
    SiglipVisionModel(SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                                         image_size=32, patch_size=8)).save_pretrained(tmp_path / 'siglip')
    for name in ('llama', 'siglip'):
        w = tmp_path / name / 'model.safetensors'; w.write_bytes(w.read_bytes()[:2000])
    cfg = get_preset('tiny', lm_model_type=str(tmp_path / 'llama'), vit_model_type=str(tmp_path / 'siglip'), lm_vocab_size=128)
    with pytest.raises(ValueError, match=f"{tmp_path / 'llama' / 'model.safetensors'} is not a valid safetensors file"):
        LanguageModel.from_pretrained(cfg)
    with pytest.raises(ValueError, match=f"{tmp_path / 'siglip' / 'model.safetensors'} is not a valid safetensors file"):
        ViT.from_pretrained(cfg)


def test_rows_skipped_while_training_are_counted(tmp_path):
    "Rows that only turn out bad when read (the_cauldron's, or files changed since loading) are counted in the log."
    cfg, tok, ds, col = small(64)
    rows = [ds.rows[i] for i in range(64)]
    for i in range(0, 64, 4): rows[i] = {'images': [{'bytes': b'not an image'}], 'texts': rows[i]['texts']}
    bad = VQADataset(rows, tok, image_processor_for(cfg), on_error='skip')
    T.seed_everything(0)
    tc = TrainConfig(batch_size=8, max_steps=4, log_interval=2, output_dir=str(tmp_path))
    history = T.train(VisionLanguageModel(cfg), tc, bad, col, progress=False)
    counts = [r['skipped_rows'] for r in history if 'loss' in r]
    assert len(counts) == 2 and 0 < counts[0] <= counts[1] < 32, counts  # cumulative, a quarter of the rows


def test_unreadable_held_out_rows_are_left_out_of_the_score_with_a_warning():
    "A held-out row that only turns out bad when read (--skip-bad-rows) is neither scored nor a crash."
    cfg, tok, ds, col = small(12)
    rows = [ds.rows[i] for i in range(12)]
    for i in (0, 5): rows[i] = {'images': [{'bytes': b'not an image'}], 'texts': rows[i]['texts']}
    qtypes = [f'type{i}' for i in range(12)]
    with pytest.warns(UserWarning, match=r'skips 2 unreadable row\(s\)'):
        ev = T.Evaluator(VQADataset(rows, tok, image_processor_for(cfg), on_error='skip'), col, tok, qtypes)
    assert ev.qtypes == [t for i, t in enumerate(qtypes) if i not in (0, 5)]  # still each row's own type
    T.seed_everything(0)
    preds = ev.predictions(VisionLanguageModel(cfg))
    assert len(preds) == 10 and [p['qtype'] for p in preds] == ev.qtypes
    assert 0 <= ev(VisionLanguageModel(cfg))['accuracy'] <= 1
