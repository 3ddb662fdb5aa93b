"Parity of ViT.from_pretrained against transformers' SigLIP, and the loader's error battery."
import json
from pathlib import Path
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import SiglipConfig, SiglipModel, SiglipTextConfig, SiglipVisionConfig, SiglipVisionModel
from nanovlm.config import VLMConfig
from nanovlm.vision_transformer import ViT, SIGLIP_TO_VIT_FIELDS

# Small SigLIP vision towers: different widths, heads, depths, image and patch sizes, epsilons, GELU forms.
CONFIGS = {
    'w32-h4-l2-img32-p8': dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8),
    'w48-h3-l3-img56-p14': dict(hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=3, image_size=56, patch_size=14,
                                layer_norm_eps=1e-5),
    'w64-h8-l1-img64-p16': dict(hidden_size=64, intermediate_size=160, num_hidden_layers=1, num_attention_heads=8, image_size=64,
                                patch_size=16),
    'w24-h2-l2-img48-p12-gelu_new': dict(hidden_size=24, intermediate_size=40, num_hidden_layers=2, num_attention_heads=2, image_size=48,
                                         patch_size=12, hidden_act='gelu_new'),
}


def _perturb(model):
    "Random init leaves biases at 0 and LayerNorms at identity, which would hide a swapped or dropped tensor."
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters(): p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def _save_vision(tmp_path, vc:dict, name='ckpt'):
    torch.manual_seed(0)
    hf = _perturb(SiglipVisionModel(SiglipVisionConfig(**vc)))
    hf.save_pretrained(tmp_path / name)
    return hf, tmp_path / name


def _save_full(tmp_path, vc:dict, name='ckpt'):
    torch.manual_seed(0)
    tc = SiglipTextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, vocab_size=99,
                          max_position_embeddings=16, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    hf = _perturb(SiglipModel(SiglipConfig(text_config=tc.to_dict(), vision_config=SiglipVisionConfig(**vc).to_dict())))
    hf.save_pretrained(tmp_path / name)
    return hf.vision_model, tmp_path / name


def _load(path, **kw):
    cfg = VLMConfig(vit_model_type=str(path), **kw)
    return ViT.from_pretrained(cfg).eval(), cfg


def _images(vc, n=3):
    return torch.randn(n, 3, vc['image_size'], vc['image_size'], generator=torch.Generator().manual_seed(1))


def _check_parity(hf_vision, ours, vc):
    x = _images(vc)
    with torch.no_grad():
        out = hf_vision(pixel_values=x, output_hidden_states=True)
        y = ours(x)
        pre_ln = ours.patch_embedding(x)
        for b in ours.blocks: pre_ln = b(pre_ln)
    # transformers' last_hidden_state is the encoder output after post_layernorm: our ViT's output.
    torch.testing.assert_close(hf_vision.post_layernorm(out.hidden_states[-1]), out.last_hidden_state)
    torch.testing.assert_close(pre_ln, out.hidden_states[-1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y, out.last_hidden_state, atol=1e-5, rtol=1e-5)
    assert y.shape == (3, (vc['image_size'] // vc['patch_size']) ** 2, vc['hidden_size'])


@pytest.mark.parametrize('name', sorted(CONFIGS))
@pytest.mark.parametrize('layout', ['vision-only', 'full'])
def test_parity_with_transformers(tmp_path, name, layout):
    vc = CONFIGS[name]
    hf, path = (_save_vision if layout == 'vision-only' else _save_full)(tmp_path, vc)
    ours, cfg = _load(path, mp_pixel_shuffle_factor=1)
    for theirs, field in SIGLIP_TO_VIT_FIELDS.items():  # cfg updated in place from the checkpoint
        assert getattr(cfg, field) == vc.get(theirs, SiglipVisionConfig().to_dict()[theirs]), field
    _check_parity(hf, ours, vc)


def test_parity_transformers4_layout_and_sparse_config(tmp_path):
    # transformers 4 saved a SiglipVisionModel with `vision_model.` prefixes, and configs held only non-default fields.
    vc = CONFIGS['w32-h4-l2-img32-p8']
    hf, path = _save_vision(tmp_path, vc)
    sd = load_file(path / 'model.safetensors')
    save_file({f'vision_model.{k}': v for k, v in sd.items()}, path / 'model.safetensors')
    (path / 'config.json').write_text(json.dumps({'model_type': 'siglip_vision_model', **vc}))  # no hidden_act, eps, channels
    ours, cfg = _load(path)
    assert cfg.vit_ln_eps == 1e-6 and cfg.vit_hidden_dim == 32
    _check_parity(hf, ours, vc)


def test_loaded_model_trains(tmp_path):
    _, path = _save_vision(tmp_path, CONFIGS['w32-h4-l2-img32-p8'])
    ours, _ = _load(path)
    ours.train()(_images(CONFIGS['w32-h4-l2-img32-p8'])).square().mean().backward()
    assert all(p.grad is not None for p in ours.parameters())



def test_save_siglip_loads_in_transformers(tmp_path):
    "Our ViT written as a SigLIP checkpoint: transformers loads it with nothing missing and computes the same."
    from nanovlm.siglip import save_siglip
    vc = CONFIGS['w48-h3-l3-img56-p14']
    cfg = VLMConfig(vit_hidden_dim=48, vit_inter_dim=96, vit_n_heads=3, vit_n_blocks=3, vit_img_size=56,
                    vit_patch_size=14, vit_ln_eps=1e-5)
    torch.manual_seed(0)
    ours = _perturb(ViT(cfg))
    path = save_siglip(ours, tmp_path / 'ours')
    hf, info = SiglipVisionModel.from_pretrained(path, output_loading_info=True)
    assert all(not v for v in info.values()), info  # no missing, unexpected or mismatched keys
    x = _images(vc)
    with torch.no_grad():
        torch.testing.assert_close(hf.eval()(pixel_values=x).last_hidden_state, ours(x), atol=1e-5, rtol=1e-5)
    back, back_cfg = _load(path)
    torch.testing.assert_close(back(x), ours(x))
    assert (back_cfg.vit_hidden_dim, back_cfg.vit_n_blocks, back_cfg.vit_ln_eps) == (48, 3, 1e-5)

# ---- error battery -------------------------------------------------------------------------------------------

@pytest.fixture
def ckpt(tmp_path):
    _, path = _save_full(tmp_path, CONFIGS['w32-h4-l2-img32-p8'])
    return path


def _edit_weights(path, fn):
    sd = load_file(path / 'model.safetensors'); fn(sd); save_file(sd, path / 'model.safetensors')


def _edit_config(path, fn):
    d = json.loads((path / 'config.json').read_text()); fn(d); (path / 'config.json').write_text(json.dumps(d))


def _fails(path, exc, *needles):
    cfg = VLMConfig(vit_model_type=str(path))
    before = cfg.to_dict()
    with pytest.raises(exc) as e: ViT.from_pretrained(cfg)
    for n in needles: assert n in str(e.value), str(e.value)
    assert cfg.to_dict() == before  # a failed load leaves the config untouched
    return str(e.value)


def test_missing_directory(tmp_path):
    _fails(tmp_path / 'no' / 'such' / 'dir', FileNotFoundError, 'no such local directory', str(tmp_path / 'no'))


@pytest.mark.parametrize('fname', ['config.json', 'model.safetensors'])
def test_missing_file(ckpt, fname):
    (ckpt / fname).unlink()
    _fails(ckpt, FileNotFoundError, f'{ckpt / fname} not found')


def test_missing_key(ckpt):
    _edit_weights(ckpt, lambda sd: sd.pop('vision_model.encoder.layers.1.self_attn.k_proj.bias'))
    _fails(ckpt, ValueError, "missing ['encoder.layers.1.self_attn.k_proj.bias']")


def test_unexpected_vision_key(ckpt):
    _edit_weights(ckpt, lambda sd: sd.update({'vision_model.encoder.layers.0.self_attn.rotary.weight': torch.zeros(2)}))
    _fails(ckpt, ValueError, "unexpected ['encoder.layers.0.self_attn.rotary.weight']")


def test_unexpected_key_outside_the_towers(ckpt):
    _edit_weights(ckpt, lambda sd: sd.update({'adapter.weight': torch.zeros(2)}))
    _fails(ckpt, ValueError, "unexpected key(s) outside the vision tower: ['adapter.weight']")


def test_shape_mismatch_in_weights(ckpt):
    _edit_weights(ckpt, lambda sd: sd.update({'vision_model.encoder.layers.0.mlp.fc1.weight': torch.zeros(65, 32)}))
    _fails(ckpt, ValueError, 'mis-shaped', 'encoder.layers.0.mlp.fc1.weight: file (65, 32) vs model (64, 32)')


def test_shape_mismatch_config_vs_weights(ckpt):
    _edit_config(ckpt, lambda d: d['vision_config'].update(intermediate_size=128))
    msg = _fails(ckpt, ValueError, 'mis-shaped', 'encoder.layers.1.mlp.fc2.weight: file (32, 64) vs model (32, 128)')
    assert 'self_attn' not in msg  # only the tensors that really mismatch are named


def test_unsupported_activation(ckpt):
    _edit_config(ckpt, lambda d: d['vision_config'].update(hidden_act='quick_gelu'))
    _fails(ckpt, ValueError, "hidden_act='quick_gelu' is not supported", 'config.json')
    _edit_config(ckpt, lambda d: d['vision_config'].update(hidden_act='gelu'))  # exact GELU: close, but not what the MLP computes
    _fails(ckpt, ValueError, "hidden_act='gelu' is not supported", 'config.json')


def test_invalid_json(ckpt):
    (ckpt / 'config.json').write_text('{"vision_config": ')
    _fails(ckpt, ValueError, 'config.json is not valid JSON')


def test_checkpoint_that_breaks_the_config(ckpt):
    _edit_config(ckpt, lambda d: d['vision_config'].update(image_size=24))  # a 3x3 grid: shuffle factor 2 cannot fold it
    _fails(ckpt, ValueError, 'does not fit the config', 'not divisible by mp_pixel_shuffle_factor=2')


def test_cls_flag_rejected(ckpt):
    with pytest.raises(ValueError, match='SigLIP has no CLS token'):
        ViT.from_pretrained(VLMConfig(vit_model_type=str(ckpt), vit_cls_flag=True))


def test_empty_model_type():
    with pytest.raises(ValueError, match='vit_model_type is empty'): ViT.from_pretrained(VLMConfig(vit_model_type=''))


@pytest.fixture
def offline(monkeypatch):
    import huggingface_hub.constants
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)  # read once at import: patch it too


def test_unreachable_repo_id(offline, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # so the id cannot be a relative directory by accident
    msg = _fails('nanovlm-tests/no-such-siglip', FileNotFoundError, "'nanovlm-tests/no-such-siglip'",
                 'is not a local directory', 'offline mode is on', 'check the repo id')
    assert 'no such local directory' not in msg  # distinct from the missing-path message


def test_nonexistent_repo_id(monkeypatch):
    import huggingface_hub
    from huggingface_hub.utils import RepositoryNotFoundError
    def not_found(*a, **k):
        e = RepositoryNotFoundError.__new__(RepositoryNotFoundError); Exception.__init__(e, '404'); raise e
    monkeypatch.setattr(huggingface_hub, 'snapshot_download', not_found)  # no network: the Hub's answer, simulated
    _fails('nanovlm-tests/missing', FileNotFoundError, "'nanovlm-tests/missing'", 'the Hub has no such repo')


def test_library_does_not_import_transformers():
    import subprocess, sys
    code = 'import sys, nanovlm.vision_transformer; print("transformers" in sys.modules)'
    assert subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout.strip() == 'False'
