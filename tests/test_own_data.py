"Your own data (issue 27): --eval-data, the image-leakage refusal, per-type reports and the question-only baseline."
import json, random, re, shutil
from pathlib import Path
import pytest
import torch
from PIL import Image
import nanovlm.train_cli as CLI
from nanovlm.config import get_preset
from nanovlm.data import ShapesVQA, read_jsonl

torch.set_num_threads(1)
FAST = ['--steps', '2', '--batch-size', '8', '--eval-every', '0', '--threads', '1', '--quiet']


def write_rows(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    return path


def shapes_file(d: Path, split: str, n: int, types: bool = True) -> Path:
    "`n` ShapesVQA items of `split` as PNGs in `d`, with a rows.jsonl (each row's qtype as its 'type' if `types`)."
    d.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        item = ShapesVQA(split)[i]
        item['images'][0].save(d / f'{i}.png')
        rows.append({'image': f'{i}.png', 'texts': item['texts'], **({'type': item['qtype']} if types else {})})
    return write_rows(d / 'rows.jsonl', rows)


def turn(q, a): return [{'user': q, 'assistant': a}]


def row(q, a, **kw): return {'texts': turn(q, a), **kw}


def train_cli(argv, capsys):
    "In-process `nanovlm-train`: (exit status, stdout, stderr); usage errors exit through SystemExit."
    try: code = CLI.train_cli(argv)
    except SystemExit as e: code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp('own')
    return root, shapes_file(root / 'train', 'train', 40), shapes_file(root / 'test', 'test', 12)


# --- --eval-data end to end -----------------------------------------------------------------------

def test_eval_data_end_to_end(files, capsys):
    root, train, test = files
    out_dir = root / 'run'
    code, out, err = train_cli([*FAST, '--data', str(train), '--eval-data', str(test), '--eval-samples', '8',
                                '--output-dir', str(out_dir)], capsys)
    assert code == 0, err
    m = json.loads((out_dir / 'metrics.json').read_text())
    held = [read_jsonl(test)[0][i] for i in CLI._eval_sample(12, 8)]
    types = sorted({r['type'] for r in held})
    assert m['eval_data'] == str(test) and m['n_eval'] == 8                # capped by --eval-samples
    assert {k for k in m if k.startswith('accuracy/')} == {f'accuracy/{t}' for t in types}
    assert sum(m[f'n_eval/{t}'] for t in types) == 8
    base = CLI.question_only_baseline(read_jsonl(train)[0], held)
    assert m['question_only'] == base['accuracy'] and all(m[f'question_only/{t}'] == base[f'accuracy/{t}'] for t in types)
    lines = out.splitlines()
    i = lines.index(next(l for l in lines if l.startswith('held-out accuracy:')))
    assert lines[i] == f"held-out accuracy: {100 * m['accuracy']:.1f}%"
    assert [l.split(':')[0].strip() for l in lines[i + 1:i + 1 + len(types)]] == types
    j = i + 1 + len(types)
    assert lines[j] == (f"question-only baseline: {100 * m['question_only']:.1f}% "
                        "(each question's most frequent answer in training, no image)")
    for t, l in zip(types, lines[j + 1:j + 1 + len(types)]):
        n = m[f'n_eval/{t}']
        assert l == f"  {t}: {100 * m[f'question_only/{t}']:.1f}% ({n} question{'s' * (n != 1)})"
    assert json.loads((out_dir / 'train_config.json').read_text())['eval_data'] == str(test)   # recorded
    d = CLI.load_data(str(train), get_preset('tiny'), 8, eval_source=str(test))
    assert (len(d['train']), len(d['eval'])) == (40, 8)                       # the training file trains whole
    assert [r['_where'] for r in d['eval'].rows] == [r['_where'] for r in held]


def test_eval_samples_takes_a_seeded_sample(files):
    _, train, test = files
    tiny = get_preset('tiny')
    whole = CLI.load_data(str(train), tiny, 50, eval_source=str(test))
    assert len(whole['eval']) == 12 and whole['eval'].rows == read_jsonl(test)[0]    # fewer rows than the cap: all
    random.seed(1)
    a = CLI.load_data(str(train), tiny, 5, eval_source=str(test))['eval'].rows
    random.seed(2)                                                                  # the global RNG plays no part
    b = CLI.load_data(str(train), tiny, 5, eval_source=str(test))['eval'].rows
    lines = [int(r['_where'].rsplit(' ', 1)[1]) for r in a]
    assert a == b and len(lines) == 5 and lines == sorted(lines)                     # in file order
    assert lines != [1, 2, 3, 4, 5]                                                 # a sample, not the file's head
    assert lines == [i + 1 for i in CLI._eval_sample(12, 5)]


def test_without_eval_data_jsonl_runs_report_answer_classes(tmp_path, capsys):
    "No 'type' keys, no --eval-data: the last tenth is held out and grouped by answer class, with the baseline."
    data = shapes_file(tmp_path / 'd', 'train', 60, types=False)
    code, out, err = train_cli([*FAST, '--data', str(data), '--eval-samples', '6', '--output-dir', str(tmp_path / 'r')],
                               capsys)
    assert code == 0, err
    m = json.loads((tmp_path / 'r' / 'metrics.json').read_text())
    held = read_jsonl(data)[0][54:]
    classes = sorted({CLI.answer_class(r['texts'][-1]['assistant']) for r in held})
    assert set(classes) <= {'yes/no', 'number', 'other'} and len(classes) >= 2
    assert m['eval_data'] is None and m['n_eval'] == 6
    assert {k for k in m if k.startswith('accuracy/')} == {f'accuracy/{c}' for c in classes}
    assert m['question_only'] == CLI.question_only_baseline(read_jsonl(data)[0][:54], held)['accuracy']
    assert re.search(r'^question-only baseline: \d+\.\d% ', out, re.M)
    for c in classes: assert re.search(rf'^  {re.escape(c)}: \d+\.\d%$', out, re.M), (c, out)


# --- the leakage refusal ----------------------------------------------------------------------------

def _leaky(root: Path, test: Path, how: str) -> Path:
    "The held-out rows plus three that show training images: by another path to the same file, or by a copy."
    rows = [json.loads(l) for l in test.read_text().splitlines()]
    for i in range(3):
        if how == 'path': image = f'../train/{i}.png'
        else:
            image = f'copy_{how}_{i}.png'
            shutil.copy(root / 'train' / f'{i}.png', root / 'test' / image)
        rows.append({'image': image, 'texts': turn('Is there a circle?', 'yes')})
    return write_rows(root / 'test' / f'leaky_{how}.jsonl', rows)


@pytest.mark.parametrize('how', ['path', 'copy'])
def test_leakage_is_refused_in_one_line(files, capsys, how):
    root, train, test = files
    leaky = _leaky(root, test, how)
    out_dir = root / f'leak-{how}'
    code, _, err = train_cli([*FAST, '--data', str(train), '--eval-data', str(leaky), '--output-dir', str(out_dir)],
                             capsys)
    assert code == 1 and err.count('\n') == 1, err
    assert err.startswith(f'nanovlm-train: error: --eval-data {leaky}: 3 of its 15 images are also in --data {train} '
                          '(the same file or a copy, e.g. '), err
    assert not out_dir.exists()                                              # refused before anything was written


def test_leakage_check_reads_only_files_of_a_shared_size(tmp_path, monkeypatch):
    "5,000 training and 1,000 held-out images: distinct sizes are never read; equal sizes are read once each."
    reads = []
    digest = CLI._digest
    monkeypatch.setattr(CLI, '_digest', lambda p: reads.append(p) or digest(p))
    def images(name, n, size, first=0):
        "`n` files of distinct bytes in `tmp_path / name`, file i holding 4 + size(i) bytes; as rows."
        d = tmp_path / name
        d.mkdir()
        for i in range(n): (d / f'{i}.bin').write_bytes((first + i).to_bytes(4, 'big') + bytes(size(i)))
        return [{'images': [d / f'{i}.bin']} for i in range(n)]
    train, held = images('train', 5000, lambda i: i), images('held', 1000, lambda i: 5000 + i, 5000)
    assert CLI.shared_images(train, held) == [] and reads == []              # no size in common: nothing is read
    same_train, same_held = images('train2', 5000, lambda i: 0), images('held2', 1000, lambda i: 0, 5000)
    shutil.copy(same_train[7]['images'][0], same_held[3]['images'][0])      # one copy among 6,000 files of one size
    assert CLI.shared_images(same_train, same_held) == [same_held[3]['images'][0].resolve()]
    assert len(reads) == len(set(reads)) == 6000                             # each file read once, not once per pair


def test_the_same_file_by_another_path_is_found_without_reading_it(tmp_path, monkeypatch):
    monkeypatch.setattr(CLI, '_digest', lambda p: pytest.fail(f'read {p}'))   # resolved paths alone must find it
    (tmp_path / 'train').mkdir()
    (tmp_path / 'test').mkdir()
    (tmp_path / 'train' / 'a.png').write_bytes(b'a')
    (tmp_path / 'test' / 'link.png').symlink_to(tmp_path / 'train' / 'a.png')
    train = [{'images': [tmp_path / 'train' / 'a.png']}]
    held = [{'images': [tmp_path / 'test' / '..' / 'train' / 'a.png']}, {'images': [tmp_path / 'test' / 'link.png']}]
    assert CLI.shared_images(train, held) == [(tmp_path / 'train' / 'a.png').resolve()]


# --- per-type grouping and the baseline ------------------------------------------------------------

def test_question_types_with_and_without_type(tmp_path):
    Image.new('RGB', (8, 8), 'red').save(tmp_path / 'a.png')
    rows = [{'image': 'a.png', 'texts': turn('What color?', 'red'), 'type': 'color'},
            {'image': 'a.png', 'texts': turn('Is it red?', 'Yes')},
            {'image': 'a.png', 'texts': {'user': 'How many?', 'assistant': '12'}},     # one turn, not in a list
            {'image': 'a.png', 'texts': turn('Weight?', '2.5')},
            {'image': 'a.png', 'texts': turn('What is it?', 'a cat')}]
    got, _ = read_jsonl(write_rows(tmp_path / 'rows.jsonl', rows))
    assert [CLI.question_type(r) for r in got] == ['color', 'yes/no', 'number', 'number', 'other']
    write_rows(tmp_path / 'eleven.jsonl', rows * 2 + rows[:1])
    d = CLI.load_data(str(tmp_path / 'eleven.jsonl'), get_preset('tiny'), 5)   # a dict 'texts' trains a tokenizer
    assert d['qtypes'] == ['color']                                         # the last tenth: one row


def test_without_eval_data_the_tokenizer_never_sees_the_held_out_tenth(tmp_path):
    Image.new('RGB', (8, 8), 'red').save(tmp_path / 'a.png')
    rows = [{'image': 'a.png', 'texts': turn('What color?', 'red')}] * 18 + \
           [{'image': 'a.png', 'texts': turn('What colour?', 'crimson')}] * 2   # the last tenth: new words
    d = CLI.load_data(str(write_rows(tmp_path / 'rows.jsonl', rows)), get_preset('tiny'), 5)
    vocab = d['tokenizer'].tok.get_vocab()
    assert '▁red' in vocab and '▁crimson' not in vocab and '▁colour' not in vocab
    assert len(d['train']) == 18 and len(d['eval']) == 2


@pytest.mark.parametrize('bad', [3, '', ['color'], None])
def test_type_must_be_a_non_empty_string(tmp_path, bad):
    Image.new('RGB', (8, 8), 'red').save(tmp_path / 'a.png')
    path = write_rows(tmp_path / 'rows.jsonl', [{'image': 'a.png', 'texts': turn('Q?', 'a'), 'type': bad}])
    if bad is None:                                                          # JSON null: no type given
        assert 'type' not in read_jsonl(path)[0][0]
        return
    with pytest.raises(ValueError, match=r"rows.jsonl line 1: 'type' must be a non-empty string"): read_jsonl(path)


def test_question_only_baseline_arithmetic():
    train = [row('Color?', 'red'), row('Color?', 'blue'), row('Color?', 'red'), row('Size?', 'big'),
             row('Size?', 'small'), {'texts': turn('Size?', 'small') + turn('Color?', 'blue')},   # every turn counts
             row('Count?', '3'), row('Count?', '3'), row('Shape?', 'blue')]
    # Color?: red 2, blue 2, a tie that goes to red, met first; Size?: small (2 of 3); Count?: 3
    # answers overall: blue 3, red 2, small 2, 3 2, big 1: blue is the guess for a question training never asked
    held = [row('Color?', 'red'), row('Color?', 'blue'), row('Size?', 'small'), row('Size?', 'small'),
            row('Count?', '3'), row('Count?', '2'), row('Never asked?', 'blue'), row('Never asked?', 'red'),
            {'texts': turn('Count?', '2') + turn('Color?', 'red'), 'type': 'colour'}]  # the last turn is asked
    # right: red, small, small, 3, blue (never asked), red (last turn): 6 of 9
    assert CLI.question_only_baseline(train, held) == {
        'accuracy': 6 / 9, 'accuracy/colour': 1.0, 'accuracy/number': 1 / 2, 'accuracy/other': 4 / 6}


# --- bad eval files and options --------------------------------------------------------------------

def test_missing_eval_file_exits_2(files, capsys):
    _, train, _ = files
    code, _, err = train_cli([*FAST, '--data', str(train), '--eval-data', 'nowhere/test.jsonl'], capsys)
    assert (code, err) == (2, 'nanovlm-train: error: --eval-data: no JSONL file at nowhere/test.jsonl '
                               '(see nanovlm-train --help)\n')


@pytest.mark.parametrize('argv, msg', [
    (['--eval-data', 'test.csv'], "--eval-data takes a .jsonl file in the format of --data, got 'test.csv'"),
    (['--data', 'shapes', '--eval-data', '{test}'], "--eval-data holds a JSONL file out of a JSONL training file, "
                                                    "but --data is 'shapes'"),
])
def test_eval_data_needs_jsonl_files(files, capsys, argv, msg):
    _, train, test = files
    argv = [a.replace('{test}', str(test)) for a in argv]
    code, _, err = train_cli([*FAST, '--data', str(train), *argv], capsys)
    assert code == 2 and msg in err, err


def test_malformed_eval_file_exits_1_naming_the_line(files, capsys, tmp_path):
    root, train, test = files
    bad = tmp_path / 'bad.jsonl'
    bad.write_text(test.read_text().splitlines()[0].replace('"0.png"', f'"{root / "test" / "0.png"}"') + '\n{"image": \n')
    code, _, err = train_cli([*FAST, '--data', str(train), '--eval-data', str(bad), '--output-dir', str(tmp_path / 'r')],
                             capsys)
    assert (code, err) == (1, f'nanovlm-train: error: {bad} line 2: not valid JSON (Expecting value at column 11)\n')
    assert not (tmp_path / 'r').exists()


def test_resume_keeps_the_eval_file_and_refuses_another(files, capsys):
    root, train, test = files
    out_dir = root / 'resumable'
    args = [*FAST, '--data', str(train), '--eval-data', str(test), '--output-dir', str(out_dir)]
    assert train_cli(args, capsys)[0] == 0
    first = json.loads((out_dir / 'metrics.json').read_text())
    code, _, err = train_cli([*FAST, '--data', str(train), '--output-dir', str(out_dir), '--resume'], capsys)
    assert code == 0, err                                                    # not given again: the recorded one
    again = json.loads((out_dir / 'metrics.json').read_text())
    assert again['eval_data'] == str(test) and again['question_only'] == first['question_only']
    other = _leaky(root, test, 'resume')
    code, _, err = train_cli([*args, '--eval-data', str(other), '--resume'], capsys)
    assert code == 2 and f"eval_data={str(test)!r} there, {str(other)!r} given" in err, err


# --- --vision-warmup ------------------------------------------------------------------------------

@pytest.mark.parametrize('argv, msg', [
    (['--data', 'shapes', '--vision-warmup', '5'], "--vision-warmup tags the images of a JSONL file; --data is 'shapes'"),
    (['--vision-warmup', '5', '--lr-backbones', '0'], '--vision-warmup trains the ViT at --lr-backbones, which is 0'),
    (['--vision-warmup', '-2'], 'vision_warmup_steps must be >= 0, or -1 for auto, got -2'),
])
def test_vision_warmup_refuses_what_it_cannot_do(files, capsys, argv, msg):
    _, train, _ = files
    code, _, err = train_cli([*FAST, '--data', str(train), *argv], capsys)
    assert code == 2 and msg in err, err


def test_answer_tags_one_row_per_image_and_every_answer(tmp_path):
    rows = [{'images': [tmp_path / f'{n}.png'], 'texts': turn(q, a)}
            for n, q, a in (('a', 'color?', 'red'), ('b', 'color?', 'blue'), ('a', 'round?', 'yes'), ('a', 'n?', '2'))]
    first, answers, tags = CLI.answer_tags(rows)
    assert (first, answers) == ([0, 1], ['2', 'blue', 'red', 'yes'])
    assert tags.tolist() == [[1, 0, 1, 1], [0, 1, 0, 0]]


def test_vision_warmup_then_a_frozen_vit_stays_and_a_resume_does_not_warm_up_again(files, capsys, monkeypatch):
    root, train, test = files
    out_dir, calls, warmed = root / 'warm', [], {}
    real = CLI.vision_warmup
    def spy(vit, *args, **kw):
        calls.append(args[2])
        losses = real(vit, *args, **kw)
        warmed.update({k: v.clone() for k, v in vit.state_dict().items()})
        return losses
    monkeypatch.setattr(CLI, 'vision_warmup', spy)
    args = [*FAST, '--steps', '3', '--data', str(train), '--eval-data', str(test), '--eval-samples', '4',
            '--vision-warmup', '5', '--lr-vision', '0', '--output-dir', str(out_dir)]
    code, out, err = train_cli(args, capsys)
    assert code == 0, err
    assert calls == [5] and 'vision warm-up: 5 steps' in out
    m = json.loads((out_dir / 'metrics.json').read_text())
    assert m['vision_warmup']['steps'] == 5 and m['steps'] == 3
    from nanovlm.vision_language_model import VisionLanguageModel
    model = VisionLanguageModel.from_pretrained(str(out_dir))
    vit = model.vision_encoder.state_dict()
    assert vit.keys() == warmed.keys() and all(torch.equal(vit[k], warmed[k]) for k in vit)   # frozen in training
    code, _, err = train_cli([*args, '--resume'], capsys)
    assert code == 0, err
    assert calls == [5]                                                     # the checkpoint holds the warmed-up ViT


def test_a_jsonl_run_warms_up_by_default_and_records_what_it_did(files, capsys):
    root, train, test = files
    out_dir = root / 'auto'
    code, out, err = train_cli([*FAST, '--steps', '8', '--data', str(train), '--eval-data', str(test),
                                '--eval-samples', '4', '--output-dir', str(out_dir)], capsys)
    assert code == 0, err
    assert 'vision warm-up: 4 steps' in out                                 # half of --steps
    tc = json.loads((out_dir / 'train_config.json').read_text())
    assert (tc['vision_warmup_steps'], tc['lr_vision']) == (4, tc['lr_backbones'] / 10)   # concrete, as done
    assert (tc['lr_mp'], tc['lr_decoder']) == (3e-4, 3e-4)                 # the tiny preset's JSONL rates
    assert json.loads((out_dir / 'metrics.json').read_text())['vision_warmup']['steps'] == 4
