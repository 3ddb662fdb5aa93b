"Chapter 10 (nanovlm.seeing_more): placeholder tokens, image splitting, several images per sample."
import importlib, sys, warnings
from collections import Counter
from dataclasses import asdict, fields
from pathlib import Path
import pytest
import torch
from nanovlm.config import VLMConfig, get_preset
from nanovlm.data import format_prompt, image_processor_for, render_shapes
from nanovlm.vision_language_model import VisionLanguageModel


def test_importing_chapter_10_changes_nothing_of_chapter_5():
    "The v0.1 layout stays what the existing presets and checkpoints get: no method or field is replaced."
    for m in [m for m in sys.modules if m.startswith('nanovlm.seeing_more')]: del sys.modules[m]
    before = {k: getattr(VisionLanguageModel, k) for k in ('embed', 'forward', 'generate', 'save_pretrained')}
    loader, cfg_fields = VisionLanguageModel.__dict__['from_pretrained'], [f.name for f in fields(VLMConfig)]
    importlib.import_module('nanovlm.seeing_more')
    assert {k: getattr(VisionLanguageModel, k) for k in before} == before
    assert VisionLanguageModel.__dict__['from_pretrained'] is loader
    assert [f.name for f in fields(VLMConfig)] == cfg_fields


import numpy as np
from PIL import Image
from nanovlm.seeing_more import (IMAGE_TOKEN, STRIPES_ANSWERS, STRIPES_QUESTION, TWO_IMAGE_QUESTION, ImageSplitter,
                                 LargeShapesVQA, ask_images, generate_cli, hatch, load_split_for_inference,
                                 MultiImageDataset, SplitCollator, SplitVLM, SplitVLMConfig, TwoShapesVQA,
                                 image_token_count, image_token_ids, image_tokens, prompt_ids,
                                 question_only_accuracy, seeing_more_tokenizer, split_config, split_grid,
                                 splitter_for)

TOK = seeing_more_tokenizer()
IT = image_tokens(TOK)


def _pair(seed=0):
    "A v0.1 model and a single-tile SplitVLM with the same weights."
    cfg0 = get_preset('tiny', lm_eos_token_id=TOK.eos_token_id)
    cfg1 = SplitVLMConfig(**asdict(cfg0), vlm_image_token_id=IT.image, vlm_max_img_size=64)
    torch.manual_seed(seed)
    v01 = VisionLanguageModel(cfg0).eval()
    new = SplitVLM(cfg1).eval()
    new.load_state_dict(v01.state_dict())
    return v01, new


def test_single_tile_gives_the_v01_logits():
    v01, new = _pair()
    b = TOK([format_prompt('How many shapes are there?'), format_prompt('Is there a red square?')])
    text, mask = b['input_ids'], b['attention_mask']
    images = torch.randn(2, 3, 64, 64)
    N = new.cfg.n_image_tokens
    ids = torch.cat([torch.full((2, N), IT.image), text], 1)
    with torch.no_grad():
        ref, ref_loss = v01(text, images, mask, targets=text)
        out, loss = new(ids, images, torch.cat([torch.ones(2, N, dtype=torch.long), mask], 1),
                        targets=torch.cat([torch.full((2, N), -100), text], 1))
    assert torch.equal(out[:, N:], ref)
    assert torch.equal(loss, ref_loss)


def test_single_tile_through_the_data_pipeline_matches_v01():
    "The collated sequence (padding first, then the image, then the text) gives v0.1's logits at the text."
    v01, new = _pair(1)
    img = render_shapes([('circle', 'red', 20, 20, 10)], 64)
    proc = image_processor_for(v01.cfg)
    rows = [{'images': [img], 'texts': [{'user': q, 'assistant': 'x'}]} for q in ('How many shapes are there?', 'Is there a circle?')]
    ds = MultiImageDataset(rows, TOK, ImageSplitter(64, 64))
    g = SplitCollator(TOK, 200, 16).collate_for_generation([ds[0], ds[1]])
    b = TOK([format_prompt(r['texts'][0]['user']) for r in rows])
    with torch.no_grad():
        ref, _ = v01(b['input_ids'], torch.stack([proc(img)] * 2), b['attention_mask'])
        out, _ = new(g['input_ids'], g['images'], g['attention_mask'])
    assert torch.equal(g['images'][0], proc(img))
    for r in range(2):
        real = b['attention_mask'][r].bool()
        torch.testing.assert_close(out[r, -int(real.sum()):], ref[r, real], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('drop', [1, -1])
def test_placeholder_count_mismatch_is_refused(drop):
    _, new = _pair()
    N = new.cfg.n_image_tokens
    ids = torch.cat([torch.full((1, 2 * N), IT.image), torch.tensor([[3, 4]])], 1)
    images = torch.randn(2, 3, 64, 64)
    if drop == 1: ids, want = ids[:, 1:], f'{2 * N - 1} {IMAGE_TOKEN} placeholders in input_ids but 2 tiles'
    else: images, want = images[:1], f'{2 * N} {IMAGE_TOKEN} placeholders in input_ids but 1 tiles x {N}'
    with pytest.raises(ValueError, match=want.replace('<', '.').replace('>', '.')):
        new(ids, images)


def _batch(max_img=128):
    cfg = split_config(TOK, max_img_size=max_img)
    s = splitter_for(cfg)
    big = render_shapes([('circle', 'red', 30, 30, 6), ('square', 'blue', 100, 40, 6)], 128).crop((0, 0, 128, 80))
    small = render_shapes([('cross', 'green', 32, 32, 12)], 64)
    rows = [{'images': [big, small], 'texts': [{'user': TWO_IMAGE_QUESTION, 'assistant': 'first'}]},
            {'images': [small], 'texts': [{'user': 'What color is the cross?', 'assistant': 'green'}]},
            {'images': [], 'texts': [{'user': 'Is there a circle?', 'assistant': 'no'}]},
            {'images': [small, big], 'texts': [{'user': TWO_IMAGE_QUESTION, 'assistant': 'second'}]}]
    ds = MultiImageDataset(rows, TOK, s)
    return cfg, ds, SplitCollator(TOK, cfg.lm_max_length, cfg.n_image_tokens)


def test_collator_mixes_any_number_of_images():
    cfg, ds, collate = _batch()
    b = collate([ds[i] for i in range(4)])
    assert b['grids'] == [[(2, 2), (1, 1)], [(1, 1)], [], [(1, 1), (2, 2)]]
    assert b['images'].shape == (5 + 1 + 1 + 1 + 5, 3, 64, 64)
    N = cfg.n_image_tokens
    assert (b['input_ids'] == IT.image).sum(1).tolist() == [6 * N, N, 0, 6 * N]
    assert bool((b['labels'][b['input_ids'] == IT.image] == -100).all())
    first = b['input_ids'][0][b['attention_mask'][0].bool()].tolist()
    want = prompt_ids(TOK, format_prompt(TWO_IMAGE_QUESTION), 2, IT.image)
    k = want.index(IT.image)
    assert first[k:k + image_token_count(2, 2, N)] == image_token_ids(2, 2, IT, N)
    model = SplitVLM(cfg)
    _, loss = model(b['input_ids'], b['images'], b['attention_mask'], b['labels'])
    loss.backward()
    assert all(p.grad is not None for p in model.vision_encoder.parameters())  # the tiles are trained on


def test_over_long_samples_are_dropped_or_refused_never_cut():
    cfg, ds, _ = _batch()
    short = SplitCollator(TOK, 60, cfg.n_image_tokens)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        assert short([ds[0], ds[1], ds[2]])['index'] == [1, 2]
    assert any('dropped' in str(x.message) for x in w)
    with pytest.raises(ValueError, match='a cut would split an image'):
        short.collate_for_generation([ds[0]])


def test_text_and_images_that_disagree_are_refused():
    _, ds, collate = _batch()
    row = {'images': [render_shapes([], 64)], 'texts': [{'user': TWO_IMAGE_QUESTION, 'assistant': 'first'}]}
    with pytest.raises(ValueError, match='the text has 2 <image> but the sample has 1 image'):
        MultiImageDataset([row], TOK, ImageSplitter(64, 128))[0]
    item = ds[0]
    with pytest.raises(ValueError, match='2 <image> in its prompts but 1 image'):
        collate([{**item, 'grids': item['grids'][:1]}])


def _decisive(cfg, seed=1):
    torch.manual_seed(seed)
    m = SplitVLM(cfg).eval()
    with torch.no_grad(): m.decoder.head.weight.mul_(20)
    return m


def test_generation_cache_equals_recompute_with_several_images():
    cfg, ds, collate = _batch()
    m = _decisive(cfg)
    g = collate.collate_for_generation([ds[i] for i in range(4)])
    kw = dict(max_new_tokens=6, greedy=True)
    a = m.generate(g['input_ids'], g['images'], g['attention_mask'], **kw)
    assert torch.equal(a, m.generate(g['input_ids'], g['images'], g['attention_mask'], use_cache=False, **kw))
    s1 = m.generate(g['input_ids'], g['images'], g['attention_mask'], max_new_tokens=6, seed=3)
    s2 = m.generate(g['input_ids'], g['images'], g['attention_mask'], max_new_tokens=6, seed=3, use_cache=False)
    assert torch.equal(s1, s2)


def test_generation_batched_equals_alone_with_several_images():
    cfg, ds, collate = _batch()
    m = _decisive(cfg)
    g = collate.collate_for_generation([ds[i] for i in range(4)])
    kw = dict(max_new_tokens=6, greedy=True)
    batched = m.generate(g['input_ids'], g['images'], g['attention_mask'], **kw)
    with torch.no_grad(): full, _ = m(g['input_ids'], g['images'], g['attention_mask'])
    for r in range(4):
        one = collate.collate_for_generation([ds[r]])
        assert torch.equal(m.generate(one['input_ids'], one['images'], one['attention_mask'], **kw), batched[r:r + 1])
        with torch.no_grad(): alone, _ = m(one['input_ids'], one['images'], one['attention_mask'])
        torch.testing.assert_close(full[r, -alone.shape[1]:], alone[0], atol=1e-4, rtol=1e-4)


def test_split_model_round_trips_through_save_pretrained(tmp_path):
    cfg, ds, collate = _batch()
    m = _decisive(cfg)
    m.save_pretrained(tmp_path / 'm')
    back = SplitVLM.from_pretrained(tmp_path / 'm').eval()
    assert back.cfg == m.cfg and isinstance(back.cfg, SplitVLMConfig)
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in m.state_dict().items())
    g = collate.collate_for_generation([ds[i] for i in range(4)])
    kw = dict(max_new_tokens=6, greedy=True)
    assert torch.equal(back.generate(g['input_ids'], g['images'], g['attention_mask'], **kw),
                       m.generate(g['input_ids'], g['images'], g['attention_mask'], **kw))
    with pytest.raises(ValueError, match='unknown VLMConfig key'):
        VisionLanguageModel.from_pretrained(tmp_path / 'm')


def test_v01_checkpoints_still_load_as_before_and_not_as_split(tmp_path):
    v01, _ = _pair()
    v01.save_pretrained(tmp_path / 'v01')
    back = VisionLanguageModel.from_pretrained(tmp_path / 'v01')
    assert type(back) is VisionLanguageModel and type(back.cfg) is VLMConfig
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in v01.state_dict().items())
    with pytest.raises(ValueError, match='load the checkpoint with VisionLanguageModel'):
        SplitVLM.from_pretrained(tmp_path / 'v01')


def test_splitter_and_token_arithmetic_agree():
    s = ImageSplitter(64, 192)
    for w, h in [(64, 64), (192, 120), (50, 190), (1000, 400), (3, 3)]:
        img = render_shapes([], 64).resize((w, h))
        tiles, grid = s(img)
        assert grid == split_grid(w, h, 64, 192)
        assert tiles.shape[0] == (1 if grid == (1, 1) else 1 + grid[0] * grid[1])
        assert len(image_token_ids(*grid, IT, 16)) == image_token_count(*grid, 16)
    with pytest.raises(ValueError, match='multiple of tile_size'): ImageSplitter(64, 100)


def test_task_data_is_deterministic_and_the_stripes_vanish_when_squeezed():
    a = LargeShapesVQA('train', length=30)
    assert a[4]['texts'] == LargeShapesVQA('train', length=30)[4]['texts']
    assert a[4]['images'][0].size == (128, 128)
    assert Counter(a.scene(i)[3] for i in range(30)) == {'color': 15, 'stripes': 15}
    b = LargeShapesVQA('train', length=30, qtypes=('color', 'stripes', 'shape'))
    assert Counter(b.scene(i)[3] for i in range(30)) == {'color': 10, 'stripes': 10, 'shape': 10}
    assert b.scene(2)[1].startswith('What shape is')
    assert {a.scene(i)[2] for i in range(30) if a.scene(i)[3] == 'stripes'} == set(STRIPES_ANSWERS)
    assert {a[i]['texts'][0]['user'] for i in range(1, 30, 2)} == {STRIPES_QUESTION}
    test = LargeShapesVQA('test', length=30)
    assert not {repr(a.scene(i)[0]) for i in range(30)} & {repr(test.scene(i)[0]) for i in range(30)}
    big = render_shapes(a.scene(1)[0], 128)
    across, down = hatch(big, False), hatch(big, True)
    sq = lambda im: np.asarray(im.resize((64, 64), Image.Resampling.BILINEAR), dtype=float)
    full = np.abs(np.asarray(across, float) - np.asarray(down, float)).mean()
    assert np.abs(sq(across) - sq(down)).mean() < full / 5                   # squeezed: (almost) the same pixels
    two = TwoShapesVQA('test', length=40, single=0.25)
    kinds = Counter(two[i]['qtype'] for i in range(40))
    assert set(kinds) == {'compare', 'count'}
    assert all(len(two[i]['images']) == (2 if two[i]['qtype'] == 'compare' else 1) for i in range(40))
    base = question_only_accuracy('two', n_train=400, n_eval=100)
    assert 0.3 < base['compare'] < 0.7


def _split_checkpoint(d):
    cfg, _, _ = _batch()
    m = _decisive(cfg)
    m.save_pretrained(d)
    TOK.save(d)
    splitter_for(cfg).save(d)
    return m


def test_generate_cli_reads_several_images(tmp_path, capsys):
    m = _split_checkpoint(tmp_path / 'split')
    imgs = []
    for k, n in enumerate((1, 3)):
        p = tmp_path / f'{k}.png'
        render_shapes([('circle', 'red', 20 + 10 * j, 20, 6) for j in range(n)], 64).save(p)
        imgs += ['--image', str(p)]
    model, tok, splitter = load_split_for_inference(tmp_path / 'split')
    want = ask_images(model, tok, splitter, [imgs[1], imgs[3]], TWO_IMAGE_QUESTION, greedy=True)
    assert generate_cli(['--checkpoint', str(tmp_path / 'split'), *imgs, '--prompt', TWO_IMAGE_QUESTION, '--greedy',
                         '--precision', 'fp32']) == 0
    assert capsys.readouterr().out.strip() == want[0]
    assert generate_cli(['--checkpoint', str(tmp_path / 'split'), *imgs, *imgs[:2], '--prompt', TWO_IMAGE_QUESTION]) == 1
    assert 'the text has 2 <image> but the sample has 3 image(s)' in capsys.readouterr().err


def test_generate_cli_keeps_chapter_8_behaviour_for_v01_checkpoints(tmp_path, capsys):
    from nanovlm.generate import generate_cli as generate_cli08
    v01, _ = _pair()
    v01.save_pretrained(tmp_path / 'v01')
    TOK.save(tmp_path / 'v01')
    p = tmp_path / 'a.png'
    render_shapes([('circle', 'red', 20, 20, 10)], 64).save(p)
    args = ['--checkpoint', str(tmp_path / 'v01'), '--image', str(p), '--prompt', 'How many shapes are there?',
            '--generations', '3', '--seed', '0']
    assert generate_cli08(args) == 0
    old = capsys.readouterr()
    assert generate_cli(args) == 0
    assert capsys.readouterr() == old
    assert generate_cli(args + ['--image', str(p)]) == 1
    assert 'reads one image' in capsys.readouterr().err
    for bad in (['--generations', '0'], ['--temperature', '0']):
        with pytest.raises(SystemExit) as e: generate_cli(args + bad)
        err_new = capsys.readouterr().err
        with pytest.raises(SystemExit) as e8: generate_cli08(args + bad)
        assert (e.value.code, err_new) == (e8.value.code, capsys.readouterr().err)
