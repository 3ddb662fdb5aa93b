"The shape diagrams say what the model does: the test reads the text matplotlib actually draws."
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn
from nanovlm.config import get_preset
from nanovlm.shapes import (collapse_repeats, draw_join, draw_stages, drawn_text, join_diagram, shape_diagram,
                            trace_shapes, wrap_name)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close('all')


@pytest.mark.parametrize('name', ['0–3', 'blocks.0–11', 'vision_encoder.blocks.0–11', 'MP', 'ViTBlock',
                                  'LanguageModelGroupedQueryAttention', 'a+b (c/d)', 'x..y'])
def test_wrapping_only_adds_line_breaks(name):
    assert wrap_name(name).replace('\n', '') == name


def test_a_folded_stack_is_drawn_with_its_range():
    stack = nn.Sequential(*[nn.Linear(8, 8) for _ in range(4)], nn.Linear(8, 2))
    fig = draw_stages(trace_shapes(stack, torch.randn(3, 8)), title='stack')
    assert drawn_text(fig) == ['stack', 'input\n(3, 8)', '(3, 8)', '0–3\nLinear ×4\n288 params', '(3, 8)',
                               '4\nLinear\n18 params', '(3, 2)', 'output\n(3, 2)']


def test_vit_blocks_keep_their_dash():
    from nanovlm.vision_transformer import ViT
    cfg = get_preset('tiny')
    shape_diagram(ViT(cfg), torch.rand(1, 3, cfg.vit_img_size, cfg.vit_img_size))
    assert any(t.startswith(f'blocks.0–{cfg.vit_n_blocks - 1}\nViTBlock ×{cfg.vit_n_blocks}')
               for t in drawn_text(plt.gcf()))


def test_a_stage_inside_a_stage_counts_each_parameter_once():
    "The ViT's conv, then the rest of its patch embedding: the grid on the arrow between, the conv counted once."
    from nanovlm.vision_transformer import ViT
    from nanovlm.shapes import n_params
    cfg = get_preset('tiny')
    vit, S = ViT(cfg).eval(), cfg.vit_img_size
    blocks = [f'blocks.{i}' for i in range(cfg.vit_n_blocks)]
    names = ['patch_embedding.conv', 'patch_embedding', *blocks, 'layer_norm']
    rec = shape_diagram(vit, torch.rand(2, 3, S, S), names=names)
    conv, rest = rec[1], rec[2]
    assert conv.n_params == n_params(vit.patch_embedding.conv)
    assert rest.n_params == vit.patch_embedding.position_embedding.numel()  # not the conv's weights again
    assert sum(s.n_params for s in rec) == n_params(vit)
    g = S // cfg.vit_patch_size
    arrows = [t for t in drawn_text(plt.gcf()) if t.startswith('(')]
    C = cfg.vit_hidden_dim
    assert arrows[:3] == [f'(2, 3, {S}, {S})', f'(2, {C}, {g}, {g})', f'(2, {g * g}, {C})']


def test_the_vlm_is_drawn_as_two_branches_that_meet():
    from nanovlm.vision_language_model import VisionLanguageModel
    cfg = get_preset('tiny')
    model = VisionLanguageModel(cfg).eval()
    ids, img = torch.randint(1, cfg.lm_vocab_size, (2, 7)), torch.rand(2, 3, cfg.vit_img_size, cfg.vit_img_size)
    chains, meet, after = join_diagram(model, ids, img, branches={'image': ['vision_encoder', 'MP'],
                                       'input_ids': ['decoder.token_embedding']}, after=['decoder', 'decoder.head'])
    N, C = cfg.n_image_tokens, cfg.lm_hidden_dim
    assert meet.in_shapes == [(2, N, C), (2, 7, C)] and meet.out_shapes == [(2, N + 7, C)]
    text = drawn_text(plt.gcf())
    assert 'concatenate\ntorch.cat' in text
    assert f'image\n(2, 3, {cfg.vit_img_size}, {cfg.vit_img_size})' in text and 'input_ids\n(2, 7)' in text
    S, P, V = cfg.vit_img_size, cfg.vit_img_size // cfg.vit_patch_size, cfg.lm_vocab_size
    arrows = [t for t in text if t.startswith('(')]  # in drawing order: the image row, the text row, the rest
    assert arrows == [f'(2, 3, {S}, {S})', f'(2, {P * P}, {cfg.vit_hidden_dim})', f'(2, {N}, {C})',  # image
                      '(2, 7)', f'(2, 7, {C})',  # text
                      f'(2, {N + 7}, {C})', f'(2, 7, {C})', f'(2, 7, {V})']  # joined, decoder, head (text positions)


def test_join_rows_and_arrows():
    "A join of three branches of different lengths: each branch row has its own arrow into the join."
    from nanovlm.shapes import Stage
    branch = lambda n, L: [Stage(n, 'input', 0, [], [(1, L)]), Stage(f'{n}.f', 'Linear', 4, [(1, L)], [(1, L, 2)])]
    fig = draw_join([branch('a', 3), branch('b', 4), branch('c', 5)[:1]],
                    Stage('cat', 'torch.cat', 0, [(1, 3, 2), (1, 4, 2), (1, 5)], [(1, 12, 2)]),
                    [Stage('head', 'Linear', 6, [(1, 12, 2)], [(1, 12, 3)]), Stage('output', 'output', 0, [(1, 12, 3)], [])])
    text = drawn_text(fig)
    assert [t for t in text if t in ('(1, 3, 2)', '(1, 4, 2)', '(1, 5)')] == ['(1, 3, 2)', '(1, 4, 2)', '(1, 5)']
    assert 'cat\ntorch.cat' in text and '(1, 12, 2)' in text
