"""Fidelity of `nanovlm.language_model` to transformers' Llama, and the loader's error battery.

Each parity case builds a small random `LlamaForCausalLM`, saves it in the Hub layout, loads it with
`LanguageModel.from_pretrained`, and compares logits (with and without left padding) and greedy generation.
"""
import json, shutil
import pytest
import torch
from safetensors.torch import load_file, save_file

transformers = pytest.importorskip('transformers')
from transformers import LlamaConfig, LlamaForCausalLM

from nanovlm.config import VLMConfig, get_preset
from nanovlm.language_model import LanguageModel, hf_key_map
from nanovlm.llama_checkpoints import save_llama_checkpoint

CASES = {  # name: (LlamaConfig kwargs)
    'mha-tied': dict(vocab_size=120, hidden_size=32, num_attention_heads=4, num_key_value_heads=4,
                     tie_word_embeddings=True, rope_theta=10000.0),
    'gqa-untied': dict(vocab_size=300, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                       tie_word_embeddings=False, rope_theta=500.0),
    'mqa-tied-smol-theta': dict(vocab_size=200, hidden_size=48, num_attention_heads=4, num_key_value_heads=1,
                                tie_word_embeddings=True, rope_theta=100000.0),
}


def make_hf(tmp_path, seed=0, **kw):
    "A random Llama saved to tmp_path/'ckpt'; norms are randomised too, so a swapped norm mapping is caught."
    torch.manual_seed(seed)
    theta = kw.pop('rope_theta', 10000.0)
    hc = LlamaConfig(intermediate_size=2 * kw['hidden_size'], num_hidden_layers=2, max_position_embeddings=128,
                     rms_norm_eps=1e-5, initializer_range=0.1, rope_parameters={'rope_type': 'default', 'rope_theta': theta},
                     pad_token_id=0, eos_token_id=2, bos_token_id=1, **kw)
    hf = LlamaForCausalLM(hc).eval()
    with torch.no_grad():
        for n, p in hf.named_parameters():
            if n.endswith('layernorm.weight') or n == 'model.norm.weight': p.copy_(1 + 0.3 * torch.randn_like(p))
    hf.generation_config.eos_token_id = None  # never stop early: compare exactly N tokens
    d = tmp_path / 'ckpt'
    hf.save_pretrained(d)
    return hf, d


def load(d, **overrides):
    vocab = json.loads((d / 'config.json').read_text())['vocab_size']
    cfg = get_preset('tiny', lm_use_tokens=True, lm_model_type=str(d), **{'lm_vocab_size': vocab, **overrides})
    return LanguageModel.from_pretrained(cfg).eval(), cfg


def left_padded(vocab, lengths, seed=1):
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.zeros(len(lengths), T, dtype=torch.long)
    am = torch.zeros(len(lengths), T, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, T - n:] = torch.randint(3, vocab, (n,), generator=g)
        am[i, T - n:] = 1
    return ids, am


@pytest.fixture(params=sorted(CASES))
def pair(request, tmp_path):
    hf, d = make_hf(tmp_path, **CASES[request.param])
    lm, cfg = load(d)
    return hf, lm, cfg, d


def test_config_read_from_checkpoint(pair):
    hf, lm, cfg, _ = pair
    hc = hf.config
    assert (cfg.lm_hidden_dim, cfg.lm_inter_dim, cfg.lm_n_heads, cfg.lm_n_kv_heads, cfg.lm_n_blocks) == \
           (hc.hidden_size, hc.intermediate_size, hc.num_attention_heads, hc.num_key_value_heads, hc.num_hidden_layers)
    assert cfg.lm_re_base == int(hc.rope_parameters['rope_theta'])
    assert cfg.lm_tie_weights == hc.tie_word_embeddings and cfg.lm_eos_token_id == 2
    assert cfg.lm_max_position_embeddings == 128 and cfg.lm_rms_eps == 1e-5
    assert (lm.head.weight is lm.token_embedding.weight) == hc.tie_word_embeddings


@torch.no_grad()
def test_logits_match(pair):
    hf, lm, cfg, _ = pair
    ids = torch.randint(0, cfg.lm_vocab_size, (3, 11), generator=torch.Generator().manual_seed(2))
    ref = hf(ids).logits
    assert ref.std() > 0.1  # a model that says something, not a flat distribution
    torch.testing.assert_close(lm(ids), ref, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_logits_match_left_padded(pair):
    hf, lm, cfg, _ = pair
    ids, am = left_padded(cfg.lm_vocab_size, [9, 5, 1, 7])
    pos = (am.cumsum(-1) - 1).clamp(min=0)
    ref = hf(ids, attention_mask=am, position_ids=pos).logits
    ours = lm(ids, am)
    real = am.bool()
    torch.testing.assert_close(ours[real], ref[real], atol=1e-5, rtol=1e-5)
    assert torch.isfinite(ours).all()


@pytest.mark.parametrize('padded', [False, True])
def test_greedy_generation_matches(pair, padded):
    hf, lm, cfg, _ = pair
    N = 10
    if padded: ids, am = left_padded(cfg.lm_vocab_size, [6, 3, 8])
    else: ids, am = left_padded(cfg.lm_vocab_size, [7, 7])
    with torch.no_grad():
        ref = hf.generate(ids, attention_mask=am, do_sample=False, max_new_tokens=N, min_new_tokens=N, pad_token_id=0)[:, ids.shape[1]:]
    assert ref.shape == (ids.shape[0], N)
    assert torch.equal(lm.generate(ids, am, max_new_tokens=N, use_cache=True), ref)
    assert torch.equal(lm.generate(ids, am, max_new_tokens=N, use_cache=False), ref)


@torch.no_grad()
def test_decode_steps_match_hf(tmp_path):
    "Prefill + one-token steps into our preallocated cache give HF's full-sequence logits."
    hf, d = make_hf(tmp_path, **CASES['gqa-untied'])
    lm, cfg = load(d)
    ids, am = left_padded(cfg.lm_vocab_size, [8, 4])
    ref = hf(ids, attention_mask=am, position_ids=(am.cumsum(-1) - 1).clamp(min=0)).logits
    cache = lm.init_cache(2, 8)
    outs = [lm(ids[:, :5], am[:, :5], cache)] + [lm(ids[:, t:t + 1], am[:, :t + 1], cache) for t in range(5, 8)]
    ours = torch.cat(outs, 1)
    torch.testing.assert_close(ours[am.bool()], ref[am.bool()], atol=1e-5, rtol=1e-5)
    assert cache.length == 8
    with pytest.raises(ValueError, match=r'KV cache too short: 8 cached \+ 1 new = 9 tokens > max_len=8'):
        lm(ids[:, :1], torch.ones(2, 9), cache)


def test_vocab_expansion_keeps_rows(tmp_path):
    for case in ('gqa-untied', 'mha-tied'):
        hf, d = make_hf(tmp_path / case, **CASES[case])
        V0 = hf.config.vocab_size
        lm, cfg = load(d, lm_vocab_size=V0 + 13)
        assert cfg.lm_vocab_size == V0 + 13 and lm.token_embedding.weight.shape[0] == V0 + 13
        emb = hf.model.embed_tokens.weight.detach()
        assert torch.equal(lm.token_embedding.weight.detach()[:V0], emb)
        torch.testing.assert_close(lm.token_embedding.weight.detach()[V0:], emb.mean(0).expand(13, -1))
        head = hf.lm_head.weight.detach()
        assert torch.equal(lm.head.weight.detach()[:V0], head)
        ids = torch.randint(0, V0, (2, 6))
        with torch.no_grad(): torch.testing.assert_close(lm(ids)[..., :V0], hf(ids).logits, atol=1e-5, rtol=1e-5)


def test_sharded_checkpoint_loads(tmp_path):
    hf, d = make_hf(tmp_path, **CASES['gqa-untied'])
    sharded = tmp_path / 'sharded'
    hf.save_pretrained(sharded, max_shard_size='60KB')
    assert (sharded / 'model.safetensors.index.json').is_file()
    assert len(list(sharded.glob('model-*.safetensors'))) > 1
    lm, _ = load(sharded)
    ids = torch.randint(0, 300, (2, 7))
    with torch.no_grad(): torch.testing.assert_close(lm(ids), hf(ids).logits, atol=1e-5, rtol=1e-5)


def test_tied_checkpoint_with_lm_head_copy(tmp_path):
    "Some writers store lm_head.weight even when tied: accepted when it equals the embedding."
    hf, d = make_hf(tmp_path, **CASES['mha-tied'])
    sd = load_file(d / 'model.safetensors')
    assert 'lm_head.weight' not in sd  # transformers 5 omits the tied head
    sd['lm_head.weight'] = sd['model.embed_tokens.weight'].clone()
    save_file(sd, d / 'model.safetensors')
    lm, _ = load(d)
    ids = torch.randint(0, 120, (2, 5))
    with torch.no_grad(): torch.testing.assert_close(lm(ids), hf(ids).logits, atol=1e-5, rtol=1e-5)
    sd['lm_head.weight'] = sd['lm_head.weight'] + 1
    save_file(sd, d / 'model.safetensors')
    with pytest.raises(ValueError, match='different lm_head.weight'): load(d)


# ---- loading errors ----

@pytest.fixture
def ckpt(tmp_path):
    return make_hf(tmp_path, **CASES['gqa-untied'])[1]


def edit_config(d, **kw):
    p = d / 'config.json'
    p.write_text(json.dumps({**json.loads(p.read_text()), **kw}))


def test_missing_local_path(tmp_path):
    for src in (str(tmp_path / 'nope'), './no/such/dir', '~/nope/nope/nope'):
        with pytest.raises(FileNotFoundError, match='no such local directory'):
            LanguageModel.from_pretrained(get_preset('tiny', lm_model_type=src))


def test_unreachable_repo_id(tmp_path, monkeypatch):
    import huggingface_hub.constants as hfc
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setattr(hfc, 'HF_HUB_OFFLINE', True)  # read once at import: patch the live value too
    monkeypatch.setattr(hfc, 'HF_HUB_CACHE', str(tmp_path / 'empty-cache'))
    with pytest.raises(FileNotFoundError, match="'nobody/no-such-lm-xyz'.*offline mode is on.*no copy is in the local cache"):
        LanguageModel.from_pretrained(get_preset('tiny', lm_model_type='nobody/no-such-lm-xyz'))


def test_empty_model_type():
    with pytest.raises(ValueError, match='lm_model_type is empty'): LanguageModel.from_pretrained(get_preset('tiny'))


def test_missing_key_and_cfg_untouched(ckpt):
    sd = load_file(ckpt / 'model.safetensors')
    del sd['model.layers.1.mlp.up_proj.weight']
    save_file(sd, ckpt / 'model.safetensors')
    cfg = get_preset('tiny', lm_use_tokens=True, lm_model_type=str(ckpt), lm_vocab_size=300)
    before = cfg.to_dict()
    with pytest.raises(ValueError, match=r"missing \['model.layers.1.mlp.up_proj.weight'\]"):
        LanguageModel.from_pretrained(cfg)
    assert cfg.to_dict() == before  # a failed load leaves the config as it was


def test_unexpected_key(ckpt):
    sd = load_file(ckpt / 'model.safetensors')
    sd['model.layers.0.self_attn.q_norm.weight'] = torch.ones(16)
    save_file(sd, ckpt / 'model.safetensors')
    with pytest.raises(ValueError, match=r"unexpected \['model.layers.0.self_attn.q_norm.weight'\]"): load(ckpt)


def test_old_rotary_buffers_are_ignored(ckpt):
    sd = load_file(ckpt / 'model.safetensors')
    sd['model.layers.0.self_attn.rotary_emb.inv_freq'] = torch.ones(8)
    save_file(sd, ckpt / 'model.safetensors')
    load(ckpt)


def test_shape_mismatch(ckpt):
    edit_config(ckpt, intermediate_size=96)
    with pytest.raises(ValueError, match=r'mis-shaped .*model.layers.0.mlp.gate_proj.weight: file \(128, 64\) vs model \(96, 64\)'):
        load(ckpt)


def test_layer_count_mismatch(ckpt):
    edit_config(ckpt, num_hidden_layers=3)
    with pytest.raises(ValueError, match=r"missing \['model.layers.2.input_layernorm.weight'"): load(ckpt)


def test_vocab_too_small(ckpt):
    with pytest.raises(ValueError, match=r'cfg.lm_vocab_size=256 is smaller than the vocabulary of .* \(300\)'):
        load(ckpt, lm_vocab_size=256)


@pytest.mark.parametrize('key', ['rope_scaling', 'rope_parameters'])
def test_rope_scaling_refused(ckpt, key):
    edit_config(ckpt, **{key: {'rope_type': 'yarn', 'factor': 4.0, 'rope_theta': 500.0}})
    with pytest.raises(ValueError, match=f"{key} has rope_type='yarn'; only plain RoPE"): load(ckpt)


def test_rope_theta_top_level(ckpt):
    "Older config.json files (transformers 4) keep rope_theta at the top level."
    cfg = json.loads((ckpt / 'config.json').read_text())
    theta = cfg.pop('rope_parameters')['rope_theta']
    (ckpt / 'config.json').write_text(json.dumps({**cfg, 'rope_theta': theta}))
    assert load(ckpt)[1].lm_re_base == 500


def test_architecture_refusals(ckpt):
    edit_config(ckpt, attention_bias=True)
    with pytest.raises(ValueError, match='attention_bias=true'): load(ckpt)
    edit_config(ckpt, attention_bias=False, model_type='qwen2')
    with pytest.raises(ValueError, match="model_type='qwen2'"): load(ckpt)
    edit_config(ckpt, model_type='llama', hidden_act='gelu')
    with pytest.raises(ValueError, match="hidden_act='gelu'"): load(ckpt)
    edit_config(ckpt, hidden_act='silu', max_position_embeddings=32)  # too short for the tiny preset's image + text
    with pytest.raises(ValueError, match='does not fit this config.*exceed lm_max_position_embeddings=32'): load(ckpt)


def test_no_safetensors(ckpt):
    (ckpt / 'model.safetensors').rename(ckpt / 'pytorch_model.bin')
    with pytest.raises(FileNotFoundError, match=r"found \['pytorch_model.bin'\]\).*never pickles"): load(ckpt)


def test_missing_config_and_shard(tmp_path, ckpt):
    sharded = tmp_path / 'sharded'
    shutil.copytree(ckpt, sharded)
    (ckpt / 'config.json').unlink()
    with pytest.raises(FileNotFoundError, match='config.json not found'):
        LanguageModel.from_pretrained(get_preset('tiny', lm_model_type=str(ckpt)))
    sd = load_file(sharded / 'model.safetensors')
    (sharded / 'model.safetensors').unlink()
    keys = sorted(sd)
    save_file({k: sd[k] for k in keys[:5]}, sharded / 'model-00001-of-00002.safetensors')
    index = {'metadata': {}, 'weight_map': {k: f'model-0000{1 + (i >= 5)}-of-00002.safetensors' for i, k in enumerate(keys)}}
    (sharded / 'model.safetensors.index.json').write_text(json.dumps(index))
    with pytest.raises(FileNotFoundError, match='shard model-00002-of-00002.safetensors listed in'): load(sharded)
    save_file({k: sd[k] for k in keys[5:]}, sharded / 'model-00002-of-00002.safetensors')
    load(sharded)  # complete now


# ---- structure ----

@pytest.mark.parametrize('tie', [True, False])
def test_param_counts_match_config(tie):
    for cfg in (get_preset('tiny', lm_tie_weights=tie), VLMConfig(lm_tie_weights=tie)):
        with torch.device('meta'): lm = LanguageModel(cfg)
        assert sum(p.numel() for p in lm.parameters()) == cfg.param_counts()['decoder']


def test_key_map_covers_every_parameter():
    for tie in (True, False):
        cfg = get_preset('tiny', lm_tie_weights=tie)
        with torch.device('meta'): lm = LanguageModel(cfg)
        assert sorted(hf_key_map(cfg.lm_n_blocks, tie).values()) == sorted(n for n, _ in lm.named_parameters())
    assert 'rotary_embd.inv_freq' in lm.state_dict()  # nanoVLM checkpoints carry it


@torch.no_grad()
def test_compiles_without_graph_breaks():
    "fullgraph=True fails on any graph break (a .item(), a branch on a tensor value)."
    torch._dynamo.reset()
    lm = LanguageModel(get_preset('tiny', lm_use_tokens=True)).eval()
    clm = torch.compile(lm, backend='eager', fullgraph=True)
    ids, am = left_padded(256, [6, 3])
    torch.testing.assert_close(clm(ids), lm(ids))
    torch.testing.assert_close(clm(ids, am), lm(ids, am))
    c1, c2 = lm.init_cache(2, 8), lm.init_cache(2, 8)
    torch.testing.assert_close(clm(ids, am, c1), lm(ids, am, c2))
    am7 = torch.cat([am, torch.ones(2, 1, dtype=am.dtype)], 1)
    torch.testing.assert_close(clm(ids[:, :1], am7, c1), lm(ids[:, :1], am7, c2))
    assert c1.length == c2.length == 7


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16, torch.float16])
def test_no_nan_with_left_padding(dtype):
    lm = LanguageModel(get_preset('tiny', lm_use_tokens=True)).to(dtype).eval()
    ids, am = left_padded(256, [6, 1, 4])
    with torch.no_grad():
        assert torch.isfinite(lm(ids, am)).all()
        h = LanguageModel(get_preset('tiny')).to(dtype).eval()(torch.randn(3, 6, 128, dtype=dtype), am)
    assert torch.isfinite(h).all()
    assert lm.rotary_embd.inv_freq.dtype == torch.float32


@pytest.mark.parametrize('tie', [True, False])
@torch.no_grad()
def test_written_checkpoint_loads_in_transformers(tmp_path, tie):
    "Appendix 4a's `save_llama_checkpoint` writes what transformers reads, and our loader reads it back."
    lm = LanguageModel(get_preset('tiny', lm_use_tokens=True, lm_tie_weights=tie, lm_re_base=5000)).eval()
    d = save_llama_checkpoint(lm, tmp_path / 'ckpt')
    hf = LlamaForCausalLM.from_pretrained(d).eval()
    ids, _ = left_padded(256, [6, 3])
    torch.testing.assert_close(hf(ids).logits, lm(ids))
    back, cfg = load(d)
    assert cfg.lm_re_base == 5000 and cfg.lm_tie_weights == tie
    assert torch.equal(back(ids), lm(ids))
