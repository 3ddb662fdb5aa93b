"Chapter 6 (nanovlm.data): bad-input battery, dataset/tokenizer/processor behaviour, ShapesVQA properties, parity with transformers."
import hashlib, io, json, pickle, random, warnings
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from nanovlm.config import get_preset
from nanovlm.data import (DESCRIBE_QUESTION, DESCRIBE_QUESTIONS, SHAPE_COLORS, SHAPE_KINDS, EOS_TOKEN, QTYPES, ImageProcessor, ShapesVQA, Tokenizer, VQACollator, VQADataset,
                          exact_match, format_answer, format_prompt, get_image_processor, get_tokenizer,
                          describe_scene, shapes_tokenizer, to_rgb, train_tokenizer)
from nanovlm.data_details import multiple_choice_match


@pytest.fixture(scope='module')
def tok(): return shapes_tokenizer()

@pytest.fixture(scope='module')
def proc(): return get_image_processor(32)

def png_bytes(color=(200, 10, 10), size=(40, 30)):
    b = io.BytesIO(); Image.new('RGB', size, color).save(b, 'PNG'); return b.getvalue()

def turn(q='What color is the circle?', a='red'): return {'user': q, 'assistant': a}

def write_jsonl(path, rows):
    path.write_text('\n'.join(r if isinstance(r, str) else json.dumps(r) for r in rows) + '\n')
    return path


# ---------------------------------------------------------------- bad inputs

@pytest.fixture
def folder(tmp_path):
    (tmp_path / 'pics').mkdir()
    (tmp_path / 'pics' / 'ok.png').write_bytes(png_bytes())
    (tmp_path / 'pics' / 'corrupt.png').write_bytes(b'\x89PNG\r\n\x1a\n' + bytes(random.Random(0).randbytes(300)))
    good = png_bytes(size=(64, 64))
    (tmp_path / 'pics' / 'truncated.png').write_bytes(good[:len(good) // 2])
    (tmp_path / 'pics' / 'notimage.png').write_text('hello')
    return tmp_path

@pytest.mark.parametrize('name', ['corrupt.png', 'truncated.png', 'notimage.png'])
def test_undecodable_image_names_line_and_file(folder, tok, proc, name):
    "Every image is decoded when the file is read: a bad one stops the load, naming the line (or is skipped, and listed)."
    path = write_jsonl(folder / 'd.jsonl', [{'image': 'pics/ok.png', 'texts': [turn()]},
                                           {'image': f'pics/{name}', 'texts': [turn()]}])
    with pytest.raises(ValueError, match=rf'd.jsonl line 2: cannot decode image .*{name}'):
        VQADataset.from_jsonl(path, tok, proc)
    skip = VQADataset.from_jsonl(path, tok, proc, on_error='skip')
    assert len(skip) == 1 and len(skip.skipped) == 1 and 'd.jsonl line 2: cannot decode image' in skip.skipped[0]
    assert skip[0]['image'].shape == (3, 32, 32)

@pytest.mark.parametrize('name', ['corrupt.png', 'truncated.png', 'notimage.png'])
def test_image_spoiled_after_loading_names_line(folder, tok, proc, name):
    "An image that goes bad after the file was read still names its line when the row is read."
    (folder / 'pics' / 'later.png').write_bytes(png_bytes())
    path = write_jsonl(folder / 'd.jsonl', [{'image': 'pics/ok.png', 'texts': [turn()]},
                                           {'image': 'pics/later.png', 'texts': [turn()]}])
    ds = VQADataset.from_jsonl(path, tok, proc)
    skip = VQADataset.from_jsonl(path, tok, proc, on_error='skip')
    (folder / 'pics' / 'later.png').write_bytes((folder / 'pics' / name).read_bytes())
    assert ds[0]['image'].shape == (3, 32, 32)
    with pytest.raises(ValueError, match=r'd.jsonl line 2: cannot decode image'): ds[1]
    assert skip[1] == {'skipped': skip[1]['skipped'], 'index': 1} and 'later.png' in skip[1]['skipped']
    col = VQACollator(tok, 48)
    batch = col([skip[0], skip[1]])
    assert batch['input_ids'].shape[0] == 1 and batch['n_skipped'] == 1 and col.n_skipped == 1 and batch['index'] == [0]

def test_undecodable_bytes_in_memory(tok, proc):
    rows = [{'images': [{'bytes': b'not an image', 'path': None}], 'texts': [turn()]}]
    with pytest.raises(ValueError, match='row 0: cannot decode image'): VQADataset(rows, tok, proc)[0]

def test_missing_file_in_jsonl(folder, tok, proc):
    path = write_jsonl(folder / 'd.jsonl', [{'image': 'pics/ok.png', 'texts': [turn()]},
                                           {'image': 'pics/gone.png', 'texts': [turn()]}])
    with pytest.raises(FileNotFoundError, match=r'd.jsonl line 2: image file .*gone.png not found'):
        VQADataset.from_jsonl(path, tok, proc)
    ds = VQADataset.from_jsonl(path, tok, proc, on_error='skip')
    assert len(ds) == 1 and len(ds.skipped) == 1 and 'gone.png' in ds.skipped[0]

def test_missing_file_in_memory_rows(tmp_path, tok, proc):
    rows = [{'images': [str(tmp_path / 'nope.png')], 'texts': [turn()]}]
    with pytest.raises(FileNotFoundError, match=r'row 0: image file .*nope.png not found'): VQADataset(rows, tok, proc)[0]
    assert VQADataset(rows, tok, proc, on_error='skip')[0]['index'] == 0

def test_file_deleted_after_loading(folder, tok, proc):
    (folder / 'pics' / 'later.png').write_bytes(png_bytes())
    ds = VQADataset.from_jsonl(write_jsonl(folder / 'd.jsonl', [{'image': 'pics/later.png', 'texts': [turn()]}]), tok, proc)
    (folder / 'pics' / 'later.png').unlink()
    with pytest.raises(FileNotFoundError, match='later.png not found'): ds[0]

@pytest.mark.parametrize('answer', ['', '   '])
def test_empty_answer(folder, tok, proc, answer):
    rows = [{'images': [Image.new('RGB', (8, 8))], 'texts': [turn(), turn('Is there a square?', answer)]}]
    with pytest.raises(ValueError, match=r"row 0 turn 1: empty answer \(question 'Is there a square\?'\)"):
        VQADataset(rows, tok, proc)[0]
    assert 'skipped' in VQADataset(rows, tok, proc, on_error='skip')[0]
    path = write_jsonl(folder / 'd.jsonl', [{'image': 'pics/ok.png', 'texts': [turn(a=answer)]}])
    with pytest.raises(ValueError, match='d.jsonl line 1.* turn 0: empty answer'): VQADataset.from_jsonl(path, tok, proc)

@pytest.mark.parametrize('row', [{'texts': [turn()]}, {'images': [], 'texts': [turn()]}, {'images': None, 'texts': [turn()]}])
def test_row_without_image(tok, proc, row):
    with pytest.raises(ValueError, match='row 0: the row has no image'): VQADataset([row], tok, proc)[0]

@pytest.mark.parametrize('texts', [[], None, [{'user': 'q'}], ['just a string']])
def test_bad_turns(tok, proc, texts):
    with pytest.raises(ValueError, match='row 0'): VQADataset([{'images': [Image.new('RGB', (8, 8))], 'texts': texts}], tok, proc)[0]

def test_malformed_json_line(folder, tok, proc):
    path = write_jsonl(folder / 'd.jsonl', [{'image': 'pics/ok.png', 'texts': [turn()]}, '{"image": "pics/ok.png", "texts": [',
                                           '', '[1, 2]', {'image': 'pics/ok.png', 'texts': [turn(a='blue')]}])
    with pytest.raises(ValueError, match=r'd.jsonl line 2: not valid JSON'): VQADataset.from_jsonl(path, tok, proc)
    ds = VQADataset.from_jsonl(path, tok, proc, on_error='skip')
    assert len(ds) == 2 and len(ds.skipped) == 2  # the malformed line and the non-object; the blank line is not a row
    assert 'line 4: expected a JSON object' in ds.skipped[1]
    assert ds[1]['texts'][0]['assistant'] == 'blue'

def test_missing_jsonl_and_bad_options(tmp_path, tok, proc):
    with pytest.raises(FileNotFoundError, match='no JSONL file at'): VQADataset.from_jsonl(tmp_path / 'x.jsonl', tok, proc)
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'skip'"): VQADataset([], tok, proc, on_error='ignore')
    with pytest.raises(ValueError, match="on_overflow must be 'truncate' or 'drop'"): VQACollator(tok, 10, on_overflow='cut')

def test_absolute_paths_and_multi_image_rows(folder, tok, proc):
    path = write_jsonl(folder / 'd.jsonl', [{'image': str(folder / 'pics' / 'ok.png'), 'texts': [turn()]}])
    assert VQADataset.from_jsonl(path, tok, proc)[0]['image'].shape == (3, 32, 32)
    rows = [{'images': [Image.new('RGB', (8, 8), 'red'), Image.new('RGB', (8, 8), 'blue')], 'texts': [turn()]}]
    with pytest.warns(UserWarning, match='only the first is used'): x = VQADataset(rows, tok, proc)[0]['image']
    assert torch.equal(x[:, 0, 0], torch.tensor([1., 0., 0.]))


# ---------------------------------------------------------------- any indexable of dicts

class DatasetsStyle:
    "What a `datasets.Dataset` looks like to us: __len__ and __getitem__ returning dicts (PIL images inside)."
    def __init__(self, n): self.n = n
    def __len__(self): return self.n
    def __getitem__(self, i):
        if not 0 <= i < self.n: raise IndexError(i)
        return {'images': [Image.new('RGBA', (20 + i, 30), (0, 0, 255, 255))],
                'texts': [turn('How many shapes are there?', str(i % 4 + 1)), turn('Is there a cross?', 'no')],
                'source': 'synthetic'}

@pytest.mark.parametrize('rows', [DatasetsStyle(6), [DatasetsStyle(6)[i] for i in range(6)]], ids=['class', 'list'])
def test_indexables(rows, tok, proc):
    ds = VQADataset(rows, tok, proc)
    assert len(ds) == 6
    batch = next(iter(DataLoader(ds, batch_size=6, collate_fn=VQACollator(tok, 48))))
    assert batch['images'].shape == (6, 3, 32, 32) and batch['input_ids'].shape[0] == 6
    assert torch.allclose(batch['images'][:, :, 0, 0], torch.tensor([0., 0., 1.]).expand(6, 3))
    # two turns: both answers (each a word + EOS) are targets
    assert (batch['labels'] >= 0).sum(1).tolist() == [4] * 6
    assert tok.decode(batch['input_ids'][2]) == 'Question: How many shapes are there? Answer: 3 Question: Is there a cross? Answer: no'


# ---------------------------------------------------------------- collator: labels are exactly the answers

def _random_samples(tokenizer, n, rng):
    words = ['red', 'green', 'cat', 'dog', 'yes', 'no', 'top', 'left', 'café', '日本', '🙂']
    items = []
    for i in range(n):
        turns = [(' '.join(rng.choice(words) for _ in range(rng.randint(1, 6))) + '?',
                  ' '.join(rng.choice(words) for _ in range(rng.randint(1, 4)))) for _ in range(rng.randint(1, 3))]
        items.append({'image': torch.zeros(3, 4, 4), 'index': i, 'texts': [turn(u, a) for u, a in turns],
                      'prompt_ids': [tokenizer.encode(format_prompt(u)) for u, _ in turns],
                      'answer_ids': [tokenizer.encode(format_answer(a)) + [tokenizer.eos_token_id] for _, a in turns]})
    return items

@pytest.mark.parametrize('kind', ['wordlevel', 'bpe'])
def test_labels_are_exactly_the_answer_tokens(kind):
    rng = random.Random(0)
    corpus = ['Question: Answer: red green cat dog yes no top left café 日本 🙂 ?'] * 5
    t = train_tokenizer(corpus, vocab_size=300, kind=kind)
    items = _random_samples(t, 40, rng)
    batch = VQACollator(t, 10_000)(items)
    for b, it in enumerate(items):
        ids, mask, labels = batch['input_ids'][b], batch['attention_mask'][b], batch['labels'][b]
        n = int(mask.sum())
        assert mask[-n:].all() and not mask[:-n].any()  # left padding
        real, lab = ids[-n:].tolist(), labels[-n:].tolist()
        assert (labels[:-n] == -100).all()
        expected, pos = [], 0
        for p, a in zip(it['prompt_ids'], it['answer_ids']):
            pos += len(p)
            expected += [(pos + k - 1, tok_) for k, tok_ in enumerate(a)]  # position predicting each answer token
            pos += len(a)
        assert [(t_, l) for t_, l in enumerate(lab) if l != -100] == expected
        assert all(real[t_ + 1] == l for t_, l in expected)
        sep = ' ' if kind == 'wordlevel' else ''  # word-level marks each word start, the first of a turn too
        assert t.decode(real) == sep.join(format_prompt(x['user']) + format_answer(x['assistant']) for x in it['texts'])

def test_truncation_keeps_the_end_and_never_leaves_zero_targets(tok):
    rng = random.Random(1)
    items = _random_samples(train_tokenizer(['a'] * 3), 0, rng)  # no samples: empty batch works
    assert VQACollator(tok, 8)(items)['input_ids'].shape == (0, 0)
    ds = VQADataset([{'images': [Image.new('RGB', (4, 4))], 'texts': [turn('Is the circle on the left or the right?', 'left'),
                                                                       turn('What color is the circle?', 'red')]}], tok, get_image_processor(4))
    full = VQACollator(tok, 100)([ds[0]])
    L = full['input_ids'].shape[1]
    for m in range(2, L + 1):
        col = VQACollator(tok, m)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always')
            b = col([ds[0]])
        if b['input_ids'].shape[0] == 0:
            assert col.n_dropped == 1 and 'leaves no answer to learn' in str(w[-1].message)
            continue
        assert b['input_ids'].shape == (1, m) and torch.equal(b['input_ids'][0], full['input_ids'][0, -m:])
        assert (b['labels'] >= 0).sum() >= 1
        kept = b['labels'][0] >= 0
        assert torch.equal(b['labels'][0][kept], full['labels'][0, -m:][kept])  # targets are a subset of the originals
        assert (m == L) == (len(w) == 0)

def test_pad_to_max_length(tok):
    ds = VQADataset(ShapesVQA(length=4), tok, get_image_processor(64))
    b = VQACollator(tok, 48, pad_to_max_length=True)([ds[i] for i in range(4)])
    assert b['input_ids'].shape == b['labels'].shape == (4, 48) and (b['input_ids'][:, 0] == tok.pad_token_id).all()

def test_dataloader_workers_count_skips(tok, proc):
    rows = [{'images': [Image.new('RGB', (8, 8))], 'texts': [turn()]}, {'images': [], 'texts': [turn()]}] * 4
    dl = DataLoader(VQADataset(rows, tok, proc, on_error='skip'), batch_size=4, num_workers=1, collate_fn=VQACollator(tok, 48))
    batches = list(dl)
    assert sum(b['n_skipped'] for b in batches) == 4 and sum(b['input_ids'].shape[0] for b in batches) == 4


# ---------------------------------------------------------------- ShapesVQA

def _img_key(item):
    return hashlib.blake2b(item['images'][0].tobytes(), digest_size=16).hexdigest(), item['texts'][0]['user']

def test_questions_need_the_image():
    "For every question type, one question text gets different answers on different images, and blind guessing is near chance."
    ds = ShapesVQA('train', seed=3)
    by_q = defaultdict(Counter)
    qtype_of = {}
    for i in range(3000):
        _, q, a, qt = ds.scene(i)
        by_q[q][a] += 1; qtype_of[q] = qt
    for qt in QTYPES:
        qs = [q for q in by_q if qtype_of[q] == qt]
        assert qs, qt
        assert all(len(by_q[q]) >= 2 for q in qs), {q: by_q[q] for q in qs}  # the text alone never fixes the answer
        n = sum(sum(by_q[q].values()) for q in qs)
        blind = sum(by_q[q].most_common(1)[0][1] for q in qs) / n
        chance = 1 / max(len(by_q[q]) for q in qs)
        assert blind < chance + 0.1, (qt, blind, chance)

def test_answers_are_true_of_the_image():
    "Read the answers back from the rendered pixels: colours present, count of coloured blobs, side of the shape."
    ds = ShapesVQA('test', seed=0, length=200)
    rgb = {'red': (220, 40, 40), 'green': (30, 160, 60), 'blue': (40, 80, 225), 'yellow': (240, 200, 20)}
    for i in range(200):
        shapes, q, a, qt = ds.scene(i)
        px = np.asarray(ds[i]['images'][0]).astype(int)
        present = {c for c, v in rgb.items() if (np.abs(px - v).sum(-1) < 30).sum() > 20}
        assert present == {s[1] for s in shapes}
        if qt == 'count': assert int(a) == len(present)
        if qt == 'color': assert a in present
        if qt == 'side':
            ys, xs = np.nonzero(np.abs(px - rgb[shapes[0][1]]).sum(-1) < 30)
            h = px.shape[0] / 2
            assert {'left': xs.max() < h, 'right': xs.min() >= h, 'top': ys.max() < h, 'bottom': ys.min() >= h}[a]

def test_determinism_by_seed():
    a, b = ShapesVQA('train', seed=7), ShapesVQA('train', seed=7)
    order = [5, 3, 999_999, 0]
    first = {i: _img_key(a[i]) + (a[i]['texts'][0]['assistant'],) for i in order}
    assert {i: _img_key(b[i]) + (b[i]['texts'][0]['assistant'],) for i in reversed(order)} == first
    c = ShapesVQA('train', seed=8)
    assert sum(_img_key(c[i]) == first[i][:2] for i in order) == 0
    h = ShapesVQA.heldout(50)
    assert [_img_key(h[i]) for i in range(50)] == [_img_key(ShapesVQA.heldout(50)[i]) for i in range(50)]
    assert pickle.loads(pickle.dumps(h))[7]['texts'] == h[7]['texts']

def test_train_test_disjoint():
    train, test = ShapesVQA('train', seed=0), ShapesVQA.heldout(1000, seed=0)
    train_keys = [_img_key(train[i]) for i in range(6000)]
    # single-shape scenes are few, so independent draws do repeat images: the check below could fail
    assert len(set(k[0] for k in train_keys)) < len(train_keys)
    test_keys = {_img_key(test[i]) for i in range(1000)}
    assert not test_keys & set(train_keys)
    assert not {k[0] for k in test_keys} & {k[0] for k in train_keys}  # not even an image is shared

def test_shapes_vqa_arguments():
    with pytest.raises(ValueError, match='split must be one of'): ShapesVQA('val')
    with pytest.raises(ValueError, match='unknown question types'): ShapesVQA(qtypes=('colour',))
    with pytest.raises(ValueError, match='too small'): ShapesVQA(img_size=16)
    with pytest.raises(IndexError): ShapesVQA()[-1]
    assert ShapesVQA(length=10)[-1]['texts'] == ShapesVQA(length=10)[9]['texts']
    with pytest.raises(ValueError, match='grid must be even'): ShapesVQA(grid=3)
    with pytest.raises(ValueError, match='max_shapes must be 1 to 4'): ShapesVQA(max_shapes=5)
    only = ShapesVQA(qtypes=('count',), img_size=32)
    assert {only[i]['qtype'] for i in range(10)} == {'count'} and only[0]['images'][0].size == (32, 32)
    assert {only.scene(i)[2] for i in range(40)} == {'1', '2', '3', '4'}
    one = ShapesVQA(max_shapes=1)
    assert {len(one.scene(i)[0]) for i in range(50)} == {1} and {one.scene(i)[2] for i in range(3, 50, 5)} == {'yes', 'no'}
    fine = ShapesVQA(grid=4)
    for i in range(50):  # every shape inside its own 16-pixel cell
        shapes = fine.scene(i)[0]
        cells = {(x // 16, y // 16) for _, _, x, y, _ in shapes}
        assert len(cells) == len(shapes) and all(x - r > 16 * (x // 16) and x + r < 16 * (x // 16 + 1) for _, _, x, _, r in shapes)

def test_shapes_vqa_descriptions(tok):
    plain, desc = ShapesVQA('train', seed=5), ShapesVQA('train', seed=5, describe=0.5)
    kinds, orders = Counter(), Counter()
    order_of = {q: o for o, q in DESCRIBE_QUESTIONS.items()}
    for i in range(400):
        (s0, q0, a0, t0), (s1, q1, a1, t1) = plain.scene(i), desc.scene(i)
        assert s1 == s0  # the same scene, described or asked about
        kinds[t1 == 'describe'] += 1
        if t1 != 'describe': assert (q1, a1, t1) == (q0, a0, t0); continue
        order = order_of[q1]
        orders[order] += 1
        assert a1 == describe_scene(s0, order=order)
        words = a1.split()
        half = {(k, c): ['top' if y < 32 else 'bottom', 'left' if x < 32 else 'right'] for k, c, x, y, _ in s0}
        if order == 'reading':  # per shape: vertical half, horizontal half, colour, kind; in reading order
            assert len(words) == 4 * len(s0)
            halves = [(words[j] == 'bottom', words[j + 1] == 'right') for j in range(0, len(words), 4)]
            assert halves == sorted(halves)  # top before bottom, then left before right
            assert all(words[j:j + 2] == half[words[j + 3], words[j + 2]] for j in range(0, len(words), 4))
        elif order == 'color':  # per shape: colour, kind; colours in SHAPE_COLORS order
            pairs = [(words[j + 1], words[j]) for j in range(0, len(words), 2)]
            assert sorted(pairs) == sorted(half) and [c for _, c in pairs] == [c for c in SHAPE_COLORS if c in {c for _, c in pairs}]
        else:  # per shape: kind, colour, vertical half, horizontal half; kinds in SHAPE_KINDS order, absent ones skipped
            groups = [words[j:j + 4] for j in range(0, len(words), 4)]
            assert [g[0] for g in groups] == [k for k in SHAPE_KINDS if any(s[0] == k for s in s0)]
            assert all(g[2:] == half[g[0], g[1]] for g in groups)
        ids = tok.encode(format_prompt(q1) + format_answer(a1))
        assert tok.tok.token_to_id('<unk>') not in ids and len(ids) + 1 <= get_preset('tiny').lm_max_length
    assert 150 < kinds[True] < 250 and all(40 < orders[o] < 100 for o in DESCRIBE_QUESTIONS)
    assert all(ShapesVQA.heldout(200).scene(i)[3] != 'describe' for i in range(200))
    assert [desc.scene(i) for i in range(20)] == [ShapesVQA('train', seed=5, describe=0.5).scene(i) for i in range(20)]
    reading = ShapesVQA('train', seed=5, describe=0.5, describe_orders=('reading',))
    assert all(reading.scene(i)[1] == DESCRIBE_QUESTION for i in range(400) if desc.scene(i)[3] == 'describe')
    with pytest.raises(ValueError, match='describe is a fraction'): ShapesVQA(describe=-0.1)
    with pytest.raises(ValueError, match="unknown description orders"): ShapesVQA(describe_orders=())

def test_shapes_tokenizer_fits_tiny_and_covers_everything(tok):
    cfg = get_preset('tiny')
    assert tok.vocab_size <= cfg.lm_vocab_size and tok.eos_token_id == cfg.lm_eos_token_id == 0
    ds = ShapesVQA('train', seed=11)
    unk = tok.tok.token_to_id('<unk>')
    for i in range(500):
        _, q, a, _ = ds.scene(i)
        ids = tok.encode(format_prompt(q) + format_answer(a))
        assert unk not in ids and len(ids) + 1 <= cfg.lm_max_length
    assert shapes_tokenizer().tok.to_str() == tok.tok.to_str()


# ---------------------------------------------------------------- tokenizer loading, saving, parity

def test_hub_layout_dir_built_with_tokenizers(tmp_path):
    from tokenizers import Tokenizer as HFTok, models, pre_tokenizers, decoders
    raw = HFTok(models.WordLevel({'<|endoftext|>': 0, '<unk>': 1, 'hello': 2, 'world': 3}, unk_token='<unk>'))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit(); raw.decoder = decoders.WordPiece()
    raw.add_special_tokens(['<|endoftext|>'])
    repo = tmp_path / 'HuggingFaceTB--tiny'; repo.mkdir()
    raw.save(str(repo / 'tokenizer.json'))
    (repo / 'special_tokens_map.json').write_text(json.dumps({'eos_token': '<|endoftext|>'}))
    t = get_tokenizer(repo)
    assert t.encode('hello world') == [2, 3] and t.eos_token_id == t.pad_token_id == 0 and t.vocab_size == 4
    assert get_tokenizer(str(repo / 'tokenizer.json')).encode('world hello') == [3, 2]

def test_eos_from_tokenizer_config(tmp_path):
    t = train_tokenizer(['a b c'], kind='wordlevel')
    t.tok.add_special_tokens(['</s>'])
    Tokenizer(t.tok, '</s>').save(tmp_path / 'tok')
    assert get_tokenizer(tmp_path / 'tok').eos_token == '</s>'
    assert get_tokenizer(tmp_path / 'tok', eos_token=EOS_TOKEN).eos_token_id == 0
    with pytest.raises(ValueError, match="no EOS token '<s>'"): get_tokenizer(tmp_path / 'tok', eos_token='<s>')

def test_hub_cache_layout_offline(tmp_path, monkeypatch, tok):
    "A repo id resolves from the huggingface_hub cache without the network."
    snap = tmp_path / 'models--someone--shapes-tok' / 'snapshots' / ('a' * 40)
    tok.save(snap)
    (tmp_path / 'models--someone--shapes-tok' / 'refs').mkdir()
    (tmp_path / 'models--someone--shapes-tok' / 'refs' / 'main').write_text('a' * 40)
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    t = get_tokenizer('someone/shapes-tok', cache_dir=tmp_path)
    assert t.encode('Is there a cross?') == tok.encode('Is there a cross?')

def test_loading_errors_are_distinct(tmp_path, monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    msgs = []
    for arg, exc in [('nobody-xyz/does-not-exist-42', FileNotFoundError), (tmp_path, FileNotFoundError),
                     (tmp_path / 'missing' / 'tokenizer.json', FileNotFoundError), ('./nope', FileNotFoundError),
                     ('not a valid id!!', FileNotFoundError), ('', ValueError)]:
        with pytest.raises(exc) as e: get_tokenizer(arg, cache_dir=tmp_path / 'cache')
        msgs.append(str(e.value))
    assert 'offline mode is on (HF_HUB_OFFLINE=1)' in msgs[0] and 'nobody-xyz/does-not-exist-42' in msgs[0]
    assert 'tokenizer.json not found' in msgs[1]
    assert 'tokenizer.json\': no such local file or directory' in msgs[2] and "'./nope': no such local directory" in msgs[3]
    assert "'not a valid id!!': no such local directory" in msgs[4]
    assert 'shapes_tokenizer()' in msgs[5]
    bad = tmp_path / 'bad'; bad.mkdir(); (bad / 'tokenizer.json').write_text('{"not": "a tokenizer"}')
    with pytest.raises(ValueError, match='is not a valid tokenizer.json'): get_tokenizer(bad)

def test_save_is_atomic_and_checked(tmp_path, tok):
    d = tok.save(tmp_path / 'a' / 'b')
    assert sorted(p.name for p in d.iterdir()) == ['tokenizer.json', 'tokenizer_config.json']
    tok.save(d)  # overwrite in place
    assert sorted(p.name for p in d.iterdir()) == ['tokenizer.json', 'tokenizer_config.json']
    (tmp_path / 'file').write_text('x')
    with pytest.raises(ValueError, match='is a file; save\\(\\) takes a directory'): tok.save(tmp_path / 'file')
    assert pickle.loads(pickle.dumps(tok)).encode('Is there a cross?') == tok.encode('Is there a cross?')

UNICODE = ['naïve café façade', 'Ωμέγα λέξη', '中文字符和日本語のテキスト', '😀👍🏽 family: 👨‍👩‍👧', 'mixed: a→b, x² ≠ y₂', '  two  spaces\tand tab\n']

def test_unicode_round_trip_bpe():
    t = train_tokenizer(UNICODE * 3 + ['Question: Answer: plain ascii text'] * 3, vocab_size=320, kind='bpe')
    assert t.eos_token_id == 0 and t.vocab_size <= 320
    for s in UNICODE + ['unseen: Ελληνικά, 한국어, 🦄']:
        assert t.decode(t.encode(s)) == s
    with pytest.raises(ValueError, match="kind must be 'wordlevel' or 'bpe'"): train_tokenizer(['x'], kind='unigram')

def test_wordlevel_unicode_and_unknowns():
    t = train_tokenizer(['naïve café 日本語 🙂 ok!'], kind='wordlevel')
    assert t.decode(t.encode('naïve café 日本語 🙂 ok!')) == 'naïve café 日本語 🙂 ok!'
    assert t.decode(t.encode('naïve tea')) == 'naïve<unk>'
    few = train_tokenizer(['a a a b b c'], vocab_size=4)  # EOS, <unk>, then the two most frequent words
    assert few.vocab_size == 4 and few.convert_ids_to_tokens([2, 3]) == ['▁a', '▁b']

@pytest.mark.parametrize('kind', ['wordlevel', 'bpe'])
def test_parity_with_transformers(tmp_path, kind):
    transformers = pytest.importorskip('transformers')
    texts = ['Question: What color is the circle? Answer:', ' red', 'Is there a cross?', 'café 🙂 ok']
    t = train_tokenizer(texts * 5, vocab_size=300, kind=kind)
    ref = transformers.AutoTokenizer.from_pretrained(t.save(tmp_path / 'tok'))
    assert ref.eos_token_id == ref.pad_token_id == t.eos_token_id
    for s in texts:
        assert ref.encode(s, add_special_tokens=False) == t.encode(s)
        assert ref.decode(t.encode(s) + [0], skip_special_tokens=True) == t.decode(t.encode(s) + [0])
    ours = t(texts)
    theirs = ref(texts, padding=True, padding_side='left', add_special_tokens=False, return_tensors='pt')
    assert torch.equal(ours['input_ids'], theirs['input_ids']) and torch.equal(ours['attention_mask'], theirs['attention_mask'])


# ---------------------------------------------------------------- images

def test_processor_matches_pil_bilinear_then_255():
    rng = np.random.default_rng(0)
    for size, S in [((97, 61), 32), ((20, 30), 64), ((64, 64), 64)]:
        img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
        ref = torch.from_numpy(np.asarray(img.resize((S, S), Image.BILINEAR)).copy()).permute(2, 0, 1).float() / 255
        x = get_image_processor(S)(img)
        assert x.shape == (3, S, S) and x.dtype == torch.float32 and x.is_contiguous() and torch.equal(x, ref)
        y = get_image_processor(S, normalize=([0.5, 0.4, 0.3], [0.2, 0.25, 0.5]))(img)
        assert torch.allclose(y, (ref - torch.tensor([0.5, 0.4, 0.3])[:, None, None]) / torch.tensor([0.2, 0.25, 0.5])[:, None, None])

MODES = ['1', 'L', 'LA', 'P', 'PA', 'RGB', 'RGBA', 'RGBX', 'CMYK', 'YCbCr', 'LAB', 'HSV', 'I', 'I;16', 'I;16B', 'F', 'RGBa']

@pytest.mark.parametrize('mode', MODES)
def test_every_mode_becomes_rgb(mode):
    base = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8))
    img = base.convert(mode) if mode not in ('I;16', 'I;16B', 'F', 'I') else Image.new(mode, (24, 20))
    x = get_image_processor(16)(img)
    assert x.shape == (3, 16, 16) and 0 <= x.min() and x.max() <= 1
    assert to_rgb(img).mode == 'RGB'

def test_sixteen_bit_float_and_alpha_levels():
    a = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    assert np.asarray(to_rgb(Image.fromarray(a)))[0, :, 0].tolist() == [0, 100, 255]
    assert np.asarray(to_rgb(Image.fromarray(a.astype(np.int32))))[0, :, 0].tolist() == [0, 100, 255]
    f = np.array([[0.0, 0.5, 1.0, 3.0]], dtype=np.float32)
    assert np.asarray(to_rgb(Image.fromarray(f)))[0, :, 0].tolist() == [0, 128, 255, 255]
    la = Image.fromarray(np.array([[[0, 0], [0, 255], [100, 128]]], dtype=np.uint8), 'LA')
    assert np.asarray(to_rgb(la))[0, :, 0].tolist() == [255, 0, 177]  # 100·128/255 + 255·127/255
    p = Image.new('P', (2, 1)); p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762); p.putpixel((1, 0), 1); p.info['transparency'] = 0
    assert np.asarray(to_rgb(p))[0].tolist() == [[255, 255, 255], [255, 0, 0]]

def test_processor_argument_errors():
    with pytest.raises(ValueError, match='img_size must be a positive int'): ImageProcessor(0)
    with pytest.raises(ValueError, match='normalize std must be positive'): ImageProcessor(8, normalize=(0.5, 0.0))
    with pytest.raises(ValueError, match='expected a PIL.Image.Image'): get_image_processor(8)(torch.zeros(3, 8, 8))
    assert pickle.loads(pickle.dumps(get_image_processor(8, (0.5, 0.5))))(Image.new('L', (3, 3))).shape == (3, 8, 8)


# ---------------------------------------------------------------- scoring

def test_scorers():
    assert exact_match('  The  Cross. ', 'the cross') and not exact_match('crosses', 'cross')
    assert multiple_choice_match('(c)', 'C') and multiple_choice_match('C:', 'c')
    for bad in ('A', 'C is wrong', 'Clearly C', 'I think (C)', 'C or D'):
        assert not multiple_choice_match(bad, 'C'), bad
