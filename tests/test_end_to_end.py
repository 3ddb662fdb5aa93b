"The two commands as a user runs them: nanovlm-train, then nanovlm-generate on its output; bad input; the saved image processor."
import json, os, re, shutil, subprocess, sys
from pathlib import Path
import pytest
import torch
from PIL import Image
from nanovlm.config import get_preset
from nanovlm.data import shapes_tokenizer, ShapesVQA, QTYPES
from nanovlm.generate import load_for_inference, ask
from nanovlm.data import image_processor_for, save_image_processor
from nanovlm.vision_language_model import VisionLanguageModel

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


def cli(name: str, module: str) -> list:
    "The installed console script beside this Python (CI installs the package), else `python -m module`."
    exe = shutil.which(name, path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, '-m', module]


def run(cmd, timeout=300):
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1'}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return r


TRAIN, GENERATE = cli('nanovlm-train', 'nanovlm.train_cli'), cli('nanovlm-generate', 'nanovlm.generate')


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    "One short `nanovlm-train` run for the whole module: (run directory, its stdout)."
    d = tmp_path_factory.mktemp('e2e') / 'run'
    r = ok(run([*TRAIN, '--steps', '4', '--batch-size', '8', '--eval-samples', '10', '--threads', '1', '--quiet',
                '--output-dir', str(d)]))
    return d, r.stdout


def generate(d, *args, image=None, prompt='How many shapes are there?'):
    return run([*GENERATE, '--checkpoint', str(d), '--image', str(image or d / 'examples' / '0.png'), '--prompt', prompt, *args])


# --- nanovlm-train ------------------------------------------------------------------------------

def test_train_prints_and_writes_accuracy(trained):
    d, out = trained
    m = re.search(r'held-out accuracy: (\d+\.\d)%', out)
    assert m, out
    metrics = json.loads((d / 'metrics.json').read_text())
    assert f"{100 * metrics['accuracy']:.1f}" == m.group(1)
    for t in QTYPES:
        line = re.search(rf'^\s+{t}: (\d+\.\d)%$', out, re.M)
        assert line, (t, out)
        assert f"{100 * metrics[f'accuracy/{t}']:.1f}" == line.group(1)
    assert metrics['steps'] == 4 and metrics['n_eval'] == 10
    pngs = sorted((d / 'examples').glob('*.png'))
    assert pngs and all(Image.open(p).size == (64, 64) for p in pngs)
    for f in ('config.json', 'model.safetensors', 'tokenizer.json', 'preprocessor_config.json'): assert (d / f).is_file(), f


# --- nanovlm-generate ---------------------------------------------------------------------------

def test_generate_greedy(trained):
    "One line, the library's answer. (After 4 steps it is often empty: EOS, which ends every answer, is the most frequent target.)"
    d, _ = trained
    r = ok(generate(d, '--greedy', '--max-new-tokens', '5'))
    lines = r.stdout.splitlines()
    assert len(lines) == 1, r.stdout
    model, tok, proc = load_for_inference(d, device='cpu', precision='auto')  # what the command loads
    assert ask(model, tok, proc, d / 'examples' / '0.png', 'How many shapes are there?', max_new_tokens=5, greedy=True) == lines
    assert ('answer is empty' in r.stderr) == (lines[0] == '')


def test_generate_prints_the_answer(tmp_path):
    "A model whose EOS logit is 0 (its tied embedding row zeroed) cannot end at once: the line holds its words."
    cfg = get_preset('tiny', vit_n_blocks=1, lm_n_blocks=1)
    tok = shapes_tokenizer(cfg.lm_vocab_size)
    torch.manual_seed(0)
    m = VisionLanguageModel(cfg)
    with torch.no_grad(): m.decoder.token_embedding.weight[tok.eos_token_id] = 0
    m.save_pretrained(tmp_path); tok.save(tmp_path); save_image_processor(image_processor_for(cfg), tmp_path)
    img = tmp_path / 'img.png'; ShapesVQA('test')[0]['images'][0].save(img)
    r = ok(run([*GENERATE, '--checkpoint', str(tmp_path), '--image', str(img), '--prompt', 'Is there a circle?', '--greedy',
                '--max-new-tokens', '3']))
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and 1 <= len(lines[0].split()) <= 3, r.stdout
    assert all(tok.encode(w) for w in lines[0].split()) and r.stderr == ''


def test_generate_samples_reproducibly(trained):
    d, _ = trained
    a = ok(generate(d, '--generations', '3', '--seed', '0'))
    b = ok(generate(d, '--generations', '3', '--seed', '0'))
    lines = a.stdout.splitlines()
    assert [l.split(':', 1)[0] for l in lines] == ['1', '2', '3'], a.stdout
    assert a.stdout == b.stdout


def test_python_m_works(trained):
    d, _ = trained
    r = ok(run([sys.executable, '-m', 'nanovlm.generate', '--checkpoint', str(d), '--image', str(d / 'examples' / '0.png'),
                '--prompt', 'Is there a circle?', '--greedy', '--max-new-tokens', '3']))
    assert len(r.stdout.splitlines()) == 1


def _index_markdown() -> str:
    cells = json.loads((ROOT / 'nbs' / 'index.ipynb').read_text(encoding='utf-8'))['cells']
    return '\n\n'.join(''.join(c['source']) for c in cells if c['cell_type'] == 'markdown')


def readme_python_example() -> tuple:
    """The landing page's Python example (nbs/index.ipynb, hence the README): its first ```python block, and
    the ```text block after it, which shows what the example prints."""
    m = re.search(r'```python\n(.*?)```\s*```text\n(.*?)```', _index_markdown(), re.S)
    assert m, 'nbs/index.ipynb has no ```python example followed by the ```text it prints'
    return m.group(1), m.group(2)


def truth(shapes: list, question: str, img_size: int = 64) -> str:
    "The right answer to a ShapesVQA question about `shapes`, a scene's (kind, color, cx, cy, r) tuples."
    at = {k: (c, x, y) for k, c, x, y, _ in shapes}
    kind_of = {c: k for k, c, *_ in shapes}
    h = img_size / 2
    rules = {r'How many shapes are there\?': lambda: str(len(shapes)),
             r'What color is the (\w+)\?': lambda k: at[k][0],
             r'What shape is the (\w+) object\?': lambda c: kind_of[c],
             r'Is there an? (\w+)\?': lambda k: 'yes' if k in at else 'no',
             r'Is the (\w+) on the left or the right\?': lambda k: 'left' if at[k][1] < h else 'right',
             r'Is the (\w+) at the top or the bottom\?': lambda k: 'top' if at[k][2] < h else 'bottom'}
    for pattern, answer in rules.items():
        if m := re.fullmatch(pattern, question): return answer(*m.groups())
    raise ValueError(f'no rule answers {question!r}')


def test_truth():
    "The answer key on two shapes: a yellow circle at the bottom left, a blue cross at the top right."
    scene = [('circle', 'yellow', 13, 51, 12), ('cross', 'blue', 46, 21, 10)]
    asked = {'How many shapes are there?': '2', 'What color is the cross?': 'blue',
             'Is there a circle?': 'yes', 'Is there a square?': 'no',
             'What shape is the yellow object?': 'circle', 'Is the cross on the left or the right?': 'right',
             'Is the circle at the top or the bottom?': 'bottom'}
    assert {q: truth(scene, q) for q in asked} == asked
    with pytest.raises(ValueError, match='no rule'): truth(scene, 'Why?')


@pytest.fixture(scope='module')
def landing_scene(tmp_path_factory):
    "The shapes of the landing page's picture; its hidden cell, run elsewhere, must redraw the file exactly."
    cells = json.loads((ROOT / 'nbs' / 'index.ipynb').read_text(encoding='utf-8'))['cells']
    src = next(''.join(c['source']) for c in cells if 'images/held_out_scene.png' in ''.join(c['source'])
               and c['cell_type'] == 'code')
    out = tmp_path_factory.mktemp('index') / 'held_out_scene.png'
    ns = {}  # the cell writes images/held_out_scene.png (in nbs/, where the notebook runs): here, to `out`
    exec(compile(src.replace("'images/held_out_scene.png'", repr(str(out))), 'index.ipynb', 'exec'), ns)
    committed = ROOT / 'nbs' / 'images' / 'held_out_scene.png'
    redrawn, committed = (Image.open(p).convert('RGB') for p in (out, committed))
    assert redrawn.size == committed.size and redrawn.tobytes() == committed.tobytes()
    return ns['shapes']


def test_landing_page_example(landing_scene):
    """The landing page's five lines exactly as written, from the root of the project, against the committed
    checkpoint: they print what the page shows, and every answer is right."""
    code, shown = readme_python_example()
    assert len(code.splitlines()) == 5 and 'load_for_inference(' in code and 'ask(' in code, code
    assert "'pretrained/shapes-tiny'" in code, 'the committed checkpoint, which needs no training first'
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1'}
    r = ok(subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300))
    assert r.stdout == shown, (r.stdout, shown)
    answered = [re.fullmatch(r'(.*\?) (.*)', line).groups() for line in r.stdout.splitlines()]
    assert len(answered) >= 3, r.stdout
    for question, answer in answered: assert answer == truth(landing_scene, question), (question, answer)


@pytest.fixture(scope='module')
def garbage_png(tmp_path_factory):
    p = tmp_path_factory.mktemp('bad') / 'garbage.png'
    p.write_bytes(b'\x89PNG\r\n\x1a\n' + os.urandom(200))  # a PNG signature, then noise
    return p


BAD = {  # name: (extra arguments or a function of the fixtures, exit status, text the one line must contain)
    'missing image': (lambda d, g: ['--checkpoint', str(d), '--image', str(d / 'nope.png'), '--prompt', 'x'], 1, 'nope.png not found'),
    'unreadable image': (lambda d, g: ['--checkpoint', str(d), '--image', str(g), '--prompt', 'x'], 1, 'cannot read image'),
    'missing checkpoint': (lambda d, g: ['--checkpoint', str(d.parent / 'no_such_run'), '--image', str(d / 'examples' / '0.png'),
                                         '--prompt', 'x'], 1, 'no_such_run'),
    'generations 0': (lambda d, g: ['--checkpoint', str(d), '--image', str(d / 'examples' / '0.png'), '--prompt', 'x',
                                    '--generations', '0'], 2, '--generations must be >= 1'),
    'missing prompt': (lambda d, g: ['--checkpoint', str(d), '--image', str(d / 'examples' / '0.png')], 2, '--prompt'),
    'top-p 0': (lambda d, g: ['--checkpoint', str(d), '--image', str(d / 'examples' / '0.png'), '--prompt', 'x',
                              '--top-p', '0'], 2, '--top-p'),
}


@pytest.mark.parametrize('case', list(BAD))
def test_generate_bad_input(trained, garbage_png, case):
    d, _ = trained
    args, code, text = BAD[case]
    r = run([*GENERATE, *args(d, garbage_png)])
    assert r.returncode == code, (r.returncode, r.stderr)
    assert 'Traceback' not in r.stderr, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and text in lines[0] and 'error' in lines[0], r.stderr
    assert r.stdout == ''


def test_missing_checkpoint_in_process(tmp_path, capsys):
    "The same errors from the function, as the notebook shows them: a status, and one line on stderr."
    from nanovlm.generate import generate_cli
    img = tmp_path / 'img.png'; ShapesVQA('test')[0]['images'][0].save(img)
    assert generate_cli(['--checkpoint', str(tmp_path / 'none'), '--image', str(img), '--prompt', 'x']) == 1
    assert 'no such local directory' in capsys.readouterr().err
    (tmp_path / 'file').write_text('')
    assert generate_cli(['--checkpoint', str(tmp_path / 'file'), '--image', str(img), '--prompt', 'x']) == 1
    assert 'a file, not a directory' in capsys.readouterr().err
    with pytest.raises(SystemExit) as e: generate_cli(['--checkpoint', '.', '--image', str(img), '--prompt', 'x', '--device', 'tpu:x'])
    assert e.value.code == 2 and '--device' in capsys.readouterr().err


# --- load_for_inference -------------------------------------------------------------------------

@pytest.fixture
def saved_model(tmp_path):
    cfg = get_preset('tiny', vit_n_blocks=1, lm_n_blocks=1)
    tok = shapes_tokenizer(cfg.lm_vocab_size)
    VisionLanguageModel(cfg).save_pretrained(tmp_path)
    tok.save(tmp_path)
    return tmp_path, cfg


def test_saved_image_processor_is_used(saved_model):
    d, cfg = saved_model
    save_image_processor(image_processor_for(cfg), d)
    _, _, proc = load_for_inference(d, device='cpu')
    white, black = Image.new('RGB', (64, 64), 'white'), Image.new('RGB', (64, 64), 'black')
    assert proc(white).max().item() == pytest.approx(1.0) and proc(black).min().item() == pytest.approx(-1.0)
    assert torch.equal(proc(white), image_processor_for(cfg)(white))


def test_no_preprocessor_config_means_unit_pixels(saved_model):
    d, cfg = saved_model
    assert not (d / 'preprocessor_config.json').exists()
    _, _, proc = load_for_inference(d, device='cpu')
    black, white = Image.new('RGB', (64, 64), 'black'), Image.new('RGB', (64, 64), 'white')
    assert proc.normalize is None and proc(black).min().item() == 0.0 and proc(white).max().item() == 1.0


def test_processor_must_fit_the_model(saved_model):
    d, cfg = saved_model
    from nanovlm.data import get_image_processor
    save_image_processor(get_image_processor(32, normalize=(0.5, 0.5)), d)
    with pytest.raises(ValueError, match='resizes images to 32 pixels'): load_for_inference(d, device='cpu')
    (d / 'preprocessor_config.json').write_text('{"do_normalize": true}')
    with pytest.raises(ValueError, match='not a valid image processor config'): load_for_inference(d, device='cpu')


def test_tokenizer_is_required(saved_model):
    d, cfg = saved_model
    (d / 'tokenizer.json').unlink()
    with pytest.raises(FileNotFoundError, match='has no tokenizer.json'): load_for_inference(d, device='cpu')


def test_ask_checks(saved_model):
    d, cfg = saved_model
    model, tok, proc = load_for_inference(d, device='cpu')
    img = ShapesVQA('test')[0]['images'][0]
    out = ask(model, tok, proc, img, 'Is there a circle?', n=4, max_new_tokens=3, seed=1)
    assert len(out) == 4 and out == ask(model, tok, proc, img, 'Is there a circle?', n=4, max_new_tokens=3, seed=1)
    with pytest.raises(ValueError, match='n must be >= 1'): ask(model, tok, proc, img, 'x', n=0)
    with pytest.raises(ValueError, match='tokens long'): ask(model, tok, proc, img, ' '.join(['circle'] * 60))
