"""Loading the Python reference implementations at run time from local clones of the
public repositories, so their code is run but never copied into this repository.
Shared by the fixture and golden scripts.

Each reference is a public git repository read at a pinned commit (LLADA, FASTDLLM
below). There is no default location: clone each one anywhere (REF: any folder outside
this checkout) and point the script's environment variable at the clone:

  REF=$PWD/../stipple-ref
  git clone https://github.com/ML-GSAI/LLaDA $REF/LLaDA && git -C $REF/LLaDA checkout b7e6c3565f194352da44b38dd12b6970597309f3
  git clone https://github.com/NVlabs/Fast-dLLM $REF/Fast-dLLM && git -C $REF/Fast-dLLM checkout 24cc59e75f20a6384bae8c905965bb090b96388e
  export STIPPLE_LLADA_MIRROR=$REF/LLaDA STIPPLE_FASTDLLM_MIRROR=$REF/Fast-dLLM

Files are read with `git show COMMIT:PATH` at the pinned commit, so a bare clone or
mirror works too and the work tree's checkout is never read; the clone only has to
contain the commit. Fast-dLLM also carries the LLaDA and Dream modeling code and Dream's
generation_utils.py that the scripts use. A script that needs a reference stops with
these instructions when its variable is unset or its clone lacks the pinned commit.

Where there is no git (the lent GPU machine), the variable may instead name a snapshot:
a folder holding the needed files at their paths plus a `.stipple-snapshot` file whose
content is the pinned commit (tools/gpu-check.sh --prepare writes one with `snapshot`).
"""

import importlib.util
import os
import subprocess
import sys
from typing import NamedTuple

# (environment variable, public repository, pinned commit) of each reference.
LLADA = ("STIPPLE_LLADA_MIRROR", "https://github.com/ML-GSAI/LLaDA", "b7e6c3565f194352da44b38dd12b6970597309f3")
FASTDLLM = ("STIPPLE_FASTDLLM_MIRROR", "https://github.com/NVlabs/Fast-dLLM", "24cc59e75f20a6384bae8c905965bb090b96388e")


class ReferenceRepo(NamedTuple):
    """A local clone (`path`) of the public repository `url`, read at `commit`."""

    var: str
    url: str
    commit: str
    path: str


def clone_instructions(var, url, commit):
    name = url.rstrip("/").rsplit("/", 1)[-1]
    return (f"  git clone {url} DIR && git -C DIR checkout {commit}\n"
            f"  export {var}=DIR\n"
            f"(DIR: any folder outside this checkout, e.g. ../stipple-ref/{name}; there is no default location)")


def reference_repo(var, url, commit):
    """The clone named by the environment variable `var`; stops with the clone
    instructions when it is unset, is not a git repository, or lacks `commit`."""
    path = os.environ.get(var)
    if not path:
        sys.exit(f"error: {var} is not set. Set it to a clone of {url} at commit {commit}, made with\n"
                 + clone_instructions(var, url, commit))
    repo = ReferenceRepo(var, url, commit, path)
    marker = os.path.join(path, ".stipple-snapshot")
    if os.path.exists(marker):
        if open(marker).read().strip() != commit:
            sys.exit(f"error: the snapshot {var}={path} is not of the pinned commit {commit} of {url}")
        return repo
    if subprocess.run(["git", "-C", path, "rev-parse", "--git-dir"], capture_output=True).returncode != 0:
        sys.exit(f"error: {var}={path} is not a git repository (or does not exist). "
                 f"Set it to a clone of {url} at commit {commit}, made with\n"
                 + clone_instructions(var, url, commit))
    if subprocess.run(["git", "-C", path, "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True).returncode != 0:
        sys.exit(f"error: the clone {var}={path} does not contain the pinned commit {commit} of {url}.\n"
                 f"Fetch it and check it out (a bare clone needs only the fetch):\n"
                 f"  git -C {path} fetch {url} && git -C {path} checkout {commit}")
    return repo


def git_show(repo, path, dest):
    """Write `path` as it is at the pinned commit of `repo` (a `ReferenceRepo`) to `dest`
    (the clone may have no work tree, and its checkout is not read)."""
    if os.path.exists(os.path.join(repo.path, ".stipple-snapshot")):
        src = os.path.join(repo.path, path)
        if not os.path.exists(src):
            sys.exit(f"error: the snapshot {repo.var}={repo.path} lacks {path}")
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(src, "rb") as i, open(dest, "wb") as o:
            o.write(i.read())
        return
    r = subprocess.run(["git", "-C", repo.path, "show", f"{repo.commit}:{path}"], capture_output=True)
    if r.returncode != 0:
        have = subprocess.run(["git", "-C", repo.path, "cat-file", "-e", f"{repo.commit}^{{commit}}"], capture_output=True)
        hint = ("" if have.returncode == 0 else
                f"\nFetch the commit and check it out (a bare clone needs only the fetch):\n"
                f"  git -C {repo.path} fetch {repo.url} && git -C {repo.path} checkout {repo.commit}")
        sys.exit(f"error: could not read {path} at commit {repo.commit} from {repo.var}={repo.path} "
                 f"(a clone of {repo.url}):\n{r.stderr.decode(errors='replace').strip()}{hint}")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(dest, "wb") as f:
        f.write(r.stdout)


def import_file(name, path):
    """Import the Python file at `path` as module `name`."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def snapshot(ref, paths, out):
    """Write `paths` of the reference `ref` (one of LLADA, FASTDLLM) at its pinned commit
    to the folder `out`, with the `.stipple-snapshot` marker: a copy for a machine without
    git (never committed to this repository)."""
    repo = reference_repo(*ref)
    for p in paths:
        git_show(repo, p, os.path.join(out, p))
    with open(os.path.join(out, ".stipple-snapshot"), "w") as f:
        f.write(repo.commit)


if __name__ == "__main__":
    # python3 tools/reference_code.py snapshot OUT: the files the text scripts read
    if len(sys.argv) == 3 and sys.argv[1] == "snapshot":
        snapshot(LLADA, ["generate.py"], os.path.join(sys.argv[2], "LLaDA"))
        fdl = [f"llada/model/{f}" for f in ["__init__.py", "configuration_llada.py", "modeling_llada.py"]] + ["llada/generate.py"]
        fdl += [f"dream/model/{f}" for f in ["__init__.py", "configuration_dream.py", "modeling_dream.py", "generation_utils.py",
                                             "generation_utils_block.py", "tokenization_dream.py"]]
        snapshot(FASTDLLM, fdl, os.path.join(sys.argv[2], "Fast-dLLM"))
    else:
        sys.exit("usage: reference_code.py snapshot OUT")
