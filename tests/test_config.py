"The config outside the notebook: the installed console script, and a nanoVLM v0.1 config.json."
import json, subprocess, sys
from dataclasses import fields
from pathlib import Path
import pytest
from nanovlm.config import VLMConfig, TrainConfig, PRESETS, get_preset

INFO = Path(sys.executable).parent / 'nanovlm-info'


@pytest.mark.parametrize('preset', sorted(PRESETS))
def test_info_cli(preset):
    r = subprocess.run([str(INFO), '--preset', preset], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cfg = get_preset(preset)
    assert f'| image tokens | {cfg.n_image_tokens} |' in r.stdout
    assert r.stdout.startswith(f'preset {preset}: ')


def test_info_cli_unknown_preset():
    r = subprocess.run([str(INFO), '--preset', 'huge'], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown preset 'huge'" in r.stderr


def test_nanovlm_v01_field_names():
    # The keys nanoVLM v0.1's save_pretrained writes (json.dumps(asdict(cfg))) must all be fields here.
    v01 = ['vit_hidden_dim', 'vit_inter_dim', 'vit_patch_size', 'vit_img_size', 'vit_n_heads', 'vit_dropout', 'vit_n_blocks',
           'vit_ln_eps', 'vit_cls_flag', 'vit_model_type', 'lm_hidden_dim', 'lm_inter_dim', 'lm_rms_eps', 'lm_re_base',
           'lm_max_position_embeddings', 'lm_vocab_size', 'lm_n_heads', 'lm_n_kv_heads', 'lm_dropout', 'lm_n_blocks',
           'lm_attn_scaling', 'lm_max_length', 'lm_use_tokens', 'lm_tie_weights', 'lm_model_type', 'lm_tokenizer',
           'lm_eos_token_id', 'mp_pixel_shuffle_factor', 'vlm_load_backbone_weights', 'vlm_checkpoint_path']
    assert [f.name for f in fields(VLMConfig)] == v01


def test_v01_json_roundtrip(tmp_path):
    d = {f.name: getattr(VLMConfig(), f.name) for f in fields(VLMConfig)}
    (tmp_path / 'config.json').write_text(json.dumps(d))
    assert VLMConfig.from_json(tmp_path / 'config.json') == VLMConfig()


def test_bad_json(tmp_path):
    p = tmp_path / 'config.json'
    p.write_text('{"vit_hidden_dim": 768,')
    with pytest.raises(ValueError, match='is not valid JSON'): VLMConfig.from_json(p)
    p.write_text('[1, 2]')
    with pytest.raises(ValueError, match='must hold a JSON object'): VLMConfig.from_json(p)


def test_train_config_roundtrip(tmp_path):
    tc = TrainConfig(max_steps=7, lr_backbones=0.0)
    tc.to_json(tmp_path / 't.json')
    assert TrainConfig.from_json(tmp_path / 't.json') == tc
