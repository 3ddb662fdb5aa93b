"""One easy-VQA training run through nanovlm's public API, as `nanovlm-train --data TRAIN --eval-data EVAL` would
run it, plus the knobs the command does not have (preset fields, augmentation, an extra evaluation on training
questions, the pixel-shuffle factor, ...).

    python experiments/easyvqa/exp.py --name base --threads 1                       # tiny preset, defaults
    python experiments/easyvqa/exp.py --name ps4 --set mp_pixel_shuffle_factor=4 --threads 1
    python experiments/easyvqa/exp.py --name aug --aug shift:8 --tc max_steps=2000 --threads 1

The steps are those of `nanovlm.training.run_training` (tokenizer trained on the training file's prompts and
answers, `replace(cfg, lm_eos_token_id=...)`, `seed_everything`, the model, `VQACollator`, `Evaluator`, `train`),
with the training file used whole and the held-out set read from its own file, per question type (the rows'
`"type"` key). Images are decoded once and kept (the library checks every row's image when it reads the file
and decodes it again on every read: the same pixels).
The run directory is `runs/easyvqa/NAME`; `results/NAME.json` records the settings, the machine, the load, every
evaluation (with the wall time at that step), the throughput, and the final answers per question template.
"""
import argparse, ast, json, os, platform, random, re, subprocess, sys, time
from dataclasses import replace
from pathlib import Path
import torch
import torch.nn.functional as F
from PIL import Image
from nanovlm.config import get_preset
from nanovlm.data import (VQADataset, VQACollator, train_tokenizer, format_prompt, format_answer,
                          image_processor_for, get_tokenizer)
import nanovlm.training as nt
from nanovlm.training import train, Evaluator, seed_everything, param_groups
from nanovlm.train_cli import train_config_for
from nanovlm.vision_language_model import VisionLanguageModel

HERE = Path(__file__).parent
SHAPES = ('circle', 'rectangle', 'triangle')

def literal(v:str):
    try: return ast.literal_eval(v)
    except (ValueError, SyntaxError): return v

def kv(pairs:list) -> dict: return {k: literal(v) for k, v in (p.split('=', 1) for p in pairs)}

def template(q:str) -> str:
    "The question with its shape and colour words replaced: 'is there not a <colour> shape?'."
    q = re.sub(r'\b(circle|rectangle|triangle)\b', '<shape>', q)
    return re.sub(r'\b(red|green|blue|black|gray|teal|brown|yellow)\b', '<colour>', q)

def subtype(q:str, a:str) -> str:
    "Finer than the row's type: what a yes/no question is about, and whether it is negated."
    if a in SHAPES: return 'shape'
    if a not in ('yes', 'no'): return 'color'
    about = 'shape' if re.search(r'\b(circle|rectangle|triangle)\b', q) else 'color'
    neg = bool(re.search(r'\b(not|no)\b', q))
    return f"yes/no {about}{' negated' if neg else ''}"

# ---- data -------------------------------------------------------------------------------------------------

def load_rows(path:Path, cache:dict) -> tuple[list, list]:
    "Rows of a JSONL file (as `read_jsonl` gives them) with their images decoded once; and their types."
    lines = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    rows = []
    for d in lines:
        p = path.parent / d['image']
        if p not in cache:
            with Image.open(p) as im: cache[p] = im.convert('RGB')
        rows.append({'images': [cache[p]], 'texts': d['texts'], 'path': str(p)})
    return rows, [d.get('type') for d in lines]

class Augment:
    "Training-only augmentation in front of an image processor: 'flip', 'shift:K' (pixels), 'rot90', joined by +."
    def __init__(self, proc, spec:str):
        self.proc, self.ops = proc, [s for s in spec.split('+') if s and s != 'none']
        self.img_size, self.normalize = proc.img_size, proc.normalize

    def __call__(self, img:Image.Image) -> torch.Tensor:
        for op in self.ops:
            name, _, arg = op.partition(':')
            if name == 'flip' and torch.rand(()) < 0.5: img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            elif name == 'rot90':
                k = int(torch.randint(4, ()))
                if k: img = img.transpose([None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180,
                                           Image.Transpose.ROTATE_270][k])
            elif name == 'shift': img = shift(img, int(arg))
            elif name == 'zoom': img = zoom(img, *map(float, arg.split('-')))
            elif name not in ('flip', 'rot90'): raise ValueError(f'unknown augmentation {op!r}')
        return self.proc(img)

def shift(img:Image.Image, k:int) -> Image.Image:
    "Move the picture by up to k pixels each way; what comes in is the background (the corner pixel's colour)."
    dx, dy = (int(torch.randint(-k, k + 1, ())) for _ in range(2))
    out = Image.new('RGB', img.size, img.getpixel((0, 0)))
    out.paste(img, (dx, dy))
    return out

def zoom(img:Image.Image, lo:float, hi:float) -> Image.Image:
    """The picture scaled by a random factor in [lo, hi] (area kept square), placed at a random position on a canvas
    of the original size filled with the corner pixel's colour; a larger picture is cropped at a random place."""
    s = lo + (hi - lo) * float(torch.rand(()))
    w, h = img.size
    W, H = max(1, round(w * s)), max(1, round(h * s))
    big = img.resize((W, H), Image.Resampling.BILINEAR)
    out = Image.new('RGB', img.size, img.getpixel((0, 0)))
    dx, dy = (int(torch.randint(min(0, n - N), max(0, n - N) + 1, ())) for n, N in ((w, W), (h, H)))
    out.paste(big, (dx, dy))
    return out

class Balanced(torch.utils.data.Dataset):
    """Rows drawn so that each group (a row's type, or its answer) is equally likely: a fixed, seeded draw of
    `length` rows with weight 1/(rows in its group), over which the loop's own shuffling runs as usual."""
    def __init__(self, ds, groups:list, length:int, seed:int=0):
        count = {g: groups.count(g) for g in set(groups)}
        w = torch.tensor([1 / count[g] for g in groups], dtype=torch.double)
        self.ds = ds
        self.idx = torch.multinomial(w, length, replacement=True,
                                     generator=torch.Generator().manual_seed(seed)).tolist()
    def __len__(self): return len(self.idx)
    def __getitem__(self, i): return self.ds[self.idx[i]]

def vit_lr_optimizer(lr_vit:float|None, betas=(0.9, 0.999), prefixes:dict|None=None):
    """`make_optimizer` with the ViT in its own group at `lr_vit` (the library has one rate for both backbones;
    None: that rate) and AdamW's `betas` (the library's: PyTorch's default, 0.9 and 0.999). `prefixes`: parameter
    name regex -> learning rate, ahead of the rest (0 freezes them)."""
    def make(model, tc):
        extra = {}
        for pat, lr in (prefixes or {}).items():  # every parameter name the pattern matches, as its own prefix
            for name, _ in model.named_parameters():
                if re.match(pat, name): extra[name] = (f'vit_{pat}' if name.startswith('vision_encoder.') else pat, lr)
        lrs = {**extra, 'MP.': ('MP', tc.lr_mp),
               'vision_encoder.': ('vit', tc.lr_backbones if lr_vit is None else lr_vit),
               '': ('backbones', tc.lr_backbones)}
        return torch.optim.AdamW(param_groups(model, lrs, tc.weight_decay), weight_decay=tc.weight_decay,
                                 betas=betas, fused=True)
    return make

def vit_warmup(steps:int):
    """`set_lr` with the ViT groups' rate ramped linearly from 0 over the first `steps` optimizer steps, on top of
    the schedule (the other groups follow the schedule alone). `train` calls `set_lr` once per step."""
    calls = [0]
    def set_lr(opt, factor):
        calls[0] += 1
        ramp = min(1.0, calls[0] / steps)
        for g in opt.param_groups:
            g['lr'] = g['initial_lr'] * factor * (ramp if g['name'].startswith('vit') else 1.0)
        return max(g['lr'] for g in opt.param_groups)
    return set_lr

def qk_norm():
    """The ViT's attention with each head's queries and keys layer-normalised (no parameters) before the dot
    product: the logits stay bounded, the known guard against attention-entropy collapse."""
    import torch.nn.functional as F
    from nanovlm.vision_transformer import ViTMultiHeadAttention
    plain = ViTMultiHeadAttention._qkv
    def _qkv(self, x):
        q, k, v = plain(self, x)
        return F.layer_norm(q, q.shape[-1:]), F.layer_norm(k, k.shape[-1:]), v
    ViTMultiHeadAttention._qkv = _qkv

def conv_stem(model, width:int=0):
    """Replace the ViT's patch convolution (one p x p linear map per patch) by a small convolutional stem
    (Xiao et al. 2021, "Early convolutions help transformers see better"): 3x3 convolutions of stride 2, each
    followed by GELU, log2(p) of them, then a 1x1 convolution to the ViT's width. Same output shape: one
    feature per p x p patch. `width`: channels of the first convolution (doubling each time); 0: C / 2**(n-1)."""
    import math
    import torch.nn as nn
    pe = model.vision_encoder.patch_embedding
    C, p = pe.conv.out_channels, pe.conv.kernel_size[0]
    n = int(math.log2(p))
    w = width or max(8, C // 2 ** (n - 1))
    layers, cin = [], 3
    for i in range(n):
        cout = w * 2 ** i
        layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GELU()]
        cin = cout
    layers.append(nn.Conv2d(cin, C, 1))
    class Stem(nn.Sequential):
        weight = property(lambda self: self[-1].weight)  # `forward` casts pixels to `self.conv.weight.dtype`
    stem = Stem(*layers)
    for m in stem:
        if isinstance(m, nn.Conv2d): nn.init.kaiming_normal_(m.weight, nonlinearity='relu'); nn.init.zeros_(m.bias)
    nn.init.normal_(stem[-1].weight, std=0.02)  # the last map as the plain patch convolution starts
    pe.conv = stem

def loss_variant(label_smoothing:float=0.0, logit_penalty:float=0.0):
    """The model's answer loss with label smoothing, and/or spectral decoupling (Pezeshki et al. 2021: plus
    `logit_penalty` times the mean squared logit at the answer positions), both known remedies for a network that
    keeps sharpening the features it has learned (gradient starvation)."""
    import torch.nn.functional as F
    import nanovlm.vision_language_model as V
    def answer_loss(logits, targets):
        keep = targets != -100
        x = logits[keep].float()
        loss = F.cross_entropy(x, targets[keep], label_smoothing=label_smoothing) if keep.any() else logits.sum() * 0
        return loss + logit_penalty * x.pow(2).mean() if logit_penalty and keep.any() else loss
    V.answer_loss = answer_loss

def mean_token(model):
    """One more image token after the N the projector makes: the mean of the ViT's output tokens, mapped into the
    LM's width by its own linear map (kept in the projector, at its learning rate). A pooled summary of the whole
    image, as a classifier head on a ViT reads it (SigLIP's pooling head, CLIP's class token)."""
    import types
    import torch.nn as nn
    mp = model.MP
    mp.mean_proj = nn.Linear(model.cfg.vit_hidden_dim, model.cfg.lm_hidden_dim, bias=False)
    nn.init.normal_(mp.mean_proj.weight, std=0.02)
    def forward(self, x):  # (B, P, C) -> (B, N + 1, lm_hidden_dim)
        return torch.cat([self.proj(self.pixel_shuffle(x)), self.mean_proj(x.mean(1, keepdim=True))], 1)
    mp.forward = types.MethodType(forward, mp)

def mlp_projector(model, norm:bool=False):
    """The projector's linear map followed by GELU and a second linear map in the LM's width (LLaVA-1.5's
    two-layer MLP projector). `norm`: instead, the linear map's output RMS-normalised (no MLP)."""
    import torch.nn as nn
    mp, C = model.MP, model.cfg.lm_hidden_dim
    if norm: mp.proj = nn.Sequential(mp.proj, nn.RMSNorm(C))
    else:
        second = nn.Linear(C, C, bias=False)
        nn.init.normal_(second.weight, std=0.02)
        mp.proj = nn.Sequential(mp.proj, nn.GELU(), second)

def tokenizer_for(rows:list, cfg):
    "The word-level tokenizer `nanovlm-train` trains for a JSONL file: on the rows' prompts and answers."
    texts = [s for r in rows for t in r['texts'] for s in (format_prompt(t['user']), format_answer(t['assistant']))]
    return train_tokenizer(texts, cfg.lm_vocab_size, 'wordlevel')

def data(a, cfg, tok=None):
    cache = {}
    train_rows, train_types = load_rows(a.data_dir / a.train, cache)
    reps = kv(a.repeat)
    train_rows = [r for r, t in zip(train_rows, train_types) for _ in range(reps.get(t, 1))]
    train_types = [t for t in train_types for _ in range(reps.get(t, 1))]
    eval_rows, eval_types = load_rows(a.data_dir / a.eval, cache)
    tok = tok or tokenizer_for(train_rows, cfg)
    proc = image_processor_for(cfg)
    train_ds = VQADataset(train_rows, tok, Augment(proc, a.aug) if a.aug else proc)
    if a.balance:
        groups = train_types if a.balance == 'type' else [r['texts'][0]['assistant'] for r in train_rows]
        train_ds = Balanced(train_ds, groups, len(train_ds), a.balance_seed)
    eval_ds = VQADataset(eval_rows, tok, proc)
    sample = random.Random(0).sample(range(len(train_rows)), min(a.train_eval, len(train_rows)))
    train_eval = (VQADataset([train_rows[i] for i in sample], tok, proc), [train_types[i] for i in sample])
    return tok, train_ds, (eval_ds, eval_types), train_eval

# ---- the run ----------------------------------------------------------------------------------------------

def machine() -> dict:
    cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), '')
    return {'cpu': cpu, 'cores': os.cpu_count(), 'torch': torch.__version__, 'python': platform.python_version()}

def per_template(preds:list) -> dict:
    out = {}
    for p in preds:
        for key in (f"subtype: {subtype(p['question'], p['answer'])}", f"template: {template(p['question'])}"):
            d = out.setdefault(key, [0, 0])
            d[0] += p['correct']
            d[1] += 1
    return {k: {'correct': c, 'n': n, 'accuracy': round(c / n, 4)} for k, (c, n) in sorted(out.items())}

def confusion(preds:list, kind=SHAPES) -> dict:
    "reference -> prediction -> count, for the questions whose answer is in `kind`."
    m = {}
    for p in preds:
        if p['answer'] in kind:
            row = m.setdefault(p['answer'], {})
            row[p['prediction']] = row.get(p['prediction'], 0) + 1
    return m

def word_warmup(model, train_ds, tok, steps:int, tc):
    """The vision warm-up (appendix 7a's tags: each image's answers, a sigmoid each), but each answer's logit is
    the projected mean image token's dot product with that answer word's embedding in the LM (tied with its
    head), plus a bias; the ViT, the projector and those embeddings learn. The image tokens then start out in
    the words' own directions: the hypothesis is that comparing a question's word with the picture (yes/no)
    is then easier to learn."""
    from nanovlm.train_cli import answer_tags
    from nanovlm.training import precision_context
    first, answers, tags = answer_tags([{**r, 'images': [r['path']]} for r in train_ds.rows])
    ids = torch.tensor([tok.encode(w)[0] for w in answers])
    emb, bias = model.decoder.token_embedding, torch.nn.Parameter(torch.zeros(len(answers)))
    params = [*model.vision_encoder.parameters(), *model.MP.parameters(), emb.weight, bias]
    opt = torch.optim.AdamW(params, lr=tc.lr_backbones, weight_decay=0.0)
    g, ramp = torch.Generator().manual_seed(tc.seed), max(1, steps // 8)
    for step in range(steps):
        for group in opt.param_groups: group['lr'] = tc.lr_backbones * min(1.0, (step + 1) / ramp)
        pick = torch.randint(len(first), (tc.batch_size,), generator=g).tolist()
        x = torch.stack([train_ds[first[i]]['image'] for i in pick])
        with precision_context(torch.device('cpu'), tc.precision):
            h = model.MP(model.vision_encoder(x)).mean(1)              # (B, C): the mean image token
        logits = h.float() @ emb.weight[ids].float().T + bias          # (B, answers)
        loss = F.binary_cross_entropy_with_logits(logits, tags[pick])
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        if step % 250 == 0 or step == steps - 1: print(f'word warm-up {step}: {loss.item():.3f}', flush=True)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--name', required=True)
    ap.add_argument('--data-dir', type=Path, default=Path('runs/easyvqa/data'))
    ap.add_argument('--train', default='tune_train.jsonl')
    ap.add_argument('--eval', default='tune_val.jsonl')
    ap.add_argument('--preset', default='tiny')
    ap.add_argument('--set', action='append', default=[], metavar='FIELD=VALUE', help='a VLMConfig field')
    ap.add_argument('--tc', action='append', default=[], metavar='FIELD=VALUE', help='a TrainConfig field')
    ap.add_argument('--aug', default='', help="training augmentation: flip, shift:K, rot90, zoom:LO-HI, joined by +")
    ap.add_argument('--train-eval', type=int, default=0, help='also evaluate on this many training questions')
    ap.add_argument('--repeat', action='append', default=[], metavar='TYPE=K',
                    help='training rows of this type appear K times (e.g. shape=3): oversampling')
    ap.add_argument('--balance', choices=['type', 'answer'], help='sample rows so each type / answer is equally likely')
    ap.add_argument('--balance-seed', type=int, default=0)
    ap.add_argument('--lr-vit', type=float, help="the ViT's own learning rate (default: lr_backbones)")
    ap.add_argument('--lr-prefix', action='append', default=[], metavar='REGEX=LR',
                    help="parameters whose names match REGEX get this learning rate (0 freezes them)")
    ap.add_argument('--vit-warmup', type=int, help="ramp the ViT's rate from 0 over this many steps (needs --lr-vit)")
    ap.add_argument('--betas', help="AdamW's betas, e.g. 0.9,0.95 (default PyTorch's 0.9,0.999)")
    ap.add_argument('--init-vit', type=Path, help="start the ViT (only) from the model of this run directory")
    ap.add_argument('--init-vit-file', type=Path, help="start the ViT from this safetensors file (probe.py's vit.safetensors)")
    ap.add_argument('--vision-warmup', type=int, default=0,
                    help="first the library's vision warm-up (answer tags) for this many steps, at lr_backbones")
    ap.add_argument('--word-warmup', type=int, default=0,
                    help="the warm-up's tags read through the projector and the LM's word embeddings (see word_warmup)")
    ap.add_argument('--qk-norm', action='store_true', help="layer-normalise the ViT's queries and keys")
    ap.add_argument('--conv-stem', type=int, nargs='?', const=0, default=None, metavar='WIDTH',
                    help="a convolutional stem instead of the ViT's patch convolution (WIDTH: first layer's channels)")
    ap.add_argument('--mean-token', action='store_true', help="one more image token: the ViT's mean output token")
    ap.add_argument('--mp-mlp', action='store_true', help='a two-layer MLP projector (linear, GELU, linear)')
    ap.add_argument('--mp-norm', action='store_true', help="the projector's output RMS-normalised")
    ap.add_argument('--label-smoothing', type=float, default=0.0)
    ap.add_argument('--logit-penalty', type=float, default=0.0, help='spectral decoupling: weight of the mean squared logit')
    ap.add_argument('--init', type=Path, help='start from the model and tokenizer of this run directory')
    ap.add_argument('--reinit', help="with --init: parts to start afresh, e.g. vision_encoder or decoder,MP")
    ap.add_argument('--stop-after', type=int, help='end after this step (the schedule stays that of max_steps)')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--out', type=Path, default=Path('runs/easyvqa'))
    ap.add_argument('--results', type=Path, default=HERE / 'results')
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    t_start, load0 = time.time(), os.getloadavg()
    cfg = get_preset(a.preset, **kv(a.set))
    tc = train_config_for(a.preset, output_dir=str(a.out / a.name), **kv(a.tc))
    if a.lr_vit is not None or a.betas or a.lr_prefix:  # `train` looks `make_optimizer` up at run time
        nt.make_optimizer = vit_lr_optimizer(a.lr_vit, tuple(map(float, a.betas.split(','))) if a.betas else (0.9, 0.999),
                                             {k: float(v) for k, v in (p.split('=', 1) for p in a.lr_prefix)})
    if a.vit_warmup: nt.set_lr = vit_warmup(a.vit_warmup)
    init = VisionLanguageModel.from_pretrained(str(a.init)) if a.init else None
    if init is not None: cfg = init.cfg
    tok, train_ds, (eval_ds, eval_types), (tr_ds, tr_types) = data(a, cfg, get_tokenizer(str(a.init)) if a.init else None)
    cfg = replace(cfg, lm_eos_token_id=tok.eos_token_id)
    seed_everything(tc.seed)
    model = init if init is not None else VisionLanguageModel(cfg)
    if a.init_vit:
        model.vision_encoder.load_state_dict(VisionLanguageModel.from_pretrained(str(a.init_vit)).vision_encoder.state_dict())
    if a.init_vit_file:
        from safetensors.torch import load_file
        model.vision_encoder.load_state_dict(load_file(str(a.init_vit_file)))
    if a.reinit:  # the parts named start again from a fresh model's initialisation (seeded as a new run)
        seed_everything(tc.seed)
        fresh = VisionLanguageModel(cfg)
        for part in a.reinit.split(','): getattr(model, part).load_state_dict(getattr(fresh, part).state_dict())
    if a.vision_warmup:  # as nanovlm-train does it (appendix 7a); rows share one decoded image per file
        from nanovlm.train_cli import vision_warmup
        vision_warmup(model.vision_encoder, train_ds, [{**r, 'images': [r['path']]} for r in train_ds.rows],
                      a.vision_warmup, tc.batch_size, tc.lr_backbones, tc.seed, 'cpu', tc.precision)
    if a.word_warmup: word_warmup(model, train_ds, tok, a.word_warmup, tc)
    if a.qk_norm: qk_norm()
    if a.label_smoothing or a.logit_penalty: loss_variant(a.label_smoothing, a.logit_penalty)
    if a.conv_stem is not None: conv_stem(model, a.conv_stem)
    if a.mean_token: mean_token(model)
    if a.mp_mlp or a.mp_norm: mlp_projector(model, norm=a.mp_norm)
    collate = VQACollator(tok, cfg.lm_max_length)
    ev = Evaluator(eval_ds, collate, tok, eval_types, precision=tc.precision)
    ev_train = Evaluator(tr_ds, collate, tok, tr_types, precision=tc.precision) if len(tr_ds) else None
    def evaluate(m):
        res = ev(m)
        if ev_train is not None: res.update({f'train_{k}': v for k, v in ev_train(m).items()})
        return res
    t0 = time.perf_counter()
    hist = train(model, tc, train_ds, collate, evaluate, [tok], progress=False, overwrite=True,
                 stop_after=a.stop_after)
    wall = time.perf_counter() - t0
    preds = ev.predictions(model)
    for p, r in zip(preds, eval_ds.rows): p['image'] = Path(r['path']).name
    out = Path(tc.output_dir)
    (out / 'predictions.jsonl').write_text(''.join(json.dumps(p) + '\n' for p in preds))
    logs = [r for r in hist if 'tokens_per_s' in r]
    evals = [r for r in hist if 'accuracy' in r]
    for r in evals:  # wall time at that step: the last log record at or before it
        r['elapsed_s'] = next((l['elapsed_s'] for l in reversed(logs) if l['step'] <= r['step']), None)
    res = {'name': a.name, 'argv': sys.argv[1:], 'date': time.strftime('%Y-%m-%d %H:%M'),
           'commit': subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True,
                                    cwd=HERE).stdout.strip(),
           'machine': machine(), 'threads': a.threads, 'loadavg_start': load0, 'loadavg_end': os.getloadavg(),
           'config': {k: v for k, v in cfg.to_dict().items() if k in kv(a.set)}, 'train_config': vars(tc),
           'n_train': len(train_ds), 'n_eval': len(eval_ds), 'image_tokens': cfg.n_image_tokens,
           'train_wall_s': round(wall, 1), 'total_wall_s': round(time.time() - t_start, 1),
           's_per_step': round(logs[-1]['elapsed_s'] / logs[-1]['step'], 4) if logs else None,
           'tokens_per_s': round(sum(l['tokens_per_s'] for l in logs) / len(logs), 1) if logs else None,
           'evals': [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in evals],
           'final_by_template': per_template(preds), 'shape_confusion': confusion(preds)}
    a.results.mkdir(parents=True, exist_ok=True)
    (a.results / f'{a.name}.json').write_text(json.dumps(res, indent=1))
    last = evals[-1] if evals else {}
    print(a.name, {k: round(v, 3) for k, v in last.items() if 'accuracy' in k}, f'{wall:.0f}s')

if __name__ == '__main__': main()
