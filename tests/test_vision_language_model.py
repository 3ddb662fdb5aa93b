"VisionLanguageModel outside the notebook: checkpoints (ours and nanoVLM's), strictness, atomicity, generation rules."
import json, math, os
from dataclasses import asdict, fields
from pathlib import Path
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file, load_file
import nanovlm.vision_language_model as vlm_mod
from nanovlm.config import VLMConfig, get_preset
from nanovlm.vision_language_model import VisionLanguageModel, answer_loss, filter_logits

torch.set_num_threads(2)


def small_cfg(**kw):
    return get_preset('tiny', **{'vit_n_blocks': 2, 'lm_n_blocks': 2, **kw})


def batch(cfg, B=3, T=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, cfg.lm_vocab_size, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    for b in range(1, B): mask[b, :b] = 0
    img = torch.rand(B, 3, cfg.vit_img_size, cfg.vit_img_size, generator=g)
    return ids, img, mask


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    return VisionLanguageModel(small_cfg()).eval()


# --- save / load -------------------------------------------------------------------------------

def test_roundtrip_identical_logits(model, tmp_path):
    ids, img, mask = batch(model.cfg)
    model.save_pretrained(tmp_path)
    again = VisionLanguageModel.from_pretrained(tmp_path).eval()
    with torch.no_grad(): assert torch.equal(model(ids, img, mask)[0], again(ids, img, mask)[0])
    assert again.cfg == model.cfg
    # the tied head is stored once, under nanoVLM's name
    keys = load_file(str(tmp_path / 'model.safetensors')).keys()
    assert 'decoder.head.weight' in keys and 'decoder.token_embedding.weight' not in keys
    assert again.decoder.head.weight.data_ptr() == again.decoder.token_embedding.weight.data_ptr()


def test_untied_roundtrip(tmp_path):
    torch.manual_seed(1)
    m = VisionLanguageModel(small_cfg(lm_tie_weights=False)).eval()
    m.save_pretrained(tmp_path)
    keys = load_file(str(tmp_path / 'model.safetensors')).keys()
    assert {'decoder.head.weight', 'decoder.token_embedding.weight'} <= keys
    ids, img, mask = batch(m.cfg)
    with torch.no_grad():
        assert torch.equal(m(ids, img, mask)[0], VisionLanguageModel.from_pretrained(tmp_path).eval()(ids, img, mask)[0])


def _corrupt(tmp_path, model, edit):
    model.save_pretrained(tmp_path)
    sd = load_file(str(tmp_path / 'model.safetensors'))
    edit(sd)
    save_file(sd, str(tmp_path / 'model.safetensors'))


def test_missing_key(model, tmp_path):
    _corrupt(tmp_path, model, lambda sd: sd.pop('MP.proj.weight'))
    with pytest.raises(ValueError, match=r"missing \['MP.proj.weight'\]"): VisionLanguageModel.from_pretrained(tmp_path)


def test_unexpected_key(model, tmp_path):
    _corrupt(tmp_path, model, lambda sd: sd.__setitem__('MP.extra', torch.zeros(2)))
    with pytest.raises(ValueError, match=r"unexpected \['MP.extra'\]"): VisionLanguageModel.from_pretrained(tmp_path)


def test_shape_mismatch(model, tmp_path):
    _corrupt(tmp_path, model, lambda sd: sd.__setitem__('MP.proj.weight', sd['MP.proj.weight'][:, :-1].contiguous()))
    with pytest.raises(ValueError, match=r"MP.proj.weight: file \(128, 383\) vs model \(128, 384\)"):
        VisionLanguageModel.from_pretrained(tmp_path)


def test_unknown_config_key(model, tmp_path):
    model.save_pretrained(tmp_path)
    d = json.loads((tmp_path / 'config.json').read_text()); d['lm_n_layers'] = 3
    (tmp_path / 'config.json').write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"unknown VLMConfig key\(s\) \['lm_n_layers'\]"): VisionLanguageModel.from_pretrained(tmp_path)


def test_missing_files(model, tmp_path):
    model.save_pretrained(tmp_path)
    (tmp_path / 'model.safetensors').unlink()
    with pytest.raises(FileNotFoundError, match='model.safetensors not found'): VisionLanguageModel.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match='no such local directory'): VisionLanguageModel.from_pretrained(tmp_path / 'nope')


def test_only_safetensors_are_read(model, tmp_path):
    # a pickle next to the checkpoint is never opened: loading reads config.json and model.safetensors only
    model.save_pretrained(tmp_path)
    (tmp_path / 'pytorch_model.bin').write_bytes(b'not a pickle, and never unpickled')
    (tmp_path / 'model.safetensors').unlink()
    with pytest.raises(FileNotFoundError, match='model.safetensors'): VisionLanguageModel.from_pretrained(tmp_path)


def test_offline_repo_id(monkeypatch, tmp_path):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('HF_HOME', str(tmp_path / 'hf'))
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, 'HF_HUB_OFFLINE', True)
    with pytest.raises(FileNotFoundError, match=r"'nobody/no-such-model' is not a local directory.*offline mode is on"):
        VisionLanguageModel.from_pretrained('nobody/no-such-model')


def test_atomic_save_under_failure(model, tmp_path, monkeypatch):
    ids, img, mask = batch(model.cfg)
    model.save_pretrained(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    (tmp_path / 'tokenizer.json').write_text('{"kept": true}')   # the user's other files are untouched

    def disk_full(m, filename, metadata=None):
        Path(filename).write_bytes(b'partial')
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(vlm_mod, 'save_model', disk_full)
    torch.manual_seed(5)
    other = VisionLanguageModel(small_cfg(lm_n_blocks=1)).eval()
    with pytest.raises(OSError, match='No space left'): other.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {'config.json', 'model.safetensors', 'tokenizer.json'}  # no temp files left
    assert all((tmp_path / n).read_bytes() == b for n, b in before.items())
    with torch.no_grad():
        assert torch.equal(VisionLanguageModel.from_pretrained(tmp_path).eval()(ids, img, mask)[0], model(ids, img, mask)[0])


def test_push_to_hub(model, monkeypatch):
    import huggingface_hub
    calls = {}

    class FakeApi:
        def create_repo(self, repo_id, private=False, exist_ok=False):
            calls['create'] = (repo_id, private, exist_ok)
            return type('Url', (), {'repo_id': repo_id})()
        def upload_folder(self, repo_id, folder_path, repo_type, commit_message):
            calls['files'] = sorted(os.listdir(folder_path))
            calls['card'] = Path(folder_path, 'README.md').read_text()
            calls['cfg'] = json.loads(Path(folder_path, 'config.json').read_text())
            return 'ok'
    monkeypatch.setattr(huggingface_hub, 'HfApi', FakeApi)
    assert model.push_to_hub('me/tiny-vlm', private=True) == 'ok'
    assert calls['create'] == ('me/tiny-vlm', True, True)
    assert calls['files'] == ['README.md', 'config.json', 'model.safetensors']
    assert 'VisionLanguageModel.from_pretrained("me/tiny-vlm")' in calls['card'] and 'library_name: nanovlm' in calls['card']
    assert calls['cfg'] == asdict(model.cfg)

    class Saver:  # e.g. a tokenizer: anything with save(directory)
        def save(self, d): Path(d, 'tokenizer.json').write_text('{}')
    model.push_to_hub('me/tiny-vlm', save_with=[Saver()])
    assert calls['files'] == ['README.md', 'config.json', 'model.safetensors', 'tokenizer.json']


# --- a checkpoint in nanoVLM v0.1's own layout -------------------------------------------------

def _nanovlm_checkpoint(cfg, seed=0):
    "State dict with nanoVLM v0.1's key names, as its save_pretrained (safetensors save_model) writes it."
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g) * 0.1
    C, I, p, V, D, L = cfg.vit_hidden_dim, cfg.vit_inter_dim, cfg.vit_patch_size, cfg.lm_vocab_size, cfg.lm_hidden_dim, cfg.lm_inter_dim
    kv = cfg.lm_n_kv_heads * cfg.lm_head_dim
    sd = {'vision_encoder.patch_embedding.conv.weight': r(C, 3, p, p), 'vision_encoder.patch_embedding.conv.bias': r(C),
          'vision_encoder.patch_embedding.position_embedding': r(1, cfg.vit_n_patches, C),
          'vision_encoder.layer_norm.weight': 1 + r(C), 'vision_encoder.layer_norm.bias': r(C),
          'MP.proj.weight': r(D, cfg.mp_input_dim), 'decoder.head.weight': r(V, D), 'decoder.norm.weight': 1 + r(D),
          'decoder.rotary_embd.inv_freq': 1.0 / cfg.lm_re_base ** (torch.arange(0, cfg.lm_head_dim, 2).float() / cfg.lm_head_dim)}
    for i in range(cfg.vit_n_blocks):
        b = f'vision_encoder.blocks.{i}.'
        sd.update({b + 'ln1.weight': 1 + r(C), b + 'ln1.bias': r(C), b + 'ln2.weight': 1 + r(C), b + 'ln2.bias': r(C),
                   b + 'attn.qkv_proj.weight': r(3 * C, C), b + 'attn.qkv_proj.bias': r(3 * C),
                   b + 'attn.out_proj.weight': r(C, C), b + 'attn.out_proj.bias': r(C),
                   b + 'mlp.fc1.weight': r(I, C), b + 'mlp.fc1.bias': r(I), b + 'mlp.fc2.weight': r(C, I), b + 'mlp.fc2.bias': r(C)})
    for i in range(cfg.lm_n_blocks):
        b = f'decoder.blocks.{i}.'
        sd.update({b + 'norm1.weight': 1 + r(D), b + 'norm2.weight': 1 + r(D), b + 'attn.q_proj.weight': r(D, D),
                   b + 'attn.k_proj.weight': r(kv, D), b + 'attn.v_proj.weight': r(kv, D), b + 'attn.out_proj.weight': r(D, D),
                   b + 'mlp.gate_proj.weight': r(L, D), b + 'mlp.up_proj.weight': r(L, D), b + 'mlp.down_proj.weight': r(D, L)})
    return sd


def _reference_logits(sd, cfg, ids, img):
    "nanoVLM v0.1's forward pass written out functionally from the state dict (no padding), independent of our modules."
    B, T = ids.shape
    C, H = cfg.vit_hidden_dim, cfg.vit_n_heads
    x = F.conv2d(img, sd['vision_encoder.patch_embedding.conv.weight'], sd['vision_encoder.patch_embedding.conv.bias'],
                 stride=cfg.vit_patch_size).flatten(2).transpose(1, 2) + sd['vision_encoder.patch_embedding.position_embedding']
    for i in range(cfg.vit_n_blocks):
        w = lambda n: sd[f'vision_encoder.blocks.{i}.{n}']
        h = F.layer_norm(x, (C,), w('ln1.weight'), w('ln1.bias'), cfg.vit_ln_eps)
        q, k, v = F.linear(h, w('attn.qkv_proj.weight'), w('attn.qkv_proj.bias')).chunk(3, -1)
        q, k, v = (t.view(B, -1, H, C // H).transpose(1, 2) for t in (q, k, v))
        a = ((q @ k.transpose(-1, -2)) / math.sqrt(C // H)).softmax(-1) @ v
        x = x + F.linear(a.transpose(1, 2).reshape(B, -1, C), w('attn.out_proj.weight'), w('attn.out_proj.bias'))
        h = F.layer_norm(x, (C,), w('ln2.weight'), w('ln2.bias'), cfg.vit_ln_eps)
        x = x + F.linear(F.gelu(F.linear(h, w('mlp.fc1.weight'), w('mlp.fc1.bias')), approximate='tanh'), w('mlp.fc2.weight'), w('mlp.fc2.bias'))
    x = F.layer_norm(x, (C,), sd['vision_encoder.layer_norm.weight'], sd['vision_encoder.layer_norm.bias'], cfg.vit_ln_eps)
    s, g = cfg.mp_pixel_shuffle_factor, cfg.vit_grid
    x = x.view(B, g, g, C).reshape(B, g // s, s, g // s, s, C).permute(0, 1, 3, 2, 4, 5).reshape(B, -1, C * s * s)
    x = torch.cat([x @ sd['MP.proj.weight'].T, sd['decoder.head.weight'][ids]], dim=1)     # tied embedding
    D, Hq, KV, hd = cfg.lm_hidden_dim, cfg.lm_n_heads, cfg.lm_n_kv_heads, cfg.lm_head_dim
    Ltot = x.shape[1]
    ang = torch.arange(Ltot).float()[:, None] * sd['decoder.rotary_embd.inv_freq']
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    rot = lambda t: t * cos + torch.cat([-t[..., hd // 2:], t[..., :hd // 2]], -1) * sin
    rms = lambda t, wt: t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + cfg.lm_rms_eps) * wt
    causal = torch.tril(torch.ones(Ltot, Ltot, dtype=torch.bool))
    for i in range(cfg.lm_n_blocks):
        w = lambda n: sd[f'decoder.blocks.{i}.{n}']
        h = rms(x, w('norm1.weight'))
        q = rot((h @ w('attn.q_proj.weight').T).view(B, Ltot, Hq, hd).transpose(1, 2))
        k = rot((h @ w('attn.k_proj.weight').T).view(B, Ltot, KV, hd).transpose(1, 2)).repeat_interleave(Hq // KV, 1)
        v = (h @ w('attn.v_proj.weight').T).view(B, Ltot, KV, hd).transpose(1, 2).repeat_interleave(Hq // KV, 1)
        a = ((q @ k.transpose(-1, -2)) / math.sqrt(hd)).masked_fill(~causal, float('-inf')).softmax(-1) @ v
        x = x + a.transpose(1, 2).reshape(B, Ltot, D) @ w('attn.out_proj.weight').T
        h = rms(x, w('norm2.weight'))
        x = x + (F.silu(h @ w('mlp.gate_proj.weight').T) * (h @ w('mlp.up_proj.weight').T)) @ w('mlp.down_proj.weight').T
    return rms(x, sd['decoder.norm.weight'])[:, -T:] @ sd['decoder.head.weight'].T


def test_nanovlm_v01_checkpoint_loads_and_matches(tmp_path):
    cfg = small_cfg(lm_n_kv_heads=2)
    v01_config = {f.name: getattr(cfg, f.name) for f in fields(VLMConfig)}   # nanoVLM writes json.dumps(asdict(cfg), indent=4)
    (tmp_path / 'config.json').write_text(json.dumps(v01_config, indent=4))
    sd = _nanovlm_checkpoint(cfg)
    save_file(sd, str(tmp_path / 'model.safetensors'))
    model = VisionLanguageModel.from_pretrained(tmp_path).eval()
    ids, img, _ = batch(cfg, B=2, T=5)
    with torch.no_grad():
        ours, _ = model(ids, img)
        ref = _reference_logits(sd, cfg, ids, img)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


# --- loss and generation rules ----------------------------------------------------------------

def test_loss_never_nan():
    logits = torch.randn(2, 4, 10)
    assert answer_loss(logits, torch.full((2, 4), -100)).item() == 0.0
    t = torch.full((2, 4), -100); t[0, 2] = 3
    torch.testing.assert_close(answer_loss(logits, t), F.cross_entropy(logits[0, 2:3], t[0, 2:3]))


def test_generation_stops_per_row(model):
    ids, img, mask = batch(model.cfg)
    free = model.generate(ids, img, mask, max_new_tokens=10, greedy=True, eos_token_id=-1)
    eos = int(free[1, 3])
    out = model.generate(ids, img, mask, max_new_tokens=10, greedy=True, eos_token_id=eos)
    for b in range(ids.shape[0]):
        hits = (free[b] == eos).nonzero()
        stop = int(hits[0]) if len(hits) else 10
        assert out[b, :stop + 1].tolist() == free[b, :stop + 1].tolist()     # same tokens up to and including EOS
        assert (out[b, stop:] == eos).all()                                 # then EOS only


def test_early_exit_when_all_rows_stop(model, monkeypatch):
    ids, img, mask = batch(model.cfg)
    calls = {'n': 0}
    block = model.decoder.blocks[0]  # every pass through the decoder, prefill or decode step, runs it once
    real = block.forward
    monkeypatch.setattr(block, 'forward', lambda *a, **k: (calls.__setitem__('n', calls['n'] + 1), real(*a, **k))[1])
    # make token 7 overwhelmingly likely, so every row emits EOS=7 at once
    h = model.decoder.head.register_forward_hook(lambda m, a, o: o.index_fill(-1, torch.tensor([7]), 1e4))
    try: out = model.generate(ids, img, mask, max_new_tokens=40, greedy=True, eos_token_id=7, stop_check_interval=4)
    finally: h.remove()
    assert out.shape == (ids.shape[0], 40) and (out == 7).all()
    assert calls['n'] == 4          # prefill + 3 decode steps; the check after step 4 ends the loop (not 40 steps)


def test_sampling_reproducible_and_varied(model):
    ids, img, mask = batch(model.cfg)
    kw = dict(max_new_tokens=10, temperature=2.0, top_k=100, top_p=0.99)
    a, b = model.generate(ids, img, mask, seed=1, **kw), model.generate(ids, img, mask, seed=1, **kw)
    c = model.generate(ids, img, mask, seed=2, **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(model.generate(ids, img, mask, generator=g1, **kw), model.generate(ids, img, mask, generator=g2, **kw))


def test_top_k_one_is_greedy(model):
    ids, img, mask = batch(model.cfg)
    greedy = model.generate(ids, img, mask, max_new_tokens=6, greedy=True, eos_token_id=-1)
    assert torch.equal(model.generate(ids, img, mask, max_new_tokens=6, top_k=1, seed=0, eos_token_id=-1), greedy)


def test_filter_logits_matches_definition():
    g = torch.Generator().manual_seed(0)
    lg = torch.randn(4, 50, generator=g)
    out = filter_logits(lg, top_p=0.7)
    for row, o in zip(lg, out):
        p, idx = row.softmax(-1).sort(descending=True)
        k = int((p.cumsum(0) < 0.7).sum()) + 1             # smallest prefix reaching 0.7
        assert set(idx[:k].tolist()) == set((~torch.isinf(o)).nonzero().flatten().tolist())


def test_bad_generate_args(model):
    ids, img, mask = batch(model.cfg)
    with pytest.raises(ValueError, match='max_new_tokens must be >= 0'): model.generate(ids, img, mask, max_new_tokens=-1)
    assert model.generate(ids, img, mask, max_new_tokens=0).shape == (ids.shape[0], 0)


def test_use_tokens_config_rejected():
    with pytest.raises(ValueError, match='lm_use_tokens=False'): VisionLanguageModel(small_cfg(lm_use_tokens=True))


# --- load_backbone=True: the towers come from SigLIP and Llama checkpoints -----------------------

def test_load_backbone_uses_the_tower_loaders(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM, SiglipVisionConfig, SiglipVisionModel
    torch.manual_seed(0)
    sig = SiglipVisionModel(SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                               image_size=32, patch_size=8)).eval()
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=96, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                         rope_theta=10000.0, tie_word_embeddings=True)).eval()
    sig.save_pretrained(tmp_path / 'siglip'); llama.save_pretrained(tmp_path / 'llama')
    # start from a config whose tower fields are all wrong: the loaders set them from the checkpoints
    cfg = get_preset('tiny', vit_model_type=str(tmp_path / 'siglip'), lm_model_type=str(tmp_path / 'llama'), lm_vocab_size=128,
                     lm_max_length=32)
    model = VisionLanguageModel(cfg, load_backbone=True).eval()
    assert (cfg.vit_hidden_dim, cfg.vit_img_size, cfg.vit_patch_size, cfg.lm_hidden_dim, cfg.lm_n_kv_heads) == (32, 32, 8, 48, 2)
    assert cfg.lm_vocab_size == 128                          # room for extra tokens kept; original rows copied exactly
    torch.testing.assert_close(model.decoder.token_embedding.weight[:96], llama.model.embed_tokens.weight)
    img = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.vision_encoder(img), sig(pixel_values=img).last_hidden_state, atol=1e-5, rtol=1e-5)
        ids = torch.randint(0, 96, (2, 5))
        logits, _ = model(ids, img)
    assert logits.shape == (2, 5, 128) and torch.isfinite(logits).all()
    # and the whole VLM round-trips through its own checkpoint format
    model.save_pretrained(tmp_path / 'vlm')
    with torch.no_grad(): assert torch.equal(VisionLanguageModel.from_pretrained(tmp_path / 'vlm').eval()(ids, img)[0], logits)


# --- bf16 generation ---------------------------------------------------------------------------

@pytest.fixture(scope='module')
def sharp():
    "A random model with weights 4x their initial scale: logits spread out, so greedy tokens rarely sit on a near-tie."
    torch.manual_seed(0)
    m = VisionLanguageModel(small_cfg()).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.ndim >= 2: p.mul_(4)
    return m


def agree(a, b) -> float: return (a == b).float().mean().item()


def test_bf16_weights_generate_like_fp32(sharp):
    "bf16 weights (nanovlm-generate's default on a CPU with native bf16) pick the fp32 model's greedy tokens."
    # batch 1 decodes through the one-row kernels and must match the batched rows; oneDNN is switched back on after
    ids, img, mask = batch(sharp.cfg, B=3, T=7)
    kw = dict(max_new_tokens=12, greedy=True, eos_token_id=-1)
    fp32 = sharp.generate(ids, img, mask, **kw)
    lo = VisionLanguageModel(sharp.cfg).eval()
    lo.load_state_dict(sharp.state_dict())
    lo.to(torch.bfloat16)
    bf16 = lo.generate(ids, img, mask, **kw)  # fp32 pixels into bf16 weights: the patch embedding casts them
    alone = torch.cat([lo.generate(ids[b:b + 1, b:], img[b:b + 1], **kw) for b in range(3)])  # row b has b pads
    recompute = lo.generate(ids, img, mask, use_cache=False, **kw)
    assert torch.backends.mkldnn.enabled
    # bf16 rounds differently along each path, so a near-tie may flip a token: agreement, not identity
    assert agree(bf16, fp32) >= 0.9 and agree(alone, bf16) >= 0.9 and agree(recompute, bf16) >= 0.9, (fp32, bf16, alone)


def test_single_query_attention_in_bf16_matches_fp32():
    from nanovlm.vision_transformer import attention
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(2, 6, 1, 16, generator=g), torch.randn(2, 2, 9, 16, generator=g), torch.randn(2, 2, 9, 16, generator=g)
    mask = torch.ones(2, 1, 1, 9, dtype=torch.bool)
    mask[1, ..., :3] = False
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    out = attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), attn_mask=mask)
    assert out.dtype == torch.bfloat16 and torch.allclose(out.float(), ref, atol=0.03)
