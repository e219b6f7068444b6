"""Writes tests/fixtures/pickle/evil.ckpt: a pickle whose payload, if anything ever
unpickled it, would create a file named STIPPLE_PICKLE_RAN in the working directory
(builtins.open(name, "w")). The tests load it through every stipple entry point and check
the refusal, and that the file never appears.

    python3 tools/make_pickle_fixture.py
"""
import os
import pickle


class Payload:
    def __reduce__(self):
        import builtins
        return (builtins.open, ("STIPPLE_PICKLE_RAN", "w"))


out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "pickle", "evil.ckpt")
with open(out, "wb") as f:
    # what torch.save's legacy format starts with: a protocol-2 pickle
    f.write(pickle.dumps({"state_dict": Payload()}, protocol=2))
print(out)
