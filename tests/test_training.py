"Training outside the notebook: kill-and-resume equality, atomic checkpoints under failure, NaN stop, DDP equality, the CLI."
import json, math, os, re, shutil, socket, subprocess, sys
from pathlib import Path
import pytest
import torch
from safetensors.torch import load_file
import nanovlm.training as T
import nanovlm.runs as R
import nanovlm.train_cli as CLI
from nanovlm.config import TrainConfig, get_preset
from nanovlm.data import (ShapesVQA, VQADataset, VQACollator, shapes_tokenizer, QTYPES, image_processor_for,
                          load_image_processor)
from nanovlm.vision_language_model import VisionLanguageModel

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)
FAST = ['--steps', '4', '--batch-size', '8', '--eval-samples', '10', '--eval-every', '0', '--threads', '1', '--quiet']
TIMING = {'tokens_per_s', 'samples_per_s', 'elapsed_s', 'eval_s'}


def cli() -> list:
    "The installed console script beside this Python (CI installs the package), else `python -m nanovlm.train_cli`."
    exe = shutil.which('nanovlm-train', path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, '-m', 'nanovlm.train_cli']


def run(cmd, env=None, timeout=300):
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1', **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=os.getcwd(), timeout=timeout)


pytestmark = pytest.mark.usefixtures('users_tree')  # every test in a directory of its own (conftest.py)


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return r


def records(d, timing=False):
    return [{k: v for k, v in json.loads(l).items() if timing or k not in TIMING}
            for l in (Path(d) / 'metrics.jsonl').read_text().splitlines()]


def weights(d): return load_file(str(Path(d) / 'model.safetensors'))


def small_setup(n=2048):
    cfg = get_preset('tiny', vit_n_blocks=1, lm_n_blocks=1)
    tok = shapes_tokenizer(cfg.lm_vocab_size)
    ds = VQADataset(ShapesVQA('train', length=n), tok, image_processor_for(cfg))
    return cfg, tok, ds, VQACollator(tok, cfg.lm_max_length)


def small_train(d, max_steps=4, model=None, resume=False, **kw):
    cfg, tok, ds, col = small_setup()
    T.seed_everything(0)
    m = model or VisionLanguageModel(cfg)
    tc = TrainConfig(**{'lr_mp': 3e-3, 'lr_backbones': 3e-3, 'batch_size': 8, 'max_steps': max_steps, 'warmup_steps': 2,
                        'log_interval': 1, 'save_every': 2, 'output_dir': str(d), 'precision': 'fp32', **kw})
    T.train(m, tc, ds, col, save_with=[tok], resume=resume, progress=False)
    return m


# --- the loop -------------------------------------------------------------------------------------

def test_loss_goes_down(tmp_path):
    cfg, tok, ds, col = small_setup()
    T.seed_everything(0)
    tc = TrainConfig(lr_mp=3e-3, lr_backbones=3e-3, batch_size=16, max_steps=40, warmup_steps=5, log_interval=10,
                     output_dir=str(tmp_path))
    h = T.train(VisionLanguageModel(cfg), tc, ds, col, progress=False)
    losses = [r['loss'] for r in h if 'loss' in r]
    assert len(losses) == 4 and losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize('frozen', ['backbones', 'MP'])
def test_frozen_part_does_not_change(tmp_path, frozen):
    cfg, *_ = small_setup()
    T.seed_everything(0)
    m = VisionLanguageModel(cfg)
    before = {k: v.detach().clone() for k, v in m.named_parameters()}
    lrs = {'lr_backbones': 0.0} if frozen == 'backbones' else {'lr_mp': 0.0}
    small_train(tmp_path, max_steps=3, model=m, **lrs)
    is_mp = lambda k: k.startswith('MP.')
    for k, v in m.named_parameters():
        same = torch.equal(v, before[k])
        assert same == (is_mp(k) == (frozen == 'MP')), (k, same)


def test_token_weighted_loss_is_logged(tmp_path):
    "The logged loss of a step is the mean over its answer tokens, however the step is cut into micro-batches."
    a = small_train(tmp_path / 'a', max_steps=2, gradient_accumulation_steps=1)
    b = small_train(tmp_path / 'b', max_steps=2, gradient_accumulation_steps=4)
    for x, y in zip(records(tmp_path / 'a'), records(tmp_path / 'b')):
        assert math.isclose(x['loss'], y['loss'], rel_tol=1e-5)
    # Adam divides by the gradient's own size, so rounding-level differences in a near-zero gradient can move a
    # weight by a visible fraction of the learning rate (3e-3): 1e-4 is 3% of one step's largest update
    for k, v in a.state_dict().items(): torch.testing.assert_close(v, b.state_dict()[k], rtol=1e-4, atol=1e-4)


# --- checkpoints: resume, atomicity, NaN -------------------------------------------------------------

def test_kill_and_resume_is_bit_identical(tmp_path):
    "A run SIGKILLed after step 5 (checkpoint at 4) and resumed ends exactly like the run that was never stopped."
    args = FAST[:] ; args[1] = '8'
    args += ['--save-every', '2', '--log-every', '1', '--eval-every', '4']
    ok(run(cli() + args + ['--output-dir', str(tmp_path / 'straight')]))
    killed = run([sys.executable, str(ROOT / 'tests' / 'kill_after.py'), '5', *args, '--output-dir', str(tmp_path / 'killed')])
    assert killed.returncode == -9, (killed.returncode, killed.stderr[-3000:])  # a real SIGKILL, no cleanup
    assert json.loads((tmp_path / 'killed' / 'trainer_state.json').read_text())['step'] == 4
    assert [r['step'] for r in records(tmp_path / 'killed') if 'loss' in r] == [1, 2, 3, 4, 5]  # step 5 was logged, not saved
    r = ok(run(cli() + ['--resume', '--output-dir', str(tmp_path / 'killed'), '--threads', '1', '--quiet']))
    assert 'held-out accuracy:' in r.stdout
    a, b = weights(tmp_path / 'straight'), weights(tmp_path / 'killed')
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert records(tmp_path / 'killed') == records(tmp_path / 'straight')  # same loss curve, no duplicated lines
    sa, sb = (json.loads((tmp_path / d / 'metrics.json').read_text()) for d in ('straight', 'killed'))
    assert sa['accuracy'] == sb['accuracy'] and sa['val_loss'] == sb['val_loss']


def test_crash_while_writing_leaves_last_checkpoint(tmp_path, monkeypatch):
    "A failure while the step-4 checkpoint is written leaves step 2's intact; resuming reaches the uninterrupted weights."
    straight = small_train(tmp_path / 'straight', max_steps=6)
    calls = []
    real = R.save_file
    def failing(tensors, path, *a, **k):
        calls.append(path)
        if len(calls) == 2:  # the second checkpoint: a half-written file, then the disk is full
            Path(path).write_bytes(b'garbage'); raise OSError('No space left on device')
        return real(tensors, path, *a, **k)
    monkeypatch.setattr(R, 'save_file', failing)
    with pytest.raises(OSError, match='No space left'): small_train(tmp_path / 'run', max_steps=6)
    monkeypatch.setattr(R, 'save_file', real)
    d = tmp_path / 'run'
    assert json.loads((d / 'trainer_state.json').read_text())['step'] == 2
    VisionLanguageModel.from_pretrained(d)                     # loads: config and weights intact
    assert (d / '.staging').is_dir() and not (d / '.staging' / 'COMMIT').exists()
    cfg, *_ = small_setup()
    resumed = small_train(d, max_steps=6, model=VisionLanguageModel(cfg), resume=True)
    assert not (d / '.staging').exists()
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in straight.state_dict().items())
    assert records(d) == records(tmp_path / 'straight')


def test_crash_after_commit_point_is_rolled_forward(tmp_path, monkeypatch):
    "Interrupted halfway through moving a committed checkpoint into place: the next start finishes the move."
    straight = small_train(tmp_path / 'straight', max_steps=4)
    real, moves = os.replace, []
    def flaky(src, dst):
        if Path(src).parent.name == '.staging' and Path(dst).parent.name != '.staging':  # a commit move
            moves.append(dst)
            if len(moves) == 3 + 8: raise OSError('power cut')  # 8 files per checkpoint: die in the second one's moves
        return real(src, dst)
    monkeypatch.setattr(os, 'replace', flaky)
    with pytest.raises(OSError, match='power cut'): small_train(tmp_path / 'run', max_steps=4)
    monkeypatch.setattr(os, 'replace', real)
    d = tmp_path / 'run'
    assert (d / '.staging' / 'COMMIT').exists()                 # committed, half moved
    cfg, *_ = small_setup()
    resumed = small_train(d, max_steps=4, model=VisionLanguageModel(cfg), resume=True)  # nothing left to train
    assert json.loads((d / 'trainer_state.json').read_text())['step'] == 4
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in straight.state_dict().items())
    assert all(torch.equal(v, weights(d)[k]) for k, v in weights(tmp_path / 'straight').items())


def _nan_after(model, n):
    "Make the model's loss NaN from its `n`-th forward call on."
    orig, calls = model.forward, [0]
    def forward(*a, **k):
        logits, loss = orig(*a, **k)
        calls[0] += 1
        return logits, (loss * float('nan') if calls[0] >= n and loss is not None else loss)
    model.forward = forward
    return calls


def test_nan_stops_run_and_keeps_last_checkpoint(tmp_path):
    cfg, *_ = small_setup()
    T.seed_everything(0)
    m = VisionLanguageModel(cfg)
    _nan_after(m, 3)  # steps 1 and 2 are fine
    with pytest.raises(T.NonFiniteLossError, match=r'between steps 3 and 4.*last good checkpoint \(step 2\)'):
        small_train(tmp_path, max_steps=8, model=m, log_interval=4)
    assert json.loads((tmp_path / 'trainer_state.json').read_text())['step'] == 2
    saved = VisionLanguageModel.from_pretrained(tmp_path)
    assert all(torch.isfinite(p).all() for p in saved.parameters())
    assert all(torch.isfinite(p).all() for p in load_file(str(tmp_path / 'trainer_state.safetensors')).values())


def test_nan_is_checked_at_log_intervals_not_every_step(tmp_path):
    "No host sync per step: a NaN at step 2 is noticed at the step-5 log, after five steps ran."
    cfg, *_ = small_setup()
    T.seed_everything(0)
    m = VisionLanguageModel(cfg)
    calls = _nan_after(m, 2)
    with pytest.raises(T.NonFiniteLossError, match='between steps 1 and 5.*no checkpoint was written'):
        small_train(tmp_path, max_steps=20, model=m, log_interval=5, save_every=0)
    assert calls[0] == 5
    assert not (tmp_path / 'model.safetensors').exists()


def test_nan_from_a_huge_learning_rate_via_cli(tmp_path):
    r = run(cli() + FAST + ['--steps', '6', '--lr-mp', '1e12', '--lr-backbones', '1e12', '--warmup', '0', '--log-every', '2',
                            '--output-dir', str(tmp_path)])
    assert r.returncode == 1 and 'loss became NaN or infinite' in r.stderr, (r.returncode, r.stderr[-2000:])


# --- DDP ----------------------------------------------------------------------------------------------

def _free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def test_two_processes_train_the_same_model_as_one(tmp_path):
    "torchrun with 2 gloo processes x 1 micro-batch == 1 process x 2 micro-batches (same global batch of 8)."
    common = ['--steps', '3', '--batch-size', '8', '--eval-samples', '10', '--eval-every', '0', '--log-every', '1',
              '--threads', '1', '--quiet', '--device', 'cpu', '--precision', 'fp32']  # exact sums: no bf16 rounding
    ok(run(cli() + common + ['--grad-accum', '2', '--output-dir', str(tmp_path / 'one')]))
    target = ['-m', 'nanovlm.train_cli'] if cli()[0] == sys.executable else [cli()[0]]
    r = ok(run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={_free_port()}', *target,
                *common, '--grad-accum', '1', '--output-dir', str(tmp_path / 'two')]))
    assert r.stdout.count('held-out accuracy:') == 1                      # only rank 0 reports
    a, b = weights(tmp_path / 'one'), weights(tmp_path / 'two')
    for k in a: torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    ra, rb = records(tmp_path / 'one'), records(tmp_path / 'two')
    assert [r['step'] for r in rb] == [1, 2, 3, 3]                      # one line per record: only rank 0 writes
    for x, y in zip(ra, rb):
        for k in x: assert math.isclose(x[k], y[k], rel_tol=1e-4, abs_tol=1e-6), (k, x[k], y[k])
    sa, sb = (json.loads((tmp_path / d / 'metrics.json').read_text()) for d in ('one', 'two'))
    assert sb['world_size'] == 2 and sb['n_eval'] == sa['n_eval'] == 10   # evaluation shared, then summed
    assert math.isclose(sa['val_loss'], sb['val_loss'], rel_tol=1e-4)


# --- the command line ------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def cli_run(tmp_path_factory):
    d = tmp_path_factory.mktemp('cli') / 'run'
    return d, ok(run(cli() + FAST + ['--output-dir', str(d)]))


def test_cli_output_and_files(cli_run):
    d, r = cli_run
    lines = r.stdout.splitlines()
    i = next(i for i, l in enumerate(lines) if l.startswith('held-out accuracy:'))
    assert re.fullmatch(r'held-out accuracy: \d+\.\d%', lines[i])
    per_type = lines[i + 1:i + 1 + len(QTYPES)]
    assert [l.split(':')[0].strip() for l in per_type] == sorted(QTYPES)
    assert all(re.fullmatch(r'  \w+: \d+\.\d%', l) for l in per_type)
    assert sum('Q: ' in l for l in lines[i + 1 + len(QTYPES):]) == 4     # example answers
    m = json.loads((d / 'metrics.json').read_text())
    assert lines[i] == f"held-out accuracy: {100 * m['accuracy']:.1f}%"
    assert {f'accuracy/{q}' for q in QTYPES} <= m.keys() and m['steps'] == 4 and m['n_eval'] == 10
    ex = json.loads((d / 'examples' / 'examples.json').read_text())
    assert len(ex) == 4 and all((d / e['image']).is_file() and e['question'] for e in ex)
    assert {'config.json', 'model.safetensors', 'tokenizer.json', 'preprocessor_config.json', 'trainer_state.json',
            'trainer_state.safetensors', 'train_config.json', 'metrics.jsonl'} <= {p.name for p in d.iterdir()}
    VisionLanguageModel.from_pretrained(d)
    assert load_image_processor(d).normalize is not None


def _exit_code(argv, capsys, monkeypatch=None, env=None):
    if env:
        for k, v in env.items(): monkeypatch.setenv(k, v)
    with pytest.raises(SystemExit) as e: CLI.train_cli(argv)
    return e.value.code, capsys.readouterr().err


@pytest.mark.parametrize('argv, msg', [
    (['--preset', 'huge'], "unknown preset 'huge'"),
    (['--steps', '-3'], 'max_steps must be >= 0'),
    (['--batch-size', '10', '--grad-accum', '4'], 'batch_size=10 is not divisible by gradient_accumulation_steps=4'),
    (['--data', 'imagenet'], "unknown data source 'imagenet'"),
    (['--data', 'nowhere/train.jsonl'], 'no JSONL file at nowhere/train.jsonl'),
    (['--resume', '--output-dir', '/nonexistent/run'], '--resume: no run directory /nonexistent/run'),
    (['--best-metric', 'bleu'], "invalid choice: 'bleu'"),
    (['--threads', '0'], '--threads must be positive'),
])
def test_bad_options_exit_2(argv, msg, capsys):
    code, err = _exit_code(argv, capsys)
    assert code == 2 and msg in err, err


def test_batch_must_split_over_processes(capsys, monkeypatch):
    code, err = _exit_code(['--batch-size', '6'], capsys, monkeypatch, {'WORLD_SIZE': '4'})
    assert code == 2 and '--batch-size 6 does not split over 4 process(es) x 1 accumulation step(s)' in err, err


def test_resume_with_a_different_config(cli_run, capsys, tmp_path):
    d, _ = cli_run
    code, err = _exit_code(['--resume', '--output-dir', str(d), '--lr-mp', '0.5'], capsys)
    assert code == 2 and 'holds a different config (lr_mp=' in err, err
    code, err = _exit_code(['--resume', '--output-dir', str(tmp_path)], capsys)  # exists, but holds no run
    assert code == 2 and 'holds no resumable run' in err, err


def test_cauldron_needs_datasets(capsys):
    import importlib.util
    if importlib.util.find_spec('datasets') is not None: pytest.skip('datasets is installed')
    code, err = _exit_code(['--data', 'cauldron:vqav2'], capsys)
    assert code == 2 and 'pip install datasets' in err


def test_real_process_exits_2_before_any_work(tmp_path):
    r = run(cli() + ['--preset', 'huge', '--output-dir', str(tmp_path / 'x')])
    assert r.returncode == 2 and "unknown preset 'huge'" in r.stderr
    assert not (tmp_path / 'x').exists()
