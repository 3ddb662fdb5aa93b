"The image path compiles without graph breaks (the shape checks in forward are static), and the projector trains."
import pytest
import torch
from nanovlm.config import get_preset
from nanovlm.modality_projector import ModalityProjector, pixel_shuffle
from nanovlm.vision_transformer import ViT


@pytest.fixture
def tiny():
    return get_preset('tiny', vit_n_blocks=1)


@pytest.fixture(params=[None, True], ids=['auto-dynamic', 'dynamic'])
def dynamic(request): return request.param


def _compiled_matches(model, dynamic, *shapes):
    torch._dynamo.reset()
    compiled = torch.compile(model, backend='eager', fullgraph=True, dynamic=dynamic)  # fullgraph: any graph break raises
    for shape in shapes:  # by default a second batch size makes dynamo retrace with a dynamic batch dimension
        x = torch.randn(*shape)
        torch.testing.assert_close(compiled(x), model(x))


def test_vit_compiles_fullgraph(tiny, dynamic):
    _compiled_matches(ViT(tiny).eval(), dynamic, (2, 3, 64, 64), (3, 3, 64, 64))


def test_mp_compiles_fullgraph(tiny, dynamic):
    _compiled_matches(ModalityProjector(tiny), dynamic, (2, tiny.vit_n_patches, tiny.vit_hidden_dim), (3, tiny.vit_n_patches, tiny.vit_hidden_dim))


def test_image_path_compiles_fullgraph(tiny, dynamic):
    path = torch.nn.Sequential(ViT(tiny), ModalityProjector(tiny)).eval()
    _compiled_matches(path, dynamic, (2, 3, 64, 64), (5, 3, 64, 64))


def test_compiled_shape_errors_still_raise(tiny):
    torch._dynamo.reset()
    f = torch.compile(lambda x: pixel_shuffle(x, 2), backend='eager')  # a raising path is no graph: dynamo runs it eagerly
    with pytest.raises(ValueError, match='not a perfect square'): f(torch.randn(1, 65, 4))


def test_gradients_reach_vit_through_mp(tiny):
    vit, mp = ViT(tiny), ModalityProjector(tiny)
    mp(vit(torch.randn(2, 3, 64, 64))).square().mean().backward()
    assert vit.patch_embedding.conv.weight.grad.abs().sum() > 0 and mp.proj.weight.grad.abs().sum() > 0


def test_pixel_shuffle_keeps_dtype_and_device():
    x = torch.randn(2, 16, 3, dtype=torch.bfloat16)
    y = pixel_shuffle(x, 2)
    assert y.dtype == torch.bfloat16 and y.device == x.device and y.shape == (2, 4, 12)
