"""Real clients against `stipple serve`: the `openai` Python package (chat, completion,
streaming, fill-in-the-middle, images) and `requests` in AUTOMATIC1111's call shape
(txt2img, img2img, progress), plus the music endpoint. Every result is compared with what
the `stipple` CLI makes for the same seed. Run by tests/serve.rs:

    python clients.py BASE_URL STIPPLE_BINARY API_KEY WORK_DIR
"""

import base64
import io
import json
import os
import subprocess
import sys

import openai
import requests
from PIL import Image

BASE, CLI, KEY, WORK = sys.argv[1:5]
TEXT, IMAGE = "stipple-mini-text", "stipple-mini-image"
client = openai.OpenAI(base_url=BASE + "/v1", api_key=KEY)
auth = {"Authorization": f"Bearer {KEY}"}
checks = []


def cli(*args):
    """The CLI's JSON summary of a run."""
    out = subprocess.run([CLI, "--json", *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def check(name, got, want):
    assert got == want, f"{name}: server {got!r} != CLI {want!r}"
    checks.append(name)


def pixels(png_bytes):
    return Image.open(io.BytesIO(png_bytes)).convert("RGB")


def max_diff(a, b):
    assert a.size == b.size, (a.size, b.size)
    return max(abs(x - y) for x, y in zip(a.tobytes(), b.tobytes()))


# --- text: chat, completion, streams, fill in the middle -----------------------------
models = [m.id for m in client.models.list().data]
assert TEXT in models and IMAGE in models, models

r = client.chat.completions.create(model=TEXT, messages=[{"role": "user", "content": "Once upon a time"}], max_tokens=24, seed=7)
check("chat", r.choices[0].message.content, cli("--seed", "7", "text", "Once upon a time", "--gen-len", "24")["text"])
assert r.choices[0].finish_reason in ("stop", "length") and r.usage.completion_tokens > 0

r = client.completions.create(model=TEXT, prompt="The king", max_tokens=24, seed=3)
check("completion", r.choices[0].text, cli("--seed", "3", "text", "The king", "--raw", "--gen-len", "24")["text"])

stream = client.chat.completions.create(
    model=TEXT, messages=[{"role": "user", "content": "To be or not"}], max_tokens=32, seed=2, stream=True,
    extra_body={"stipple": {"block_length": 8}},
)
pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
assert len([p for p in pieces if p]) >= 2, pieces
check("chat stream", "".join(pieces), cli("--seed", "2", "text", "To be or not", "--gen-len", "32", "--block-len", "8")["text"])

stream = client.completions.create(model=TEXT, prompt="O Romeo", max_tokens=32, seed=1, stream=True, stream_options={"include_usage": True}, extra_body={"stipple": {"block_length": 8, "steps": 16}})
chunks = list(stream)
assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
text = "".join(c.choices[0].text for c in chunks if c.choices)
check("completion stream", text, cli("--seed", "1", "text", "O Romeo", "--raw", "--gen-len", "32", "--block-len", "8", "--steps", "16")["text"])

# the canvas events come through the openai client as chunks with object "stipple.canvas"
stream = client.completions.create(model=TEXT, prompt="O Romeo", max_tokens=32, seed=1, stream=True, extra_body={"stipple": {"block_length": 8, "steps": 16, "canvas": True}})
chunks = list(stream)
canvases = [c for c in chunks if c.object == "stipple.canvas"]
assert len(canvases) == 16 and canvases[-1].masked == 0 and len(canvases[-1].tokens) == 32, [c.masked for c in canvases]
check("completion stream with the canvas", "".join(c.choices[0].text for c in chunks if c.object == "text_completion"), text)

r = client.completions.create(model=TEXT, prompt="The king said", suffix=" and then he left.", max_tokens=8, seed=0)
want = cli("--seed", "0", "infill", "--template", "The king said[0..8] and then he left.")["holes"][0]["text"]
check("fill in the middle", r.choices[0].text, want)

r = requests.post(f"{BASE}/v1/infill", headers=auth, json={"model": TEXT, "template": "Name: [3 chars:[A-Z]], age [2 /[0-9]+/].", "seed": 5})
r.raise_for_status()
want = cli("--seed", "5", "infill", "--template", "Name: [3 chars:[A-Z]], age [2 /[0-9]+/].")
check("infill", [h["text"] for h in r.json()["holes"]], [h["text"] for h in want["holes"]])

try:
    client.chat.completions.create(model="gpt-nothing", messages=[{"role": "user", "content": "hi"}])
    raise AssertionError("an unknown model was accepted")
except openai.NotFoundError as e:
    assert e.body["code"] == "model_not_found", e.body
    checks.append("unknown model -> NotFoundError")

# --- images: OpenAI's images API ------------------------------------------------------
r = client.images.generate(model=IMAGE, prompt="a red heart", n=2, size="32x32", response_format="b64_json", extra_body={"stipple": {"seed": 11, "steps": 10}})
assert len(r.data) == 2
for k, d in enumerate(r.data):
    path = os.path.join(WORK, f"openai-{k}.png")
    cli("--seed", str(11 + k), "image", "a red heart", "--steps", "10", "--out", path)
    got, want = base64.b64decode(d.b64_json), open(path, "rb").read()
    if k == 0:
        check("images n=2, first (PNG bytes)", got, want)
    else:
        # made in one model batch with the first: equal within 2/255
        diff = max_diff(pixels(got), pixels(want))
        assert diff <= 2, f"image {k}: {diff}/255 from the CLI's"
        checks.append(f"images n=2, second within {diff}/255")

# --- AUTOMATIC1111's API, as scripts call it with requests ---------------------------
payload = {"prompt": "a red heart", "negative_prompt": "", "steps": 10, "cfg_scale": 7.5, "sampler_name": "Euler a", "seed": 5, "width": 32, "height": 32, "batch_size": 1}
r = requests.post(f"{BASE}/sdapi/v1/txt2img", json=payload, headers=auth)
r.raise_for_status()
body = r.json()
txt2img = base64.b64decode(body["images"][0])
info = json.loads(body["info"])
assert info["all_seeds"] == [5] and info["sampler_name"] == "Euler a" and "Steps: 10" in info["infotexts"][0], info
path = os.path.join(WORK, "txt2img.png")
cli("--seed", "5", "image", "a red heart", "--steps", "10", "--guidance", "7.5", "--scheduler", "euler-a", "--out", path)
check("txt2img (PNG bytes)", txt2img, open(path, "rb").read())

init = base64.b64encode(txt2img).decode()
payload = {"prompt": "a blue heart", "init_images": [init], "denoising_strength": 0.5, "steps": 10, "cfg_scale": 7.5, "sampler_name": "Euler a", "seed": 6}
r = requests.post(f"{BASE}/sdapi/v1/img2img", json=payload, headers=auth)
r.raise_for_status()
out = os.path.join(WORK, "img2img.png")
cli("--seed", "6", "image", "a blue heart", "--init-image", path, "--strength", "0.5", "--steps", "10", "--guidance", "7.5", "--scheduler", "euler-a", "--out", out)
check("img2img (PNG bytes)", base64.b64decode(r.json()["images"][0]), open(out, "rb").read())

# inpainting: white repaints, the rest is kept exactly (A1111's overlay, the CLI's --keep-unmasked)
mask = Image.new("L", (32, 32), 0)
mask.paste(255, (0, 0, 16, 32))
mask_path = os.path.join(WORK, "mask.png")
mask.save(mask_path)
buf = io.BytesIO()
mask.save(buf, format="PNG")
payload = {"prompt": "a blue heart", "init_images": [init], "mask": base64.b64encode(buf.getvalue()).decode(), "denoising_strength": 0.75, "steps": 10, "sampler_name": "Euler a", "seed": 7}
r = requests.post(f"{BASE}/sdapi/v1/img2img", json=payload, headers=auth)
r.raise_for_status()
out = os.path.join(WORK, "inpaint.png")
cli("--seed", "7", "image", "a blue heart", "--init-image", path, "--mask", mask_path, "--keep-unmasked", "--strength", "0.75", "--steps", "10", "--scheduler", "euler-a", "--out", out)
inpainted = base64.b64decode(r.json()["images"][0])
check("inpainting (PNG bytes)", inpainted, open(out, "rb").read())
kept = pixels(inpainted).crop((16, 0, 32, 32)).tobytes() == pixels(txt2img).crop((16, 0, 32, 32)).tobytes()
assert kept, "the unmasked half changed"

p = requests.get(f"{BASE}/sdapi/v1/progress", headers=auth).json()
assert {"progress", "eta_relative", "state", "current_image"} <= set(p), p
samplers = [s["name"] for s in requests.get(f"{BASE}/sdapi/v1/samplers", headers=auth).json()]
assert "Euler a" in samplers and "DPM++ 2M Karras" in samplers, samplers
checks.append("progress and samplers")

# --- music ----------------------------------------------------------------------------
r = requests.post(f"{BASE}/v1/audio/generations", headers=auth, json={"prompt": "piano", "seconds": 2, "seed": 3})
r.raise_for_status()
assert r.headers["content-type"] == "audio/wav" and r.headers["x-stipple-seed"] == "3"
wav = os.path.join(WORK, "music.wav")
cli("--seed", "3", "audio", "piano", "--seconds", "2", "--out", wav)
check("music (WAV bytes)", r.content, open(wav, "rb").read())

print(f"openai {openai.__version__}, requests {requests.__version__}: {len(checks)} checks passed")
for c in checks:
    print("  ok:", c)
