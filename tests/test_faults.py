"""Issue 26: the world misbehaving while a run is in flight, and files made by other tools.

- I/O faults at every write, rename and fsync a run makes, one injection point per run, every point visited (the
  way SQLite tests its I/O errors; tests/faults.py), and a real "File too large" from the operating system;
- Ctrl-C and SIGTERM sent to a real process, mid-step and mid-save (tests/pause_at.py holds it there);
- one writer per run directory: two processes started together, and `kill -9` of the holder;
- files from other tools: byte-order marks, CRLF, a last line without newline, image files with upper-case or no
  extensions, paths with spaces and non-ASCII names;
- the command line: option checks before any look at the output directory (a user's own runs/tiny never changes a
  test's outcome), --seed's range, an output path that cannot be created.
"""
import contextlib, hashlib, io, json, os, resource, shutil, signal, subprocess, sys, time
from pathlib import Path
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import nanovlm.runs as R
import nanovlm.training as T
import nanovlm.train_cli as CLI
import nanovlm.vision_language_model as V
from nanovlm.config import TrainConfig, VLMConfig, get_preset
from nanovlm.data import ShapesVQA, read_jsonl, get_tokenizer, load_image_processor
from nanovlm.vision_language_model import VisionLanguageModel
from faults import Faults

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)
TIMING = {'tokens_per_s', 'samples_per_s', 'elapsed_s', 'eval_s'}
# in-process runs: evaluated at steps 2 and 3, checkpoints at 2 and 3, best/ (by validation loss) at both
SMALL = ['--steps', '3', '--batch-size', '8', '--eval-samples', '4', '--eval-every', '2', '--save-every', '2',
         '--log-every', '1', '--best-metric', 'val_loss', '--threads', '1', '--quiet']
FAST = ['--steps', '4', '--batch-size', '8', '--eval-samples', '10', '--eval-every', '0', '--threads', '1', '--quiet']
CHECKPOINT = ('config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'preprocessor_config.json',
              'train_config.json', 'trainer_state.json', 'trainer_state.safetensors')


def exe(name: str, module: str) -> list:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, '-m', module]


TRAIN = exe('nanovlm-train', 'nanovlm.train_cli')


def env(**kw):
    return {**{k: v for k, v in os.environ.items() if k != 'NANOVLM_DEBUG'}, 'PYTHONPATH': str(ROOT),
            'OMP_NUM_THREADS': '1', **kw}


def run(cmd, timeout=300, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env(), cwd=os.getcwd(),
                          timeout=timeout, **kw)


def one_line(err: str) -> str:
    "The one line a failed command wrote on stderr, checked: one line, no traceback."
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and 'Traceback' not in err, err
    return lines[0]


def weights(d): return load_file(str(Path(d) / 'model.safetensors'))


def same_weights(a, b) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def records(d):
    return [{k: v for k, v in json.loads(l).items() if k not in TIMING}
            for l in (Path(d) / 'metrics.jsonl').read_text().splitlines()]


def hashes(d, names=CHECKPOINT) -> dict:
    return {n: hashlib.sha256((Path(d) / n).read_bytes()).hexdigest() for n in names if (Path(d) / n).is_file()}


pytestmark = pytest.mark.usefixtures('users_tree')  # every test in a directory of its own (conftest.py)


# ================================================================ the command line

def cli(argv, **environ) -> tuple[int, str]:
    "`nanovlm-train` in this process: its exit status and stderr."
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try: code = CLI.train_cli([str(a) for a in argv])
        except SystemExit as e: code = e.code
    return code, err.getvalue()


@pytest.mark.parametrize('argv, environ, msg', [
    (['--threads', '0'], {}, '--threads must be positive, got 0'),
    (['--batch-size', '6'], {'WORLD_SIZE': '4'}, '--batch-size 6 does not split over 4 process(es)'),
    (['--workers', '-1'], {}, '--workers must be >= 0, got -1'),
    (['--device', 'tpu:x'], {}, "--device 'tpu:x' is not a device"),
    (['--seed', '-1'], {}, '--seed must be between 0 and 4294967295, got -1'),
    (['--seed', str(2**32)], {}, f'--seed must be between 0 and 4294967295, got {2**32}'),
    (['--seed', str(2**32 - 1)], {'WORLD_SIZE': '2'}, '--seed must be between 0 and 4294967294'),  # seed + rank
])
def test_options_are_checked_before_the_output_directory(users_tree, monkeypatch, argv, environ, msg):
    "The issue's failures: with a user's runs/tiny present, a bad option was reported as 'runs/tiny is not empty'."
    for k, v in environ.items(): monkeypatch.setenv(k, v)
    assert (users_tree / 'runs' / 'tiny' / 'model.safetensors').exists()
    code, err = cli(argv)
    assert code == 2 and msg in one_line(err) and 'not empty' not in err, err


def test_the_largest_seed_is_accepted(tmp_path):
    code, err = cli(['--seed', str(2**32 - 1), '--data', tmp_path / 'none.jsonl'])
    assert code == 2 and 'no JSONL file at' in one_line(err), err  # the seed passed; the next check spoke


def test_an_output_dir_that_cannot_be_created_says_which_part(tmp_path):
    (tmp_path / 'notes.txt').write_text('mine')
    code, err = cli([*FAST, '--output-dir', tmp_path / 'notes.txt' / 'runs' / 'x'])
    assert code == 2 and one_line(err).endswith(
        f"--output-dir {tmp_path / 'notes.txt' / 'runs' / 'x'} cannot be created: {tmp_path / 'notes.txt'} is a file, "
        "not a directory (see nanovlm-train --help)"), err
    os.symlink(tmp_path / 'unmounted', tmp_path / 'disk')
    code, err = cli([*FAST, '--output-dir', tmp_path / 'disk' / 'run'])
    assert code == 2 and f"{tmp_path / 'disk'} is a symbolic link to {tmp_path / 'unmounted'}, which does not exist" in err
    assert (tmp_path / 'notes.txt').read_text() == 'mine' and not (tmp_path / 'unmounted').exists()


@pytest.mark.skipif(not Path('/proc/self').is_dir(), reason='needs /proc')
def test_an_output_dir_the_system_refuses_names_the_part():
    "/proc looks writable to root but makes no directories: found only when tried, and said in one line."
    code, err = cli([*FAST, '--output-dir', '/proc/nanovlm/run'])
    assert code == 1 and one_line(err) == ("nanovlm-train: error: cannot create output directory /proc/nanovlm/run: "
                                           "/proc/nanovlm cannot be created in /proc (No such file or directory); "
                                           "choose another output directory"), err


# ================================================================ I/O faults, injected at every point

@pytest.fixture(scope='module')
def small_runs(tmp_path_factory):
    """The tiny preset with one block per tower and a short ShapesVQA epoch, so that a run takes a second: an uninterrupted
    run (`straight`), and the same run stopped after its step-2 checkpoint (`template`)."""
    base = tmp_path_factory.mktemp('small')
    with pytest.MonkeyPatch.context() as m:
        small(m)
        assert cli([*SMALL, '--output-dir', base / 'straight'])[0] == 0
        real = T.step_batches
        def stop_before_step_3(*a, **k):
            for i, b in enumerate(real(*a, **k)):
                if i == 2: raise KeyboardInterrupt  # what Ctrl-C raises
                yield b
        m.setattr(T, 'step_batches', stop_before_step_3)
        code, err = cli([*SMALL, '--output-dir', base / 'template'])
    assert code == 130 and 'the last good checkpoint (step 2)' in one_line(err), err
    return base / 'straight', base / 'template'


def small(m):
    m.setattr(CLI, 'SHAPES_TRAIN_SIZE', 512)
    m.setattr(CLI, 'get_preset', lambda name, **kw: get_preset(name, vit_n_blocks=1, lm_n_blocks=1, **kw))


def resume(d) -> tuple[int, str]: return cli(['--resume', '--output-dir', d, '--threads', '1', '--quiet'])


def checkpoint_step(d) -> int:
    "Load the run's checkpoint as `--resume` does (finishing a committed update) into a fresh model; its step."
    cfg = VLMConfig.from_json(d / 'config.json')
    m = VisionLanguageModel(cfg)
    meta = R.load_checkpoint(d, m, T.make_optimizer(m, TrainConfig.from_json(d / 'train_config.json')))
    return int(meta['step']), m


def check_failed_run(d, code, err, faults, straight, template):
    "After a run with an injected fault: one line naming the directory and the cause; the checkpoint verifies."
    assert faults.failed, 'the injection point was never reached'
    k, point, cause = faults.failed
    if code == 0:  # a failure the run may ignore (the fsync of a directory, the pid in the lock file): it finished
        assert same_weights(d, straight), point
        return None
    assert code == 1, (point, code, err)
    line = one_line(err)
    assert line.startswith('nanovlm-train: error: cannot ') and str(d) in line and cause in line, (point, line)
    if (d / '.staging' / 'COMMIT').exists() or not (d / 'trainer_state.json').exists(): before = None
    else: before = hashes(d)                                             # the files of the checkpoint on disk
    step, m = checkpoint_step(d)
    if f'(step {step})' not in line: assert 'lock file' in line, (point, line)  # what the line says is intact
    ref = template if step == 2 else straight
    w, sd = weights(ref), m.state_dict()
    assert step in (2, 3) and all(torch.equal(v, sd[k]) for k, v in w.items()), point
    if step == 2 and before is not None: assert before == hashes(template), point  # exactly as it was
    return step


def test_every_write_of_a_resumed_run_can_fail(small_runs, tmp_path, monkeypatch):
    """A run resumed from its step-2 checkpoint fails at each write, rename and fsync of the rest of the run (the log,
    best/, the step-3 checkpoint, the examples, metrics.json) in turn; resuming then ends where the straight run did."""
    straight, template = small_runs
    small(monkeypatch)
    dry = shutil.copytree(template, tmp_path / 'dry')
    with monkeypatch.context() as m:
        faults = Faults(dry).patch(m, R, V)
        assert resume(dry)[0] == 0
    points = faults.points
    kinds = {p.split()[0] for p in points}
    assert {'open', 'write', 'fsync', 'replace', 'mkdir', 'save_file', 'save_model', 'chmod', 'unlink', 'os.open'} <= kinds
    assert any('best/' in p for p in points) and any('examples/' in p for p in points), points
    steps = []
    for k in range(len(points)):
        d = shutil.copytree(template, tmp_path / f'at{k}')
        with monkeypatch.context() as m:
            faults = Faults(d, fail_at=k).patch(m, R, V)
            code, err = resume(d)
        steps.append(check_failed_run(d, code, err, faults, straight, template))
        if code:
            code, err = resume(d)                                        # space freed: go on
            assert code == 0, (points[k], err)
        assert same_weights(d, straight) and records(d) == records(straight), points[k]
        assert same_weights(d / 'best', straight / 'best'), points[k]
        assert json.loads((d / 'metrics.json').read_text())['val_loss'] == json.loads((straight / 'metrics.json').read_text())['val_loss']
        left = {'.staging', '.pending'} | ({'.lock'} if points[k] != 'unlink .lock' else set())  # a stale lock is no harm
        assert not left & set(os.listdir(d)), (points[k], os.listdir(d))
        shutil.rmtree(d)
    assert {2, 3} <= set(steps) and None in steps  # failures before and after the commit point, and ignored ones


def test_every_write_of_a_new_run_can_fail(small_runs, tmp_path, monkeypatch):
    """A new run fails at each write up to its first checkpoint: one line, and the directory it made is gone (so that
    trying again is never refused with 'not empty'), or, failing after the commit point, resumable."""
    straight, _ = small_runs
    small(monkeypatch)
    with monkeypatch.context() as m:
        faults = Faults(tmp_path / 'dry').patch(m, R, V)
        assert cli([*SMALL, '--output-dir', tmp_path / 'dry'])[0] == 0
    first = faults.points.index('replace trainer_state.safetensors') + 1  # the first checkpoint is in place
    assert faults.points[0] == 'mkdir .' and first > 40
    outcomes = set()
    for k in range(first + 1):
        d = tmp_path / f'at{k}'
        with monkeypatch.context() as m:
            faults = Faults(d, fail_at=k).patch(m, R, V)
            code, err = cli([*SMALL, '--output-dir', d])
        assert faults.failed and code in (0, 1), (faults.points[-1], code, err)
        if code == 1:
            line = one_line(err)
            assert line.startswith('nanovlm-train: error: cannot ') and str(d) in line and faults.failed[2] in line, line
        if d.exists() and code == 1:                                     # committed: resume it
            assert (d / '.staging' / 'COMMIT').exists() or (d / 'trainer_state.json').exists(), os.listdir(d)
            assert 'the last good checkpoint (step 2)' in err, err
            assert resume(d)[0] == 0
            outcomes.add('resumed')
        else: outcomes.add('removed' if code else 'ignored')
        if d.exists(): assert same_weights(d, straight), faults.failed
        shutil.rmtree(d, ignore_errors=True)
    assert outcomes == {'removed', 'resumed', 'ignored'}, outcomes


def test_every_write_of_save_pretrained_can_fail(tmp_path, monkeypatch):
    """Chapter 5's save_pretrained over an older save of the model: a failure at any point raises, leaves no temporary
    file, and the directory loads as the old model or the new one, never a mix."""
    cfg = get_preset('tiny', vit_n_blocks=1, lm_n_blocks=1)
    torch.manual_seed(0)
    old, new = VisionLanguageModel(cfg), VisionLanguageModel(cfg)
    old.save_pretrained(tmp_path / 'dry')
    with monkeypatch.context() as m:
        faults = Faults(tmp_path / 'dry').patch(m, V)
        new.save_pretrained(tmp_path / 'dry')
    assert {p.split()[0] for p in faults.points} >= {'save_model', 'chmod', 'fsync', 'open', 'write', 'replace'}
    seen = set()
    for k in range(len(faults.points)):
        d = tmp_path / f'at{k}'
        old.save_pretrained(d)
        with monkeypatch.context() as m:
            faults = Faults(d, fail_at=k).patch(m, V)
            ignored = False
            try: new.save_pretrained(d)
            except Exception as e: assert faults.failed[2] in str(e), (faults.failed, e)
            else: ignored = True  # mkdir of a directory that exists: pathlib lets any error of it pass
        assert faults.failed, k
        assert sorted(os.listdir(d)) in (['config.json', 'model.safetensors'],), (faults.failed, os.listdir(d))
        loaded = VisionLanguageModel.from_pretrained(d).state_dict()
        which = [name for name, ref in (('old', old), ('new', new))
                 if all(torch.equal(v, ref.state_dict()[n]) for n, v in loaded.items())]
        assert len(which) == 1 and (not ignored or which == ['new']), faults.failed
        seen.add('ignored' if ignored else which[0])
    assert seen == {'old', 'new', 'ignored'}


def test_a_real_file_size_limit_is_one_line_and_leaves_nothing(tmp_path):
    """The operating system's own error through the safetensors writer (no mock): RLIMIT_FSIZE makes every file over 1 MB
    fail with 'File too large'. The new run says so in one line and removes the directory it made; without the limit
    the same command then trains (no 'not empty' trap)."""
    d = tmp_path / 'run'
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))
    r = run([*TRAIN, *FAST, '--output-dir', d], preexec_fn=limit)
    assert r.returncode == 1, (r.returncode, r.stderr[-3000:])
    assert one_line(r.stderr) == (f'nanovlm-train: error: cannot write best/ in {d} (File too large); no checkpoint was '
                                  'written: raise the file-size limit (ulimit -f), then start the run again')
    assert not d.exists()
    r = run([*TRAIN, *FAST, '--output-dir', d])
    assert r.returncode == 0, r.stderr[-3000:]


# ================================================================ signals

@pytest.fixture(scope='module')
def straight_run(tmp_path_factory):
    d = tmp_path_factory.mktemp('straight') / 'run'
    r = subprocess.run([*TRAIN, *FAST, '--steps', '6', '--save-every', '2', '--log-every', '1', '--output-dir', str(d)],
                       capture_output=True, text=True, env=env(), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return d


@pytest.mark.parametrize('sig, where, n, last_good', [
    (signal.SIGINT, 'step', 5, 4),   # Ctrl-C in step 5: its batch read, its update not made
    (signal.SIGTERM, 'save', 4, 2),  # SIGTERM while the step-4 checkpoint is half written
])
def test_a_signal_stops_the_run_in_one_line(straight_run, tmp_path, sig, where, n, last_good):
    d, marker = tmp_path / 'run', tmp_path / 'paused'
    p = subprocess.Popen([sys.executable, ROOT / 'tests' / 'pause_at.py', where, str(n), marker, *FAST, '--steps', '6',
                          '--save-every', '2', '--log-every', '1', '--output-dir', d], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env(), start_new_session=True)
    try:
        deadline = time.time() + 240
        while not marker.exists() and p.poll() is None and time.time() < deadline: time.sleep(0.05)
        assert marker.exists(), p.communicate()[1][-3000:]
        if sig == signal.SIGINT: os.killpg(p.pid, sig)  # as a terminal sends Ctrl-C: to the process group
        else: p.send_signal(sig)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None: p.kill()
    assert p.returncode == 128 + sig, (p.returncode, err[-3000:])
    name = 'SIGINT (Ctrl-C)' if sig == signal.SIGINT else 'SIGTERM'
    assert one_line(err) == (f'nanovlm-train: stopped by {name}; the last good checkpoint (step {last_good}) in {d} is '
                             'intact: continue with --resume (resume=True)')
    assert json.loads((d / 'trainer_state.json').read_text())['step'] == last_good and not (d / '.lock').exists()
    r = run([*TRAIN, '--resume', '--output-dir', d, '--threads', '1', '--quiet'])
    assert r.returncode == 0, r.stderr[-3000:]
    assert same_weights(d, straight_run) and records(d) == records(straight_run)


# ================================================================ one writer per run directory

def test_two_runs_started_together_one_is_refused(tmp_path):
    """Two new runs into one directory, held until both are ready and released at once: both passed the check that the
    directory is empty, so only the lock can keep one out. One trains; the other is refused, naming the first."""
    d = tmp_path / 'run'
    procs = [subprocess.Popen([str(c) for c in [sys.executable, ROOT / 'tests' / 'pause_at.py', 'lock', 0,
                                                tmp_path / f'ready{i}', *FAST, '--steps', '8', '--output-dir', d]],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env()) for i in range(2)]
    try:
        deadline = time.time() + 240
        while not all((tmp_path / f'ready{i}').exists() for i in range(2)) and time.time() < deadline:
            assert all(p.poll() is None for p in procs), [p.communicate()[1][-2000:] for p in procs]
            time.sleep(0.05)
        for i in range(2): (tmp_path / f'ready{i}.go').write_text('')
        results = [(p.pid, p.returncode, err) for p in procs for _, err in [p.communicate(timeout=300)]]
    finally:
        for p in procs:
            if p.poll() is None: p.kill()
    won = [r for r in results if r[1] == 0]
    lost = [r for r in results if r[1] != 0]
    assert len(won) == 1 and len(lost) == 1, [(r[1], r[2][-500:]) for r in results]
    assert lost[0][1] == 1 and one_line(lost[0][2]) == (
        f'nanovlm-train: error: output directory {d} is in use by another nanovlm-train (pid {won[0][0]}); wait for it '
        'to end, or choose another output directory')
    assert json.loads((d / 'trainer_state.json').read_text())['step'] == 8 and not (d / '.lock').exists()


def test_kill_9_of_the_holder_frees_the_run_directory(tmp_path):
    d = tmp_path / 'run'
    holder = subprocess.Popen([str(c) for c in [*TRAIN, *FAST, '--steps', '100000', '--output-dir', d]],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env())
    try:
        deadline = time.time() + 240
        while time.time() < deadline and holder.poll() is None:
            if (d / '.lock').exists() and (d / '.lock').read_text().strip() == str(holder.pid): break
            time.sleep(0.05)
        r = run([*TRAIN, *FAST, '--overwrite', '--output-dir', d])
        assert r.returncode == 1 and f'is in use by another nanovlm-train (pid {holder.pid})' in one_line(r.stderr)
    finally:
        holder.kill()                                                    # SIGKILL: no clean-up at all
        holder.wait()
    assert (d / '.lock').read_text().strip() == str(holder.pid)          # left behind, but nobody holds it
    r = run([*TRAIN, *FAST, '--overwrite', '--output-dir', d])
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((d / 'trainer_state.json').read_text())['step'] == 4 and not (d / '.lock').exists()


# ================================================================ files from other tools

def foreign_data(root: Path, n=20) -> tuple[Path, Path]:
    """The same n ShapesVQA rows twice: as a tidy JSONL file, and as Windows tools and people write them (a BOM, CRLF,
    no newline after the last line; images named with spaces, accents, upper-case or no extensions)."""
    tidy, odd = root / 'tidy', root / "données d'été 2024"
    tidy.mkdir()
    (odd / 'Photos ñ').mkdir(parents=True)
    names = ['Image {i}.PNG', 'photo {i}.JPG', 'Photos ñ/ça {i}.jpeg', 'scan_{i}']  # the last: no extension at all
    lines, odd_lines = [], []
    for i in range(n):
        item = ShapesVQA('train')[i]
        fmt = 'JPEG' if i % 4 in (1, 2) else 'PNG'
        item['images'][0].save(tidy / f'{i}.img', format=fmt)
        shutil.copy(tidy / f'{i}.img', odd / names[i % 4].format(i=i))
        lines.append(json.dumps({'image': f'{i}.img', 'texts': item['texts']}))
        odd_lines.append(json.dumps({'image': names[i % 4].format(i=i), 'texts': item['texts']}, ensure_ascii=False))
    (tidy / 'rows.jsonl').write_text('\n'.join(lines) + '\n', encoding='utf-8')
    (odd / 'train set.jsonl').write_bytes(b'\xef\xbb\xbf' + '\r\n'.join(odd_lines).encode('utf-8'))
    return tidy / 'rows.jsonl', odd / 'train set.jsonl'


def test_jsonl_and_images_from_other_tools_are_read(tmp_path):
    tidy, odd = foreign_data(tmp_path)
    a, b = read_jsonl(tidy)[0], read_jsonl(odd)[0]
    assert len(a) == len(b) == 20 and [r['texts'] for r in a] == [r['texts'] for r in b]
    for ra, rb in zip(a, b):
        with Image.open(ra['images'][0]) as ia, Image.open(rb['images'][0]) as ib:
            assert ia.tobytes() == ib.tobytes()


def test_training_on_files_from_other_tools_is_the_same_run(tmp_path, monkeypatch):
    "nanovlm-train on the Windows-made copy (a BOM, CRLF, odd names) trains exactly as on the tidy file."
    small(monkeypatch)
    tidy, odd = foreign_data(tmp_path)
    args = ['--steps', '2', '--batch-size', '6', '--eval-every', '0', '--threads', '1', '--quiet', '--precision', 'fp32']
    for data, out in ((tidy, 'a'), (odd, 'b')):
        code, err = cli([*args, '--data', data, '--output-dir', tmp_path / 'runs ü' / out])
        assert code == 0, err
    assert same_weights(tmp_path / 'runs ü' / 'a', tmp_path / 'runs ü' / 'b')


def test_json_files_with_a_byte_order_mark_are_read(small_runs, tmp_path, monkeypatch):
    "A run directory whose JSON files a Windows editor saved (with a BOM) loads, and resumes, as before."
    straight, _ = small_runs
    d = shutil.copytree(straight, tmp_path / 'run')
    for name in ('config.json', 'train_config.json', 'tokenizer.json', 'tokenizer_config.json', 'preprocessor_config.json'):
        (d / name).write_bytes(b'\xef\xbb\xbf' + (d / name).read_bytes())
    assert VLMConfig.from_json(d / 'config.json') == VLMConfig.from_json(straight / 'config.json')
    assert TrainConfig.from_json(d / 'train_config.json') == TrainConfig.from_json(straight / 'train_config.json')
    VisionLanguageModel.from_pretrained(d)
    tok, ref = get_tokenizer(d), get_tokenizer(straight)
    assert tok.encode('What color is the circle?') == ref.encode('What color is the circle?')
    assert tok.eos_token_id == ref.eos_token_id
    assert load_image_processor(d).normalize == load_image_processor(straight).normalize
    small(monkeypatch)
    code, err = resume(d)  # at its last step already: evaluates and writes the results
    assert code == 0, err


# ================================================================ nanovlm-generate: a file that vanishes mid-read

def test_a_checkpoint_file_that_vanishes_while_generate_reads_it(small_runs, monkeypatch, capsys):
    """Each file nanovlm-generate reads (the image, config.json, model.safetensors each time it is opened, the tokenizer's
    and the image processor's files) disappears just as it is opened, in turn: one line naming it, status 1."""
    from nanovlm.generate import generate_cli
    import builtins, errno, safetensors
    import nanovlm.checkpoints as C
    straight, _ = small_runs
    args = ['--checkpoint', str(straight), '--image', str(straight / 'examples' / '0.png'), '--prompt', 'Is there a circle?',
            '--greedy', '--max-new-tokens', '2']
    real_open, real_safe_open, seen = builtins.open, safetensors.safe_open, []
    def reads(fail_at):
        def point(path):
            p = os.path.abspath(os.fspath(path))
            if not p.startswith(str(straight) + os.sep): return
            seen.append(os.path.relpath(p, straight))
            if len(seen) - 1 == fail_at: raise FileNotFoundError(errno.ENOENT, 'No such file or directory', p)
        def opener(file, *a, **k):
            if not isinstance(file, int): point(file)
            return real_open(file, *a, **k)
        def safe_open(path, *a, **k):
            point(path)
            return real_safe_open(path, *a, **k)
        return opener, safe_open
    def generate(fail_at=None):
        seen.clear()
        opener, safe_open = reads(fail_at)
        with monkeypatch.context() as m:
            for mod, name, f in ((builtins, 'open', opener), (io, 'open', opener), (safetensors, 'safe_open', safe_open)):
                m.setattr(mod, name, f)
            code = generate_cli(args)
        return code, capsys.readouterr()
    code, out = generate()
    assert code == 0 and out.out.strip(), out
    points = list(seen)
    assert {'config.json', 'model.safetensors', 'tokenizer.json', 'preprocessor_config.json'} <= set(points), points
    for k, name in enumerate(points):
        code, out = generate(fail_at=k)
        assert code == 1 and out.out == '', (name, code, out)
        line = one_line(out.err)
        assert line.startswith('nanovlm-generate: error: ') and name in line, (name, line)


# ---- nanovlm-generate: a directory as --image, a checkpoint file that changes while it is read, a huge seed -----

def test_generate_with_a_directory_as_image(small_runs, capsys):
    from nanovlm.generate import generate_cli
    straight, _ = small_runs
    code = generate_cli(['--checkpoint', str(straight), '--image', str(straight / 'examples'), '--prompt', 'x'])
    err = capsys.readouterr().err
    assert code == 1 and one_line(err) == (f"nanovlm-generate: error: image file {straight / 'examples'} is a "
                                           "directory; pass one of the images in it"), err


def test_a_jsonl_row_whose_image_is_a_directory(tmp_path):
    from nanovlm.data import read_jsonl
    (tmp_path / 'pics').mkdir()
    (tmp_path / 'rows.jsonl').write_text('{"image": "pics", "texts": [{"user": "q?", "assistant": "a"}]}\n')
    with pytest.raises(IsADirectoryError, match=r'rows.jsonl line 1: image file .*pics is a directory, not an image'):
        read_jsonl(tmp_path / 'rows.jsonl')


def test_generate_refuses_a_seed_torch_cannot_take(small_runs, capsys):
    from nanovlm.generate import generate_cli
    straight, _ = small_runs
    with pytest.raises(SystemExit) as e:
        generate_cli(['--checkpoint', str(straight), '--image', str(straight / 'examples' / '0.png'), '--prompt', 'x',
                      '--seed', str(2**70)])
    assert e.value.code == 2 and f'--seed must be between {-2**63} and {2**64 - 1}' in capsys.readouterr().err


def test_a_checkpoint_file_replaced_while_generate_reads_it(small_runs, monkeypatch, capsys):
    "Every safetensors open of the run, in turn, finds a truncated file: one line and exit 1, never a traceback."
    from nanovlm.generate import generate_cli
    import safetensors
    from safetensors import SafetensorError
    straight, _ = small_runs
    args = ['--checkpoint', str(straight), '--image', str(straight / 'examples' / '0.png'), '--prompt',
            'Is there a circle?', '--greedy', '--max-new-tokens', '2']
    real, calls = safetensors.safe_open, []
    def truncated_from(n):
        def safe_open(path, *a, **k):
            calls.append(path)
            if len(calls) >= n: raise SafetensorError('Error while deserializing header: MetadataIncompleteBuffer')
            return real(path, *a, **k)
        return safe_open
    with monkeypatch.context() as m:
        m.setattr(safetensors, 'safe_open', truncated_from(10**6))
        assert generate_cli(args) == 0
    opened = len(calls)
    assert opened >= 1
    capsys.readouterr()
    for n in range(1, opened + 1):
        calls.clear()
        with monkeypatch.context() as m:
            m.setattr(safetensors, 'safe_open', truncated_from(n))
            code = generate_cli(args)
        out = capsys.readouterr()
        assert code == 1 and out.out == '' and one_line(out.err).startswith('nanovlm-generate: error: '), (n, out)
