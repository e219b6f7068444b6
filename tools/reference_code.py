"""Loading the Python reference implementations at run time from local git mirrors
(`fetch`ed copies of the public repositories), so their code is run but never copied
into this repository. Shared by the fixture and golden scripts."""

import importlib.util
import os
import subprocess
import sys


def git_show(mirror, path, dest):
    """Write `path` at the mirror's HEAD to `dest` (the mirror may have no work tree)."""
    data = subprocess.run(["git", "-C", mirror, "show", f"HEAD:{path}"], check=True, capture_output=True).stdout
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(dest, "wb") as f:
        f.write(data)


def import_file(name, path):
    """Import the Python file at `path` as module `name`."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
