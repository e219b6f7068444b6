#!/usr/bin/env python3
"""Golden files for stipple-core's discrete (masked-diffusion) samplers.

Runs the *reference* Python samplers unchanged on a deterministic toy "model" and
records every intermediate canvas, so `core/tests/discrete_golden.rs` can check that
`stipple_core::discrete` reproduces them token for token.

References are loaded at run time from local clones of the public repositories, at the
commits pinned in tools/reference_code.py (never copied into this repo):
  * STIPPLE_LLADA_MIRROR:    https://github.com/ML-GSAI/LLaDA
        generate.py -> add_gumbel_noise, get_num_transfer_tokens, generate
  * STIPPLE_FASTDLLM_MIRROR: https://github.com/NVlabs/Fast-dLLM
        llada/generate.py -> get_transfer_index (threshold), generate
        dream/model/generation_utils.py -> top_p_logits, top_k_logits, sample_tokens,
        DreamGenerationMixin._sample (called through a stand-in `self`)
There is no default location: make the clones once (REF: any folder outside this
checkout) and point the variables at them:
  REF=$PWD/../stipple-ref
  git clone https://github.com/ML-GSAI/LLaDA $REF/LLaDA && git -C $REF/LLaDA checkout b7e6c3565f194352da44b38dd12b6970597309f3
  git clone https://github.com/NVlabs/Fast-dLLM $REF/Fast-dLLM && git -C $REF/Fast-dLLM checkout 24cc59e75f20a6384bae8c905965bb090b96388e
  export STIPPLE_LLADA_MIRROR=$REF/LLaDA STIPPLE_FASTDLLM_MIRROR=$REF/Fast-dLLM
Each clone is a git directory (work tree optional); files are read with
`git show COMMIT:<path>` at the pinned commit into a temporary directory and imported
from there.

Toy model (recomputed exactly in Rust): for a canvas x of length L and vocabulary V,
    logits[b, j] = (base[j] + E[x[b, j-1]]) + E2[x[b, j+1]]      (float32)
with x[-1] = x[L] = V (an extra boundary row of E / E2). The mask id is V - 1; its
column of `base` is pushed down so the toy rarely proposes it.

Randomness: `torch.rand` / `torch.rand_like` are wrapped to record their outputs in
call order (stored as IEEE-754 float64 bit patterns, exact), replayed in Rust through
ReplayNoise uniforms. Two torch samplers cannot be replayed bit for bit because they
consume torch's generator internally; for the cases that use them they are replaced by
same-distribution stand-ins built on the recorded `torch.rand`:
  * torch.multinomial(p, k, replacement=False) -> topk(p / -log(rand_like(p)), k)
    (the exponential race torch itself uses, with q = -log u);
  * torch.distributions.Categorical(probs).sample() -> inverse CDF with one rand per row.
Everything else runs exactly as published.

Usage, with a Python that has torch==2.11.0, numpy and transformers==5.17.0 (Dream's
generation_utils.py imports transformers), e.g. the environment of the other golden scripts:
  python3 -m venv .venv-ref && .venv-ref/bin/pip install torch==2.11.0 transformers==5.17.0 numpy
  PYTHON=.venv-ref/bin/python
  $PYTHON tools/make_discrete_goldens.py [out_dir]
(default out_dir core/tests/golden/discrete). Deterministic: fixed seeds, CPU only.
"""

import contextlib
import importlib.util
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import types

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_code import FASTDLLM, LLADA, git_show, import_file, reference_repo  # noqa: E402

V = 48
MASK = V - 1
L_MAX = 40


# ---------------------------------------------------------------- loading references
def load_references(tmp):
    llada_repo = reference_repo(*LLADA)
    fastdllm_repo = reference_repo(*FASTDLLM)
    git_show(llada_repo, "generate.py", f"{tmp}/llada/generate.py")
    llada = import_file("ref_llada_generate", f"{tmp}/llada/generate.py")

    git_show(fastdllm_repo, "llada/generate.py", f"{tmp}/fastdllm/generate.py")
    # Fast-dLLM's generate.py imports its modeling file only for main(); that file needs
    # extra packages (einops) and is irrelevant to the sampler, so stand it in.
    pkg = types.ModuleType("model")
    pkg.__path__ = []
    sub = types.ModuleType("model.modeling_llada")
    sub.LLaDAModelLM = None
    sys.modules.setdefault("model", pkg)
    sys.modules.setdefault("model.modeling_llada", sub)
    fast = import_file("ref_fastdllm_generate", f"{tmp}/fastdllm/generate.py")

    git_show(fastdllm_repo, "dream/model/generation_utils.py", f"{tmp}/dream/generation_utils.py")
    dream = import_file("ref_dream_generation_utils", f"{tmp}/dream/generation_utils.py")
    return llada, fast, dream


# ---------------------------------------------------------------- recording noise
class Recorder:
    def __init__(self):
        self.values = []
        self.orig_rand = torch.rand
        self.orig_rand_like = torch.rand_like

    def _keep(self, t):
        self.values.extend(float(v) for v in t.detach().to(torch.float64).flatten().tolist())
        return t

    def rand(self, *a, **k):
        return self._keep(self.orig_rand(*a, **k))

    def rand_like(self, *a, **k):
        return self._keep(self.orig_rand_like(*a, **k))

    @contextlib.contextmanager
    def active(self, seed):
        torch.manual_seed(seed)
        self.values = []
        torch.rand, torch.rand_like = self.rand, self.rand_like
        try:
            yield self
        finally:
            torch.rand, torch.rand_like = self.orig_rand, self.orig_rand_like


def multinomial_standin(probs, num_samples, replacement=False, generator=None):
    assert not replacement
    q = -torch.log(torch.rand_like(probs))
    return torch.topk(probs / q, num_samples, dim=-1).indices


class CategoricalStandin:
    def __init__(self, probs):
        self.probs = probs

    def sample(self):
        p = self.probs.to(torch.float64)
        u = torch.rand(p.shape[0]).to(torch.float64)
        cum = torch.cumsum(p, dim=-1)
        target = (u * cum[:, -1])[:, None]
        above = (cum > target) & (p > 0)
        idx = torch.where(above.any(-1), above.to(torch.int8).argmax(-1), torch.zeros_like(u, dtype=torch.long))
        return idx


def bits64(xs):
    return [struct.unpack("<Q", struct.pack("<d", float(x)))[0] for x in xs]


def bits32(t):
    return [int(v) for v in np.asarray(t, dtype=np.float32).view(np.uint32).flatten()]


# ---------------------------------------------------------------- toy model
g = torch.Generator().manual_seed(1234)
BASE = (torch.randn(L_MAX, V, generator=g) * 3.0).to(torch.float32)
BASE[:, MASK] -= 30.0
E = (torch.randn(V + 1, V, generator=g) * 3.0).to(torch.float32)
E2 = (torch.randn(V + 1, V, generator=g) * 3.0).to(torch.float32)


def toy_logits(x):
    b, l = x.shape
    pad = torch.full((b, 1), V, dtype=torch.long)
    left = torch.cat([pad, x[:, :-1]], dim=1)
    right = torch.cat([x[:, 1:], pad], dim=1)
    return (BASE[None, :l] + E[left]) + E2[right]


class Out:
    def __init__(self, logits):
        self.logits = logits


class ToyModel:
    """Stand-in for the LLaDA / Dream networks: records every canvas it is called on."""

    device = torch.device("cpu")

    def __init__(self, cfg_rows=None):
        self.calls = []

    def __call__(self, x, attention_mask=None, tok_idx=None, **kw):
        self.calls.append(x.tolist())
        return Out(toy_logits(x))


# ---------------------------------------------------------------- cases
def prompt_tokens(seed, b, p):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, MASK, (b, p), generator=gen)


def llada_cases(llada, rec):
    specs = [
        dict(name="lowconf_single_block", p=6, gen=16, block=16, steps=16),
        dict(name="lowconf_semi_ar_block4", p=6, gen=16, block=4, steps=16),
        dict(name="lowconf_semi_ar_block8_steps8", p=6, gen=16, block=8, steps=8),
        dict(name="cfg_1_5", p=6, gen=16, block=8, steps=8, cfg=1.5),
        dict(name="gumbel_t0_7", p=4, gen=8, block=8, steps=4, temperature=0.7),
        dict(name="random_remasking", p=6, gen=16, block=8, steps=8, remasking="random"),
        dict(name="batch2", p=6, gen=16, block=8, steps=8, b=2),
        dict(name="more_steps_than_tokens", p=5, gen=8, block=8, steps=16),
        dict(name="mask_in_prompt", p=6, gen=8, block=4, steps=4, prompt_mask_at=2),
    ]
    out = []
    for i, s in enumerate(specs):
        b = s.get("b", 1)
        prompt = prompt_tokens(100 + i, b, s["p"])
        if "prompt_mask_at" in s:
            prompt[:, s["prompt_mask_at"]] = MASK
        model = ToyModel()
        # An all-ones attention mask (no padding): generate() with cfg_scale > 0 and
        # attention_mask=None hits an unbound `attention_mask_` in the reference.
        attention_mask = torch.ones_like(prompt)
        with rec.active(7 + i):
            x = llada.generate(model, prompt, attention_mask, steps=s["steps"], gen_length=s["gen"], block_length=s["block"],
                               temperature=s.get("temperature", 0.0), cfg_scale=s.get("cfg", 0.0),
                               remasking=s.get("remasking", "low_confidence"), mask_id=MASK)
        calls = [c[:b] for c in model.calls]  # with CFG the second half is the unconditional input
        out.append(dict(name=s["name"], prompt=prompt.tolist(), gen_length=s["gen"], block_length=s["block"],
                        steps=s["steps"], temperature=s.get("temperature", 0.0), cfg_scale=s.get("cfg", 0.0),
                        remasking=s.get("remasking", "low_confidence"), uniforms=bits64(rec.values),
                        history=calls, final=x.tolist()))
    return out


def fastdllm_cases(fast, rec):
    specs = [
        dict(name="threshold_0_9", p=6, gen=16, block=8, steps=16, threshold=0.9),
        dict(name="threshold_0_5", p=6, gen=16, block=8, steps=16, threshold=0.5),
        dict(name="threshold_0_9_single_block", p=4, gen=24, block=24, steps=24, threshold=0.9),
    ]
    out = []
    for i, s in enumerate(specs):
        prompt = prompt_tokens(200 + i, 1, s["p"])
        model = ToyModel()
        with rec.active(30 + i):
            x, nfe = fast.generate(model, prompt, steps=s["steps"], gen_length=s["gen"], block_length=s["block"],
                                   temperature=0.0, remasking="low_confidence", mask_id=MASK,
                                   threshold=s["threshold"])
        out.append(dict(name=s["name"], prompt=prompt.tolist(), gen_length=s["gen"], block_length=s["block"],
                        steps=s["steps"], threshold=s["threshold"], uniforms=bits64(rec.values),
                        history=model.calls, final=x.tolist(), nfe=int(nfe)))
    return out


def dream_config(**kw):
    cfg = dict(output_history=False, return_dict_in_generate=False, mask_token_id=MASK, eps=1e-3,
               alg="origin", alg_temp=None, temperature=0.0, top_p=None, top_k=None)
    cfg.update(kw)
    return types.SimpleNamespace(**cfg)


def run_dream(dream, prompt, gen, **kw):
    model = ToyModel()
    history = []

    def tokens_hook(i, x, logits):
        if i is not None:
            history.append(x.tolist())
        return x

    cfg = dream_config(max_length=prompt.shape[1] + gen, **kw)
    with contextlib.redirect_stdout(io.StringIO()):
        x = dream.DreamGenerationMixin._sample(model, prompt, None, cfg, tokens_hook, lambda i, x, logits: logits)
    return x, history


def dream_cases(dream, rec):
    specs = [
        dict(name="maskgit_plus", p=5, gen=16, steps=8, alg="maskgit_plus"),
        dict(name="topk_margin", p=5, gen=16, steps=8, alg="topk_margin"),
        dict(name="entropy", p=5, gen=16, steps=8, alg="entropy"),
        dict(name="origin", p=5, gen=16, steps=8, alg="origin"),
        dict(name="maskgit_plus_top_k5", p=5, gen=16, steps=8, alg="maskgit_plus", top_k=5),
        dict(name="maskgit_plus_alg_temp", p=5, gen=16, steps=8, alg="maskgit_plus", alg_temp=0.5),
        # T > 0 with top-k only: a top-p filter often leaves a single token, so several
        # positions tie at confidence exactly 1.0, and torch.topk orders ties by its
        # nth_element/partial_sort internals (not reproducible; stipple takes the lower
        # position first). top-p itself is covered by filters.json.
        dict(name="maskgit_plus_sampled_top_k10", p=5, gen=16, steps=8, alg="maskgit_plus", temperature=0.8,
             top_k=10),
        dict(name="topk_margin_sampled", p=5, gen=16, steps=8, alg="topk_margin", temperature=0.5),
        dict(name="entropy_more_steps_than_tokens", p=4, gen=8, steps=12, alg="entropy"),
    ]
    out = []
    saved = (torch.multinomial, dream.dists)
    torch.multinomial = multinomial_standin
    dream.dists = types.SimpleNamespace(Categorical=CategoricalStandin)
    try:
        for i, s in enumerate(specs):
            prompt = prompt_tokens(300 + i, 1, s["p"])
            kw = {k: s[k] for k in ("alg", "alg_temp", "temperature", "top_p", "top_k") if k in s}
            with rec.active(50 + i):
                x, history = run_dream(dream, prompt, s["gen"], steps=s["steps"], **kw)
            out.append(dict(name=s["name"], prompt=prompt.tolist(), gen_length=s["gen"], steps=s["steps"], eps=1e-3,
                            alg=s["alg"], alg_temp=s.get("alg_temp"), temperature=s.get("temperature", 0.0),
                            top_p=s.get("top_p"), top_k=s.get("top_k"), uniforms=bits64(rec.values),
                            history=history, final=x.tolist()))
    finally:
        torch.multinomial, dream.dists = saved
    return out


def filter_cases(dream):
    gen = torch.Generator().manual_seed(77)
    logits = (torch.randn(4, V, generator=gen) * 2.0).to(torch.float32)
    logits[1, 5] = logits[1, 9] = logits[1].max() + 1.0  # a tied maximum
    cases = []
    for top_p in [None, 0.5, 0.9]:
        for top_k in [None, 1, 5]:
            for temperature in [0.0, 0.7]:
                lg = logits / temperature if temperature > 0 else logits
                filt = lg
                if top_p is not None and top_p < 1:
                    filt = dream.top_p_logits(filt, top_p)
                if top_k is not None:
                    filt = dream.top_k_logits(filt, top_k)
                case = dict(top_p=top_p, top_k=top_k, temperature=temperature, filtered_bits=bits32(filt.numpy()))
                if temperature == 0:
                    for key, kw in [("maskgit_plus", {}), ("topk_margin", dict(margin_confidence=True)),
                                    ("entropy", dict(neg_entropy=True))]:
                        conf, x0 = dream.sample_tokens(logits, temperature=0.0, top_p=top_p, top_k=top_k, **kw)
                        case[key] = dict(confidence=conf.tolist(), token=x0.tolist())
                cases.append(case)
    return dict(logits_bits=bits32(logits), rows=4, vocab=V, cases=cases)


def count_tables(llada, dream):
    llada_rows = []
    for n in list(range(0, 41)) + [64, 100, 127, 128, 255]:
        for steps in list(range(1, 13)) + [16, 32, 64, 128]:
            mask_index = torch.ones(1, n, dtype=torch.bool)
            llada_rows.append(dict(n=n, steps=steps, counts=llada.get_num_transfer_tokens(mask_index, steps)[0].tolist()))

    linspace = []
    for eps in [1e-3, 1e-4]:
        for steps in list(range(1, 65)) + [100, 128, 256, 512]:
            linspace.append(dict(steps=steps, eps=eps, bits=bits32(torch.linspace(1, eps, steps + 1).numpy())))

    # Dream's in-loop counts, observed by running `_sample` (maskgit_plus, T = 0):
    # the number of tokens committed at each step for a canvas of n masks.
    dream_rows = []
    for n in [1, 2, 3, 5, 7, 8, 13, 16, 21, 32, 37]:
        for steps in [1, 2, 3, 4, 5, 7, 8, 10, 16, 25, 32, 64]:
            prompt = prompt_tokens(999, 1, 2)
            _, history = run_dream(dream, prompt, n, steps=steps, alg="maskgit_plus")
            masks = [n] + [sum(t == MASK for t in h[0]) for h in history]
            dream_rows.append(dict(n=n, steps=steps, eps=1e-3, counts=[masks[i] - masks[i + 1] for i in range(steps)]))
    return dict(llada=llada_rows, linspace=linspace, dream=dream_rows)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "core", "tests", "golden", "discrete")
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        llada, fast, dream = load_references(tmp)
        rec = Recorder()
        files = {
            "toy_model.json": dict(vocab=V, mask_id=MASK, max_len=L_MAX, base_bits=bits32(BASE), e_bits=bits32(E),
                                   e2_bits=bits32(E2)),
            "llada.json": llada_cases(llada, rec),
            "fastdllm.json": fastdllm_cases(fast, rec),
            "dream.json": dream_cases(dream, rec),
            "filters.json": filter_cases(dream),
            "counts.json": count_tables(llada, dream),
        }
    for name, data in files.items():
        with open(os.path.join(out_dir, name), "w") as f:
            json.dump(data, f, separators=(",", ":"))
            f.write("\n")
        print(f"{name}: {os.path.getsize(os.path.join(out_dir, name))} bytes")


if __name__ == "__main__":
    main()
