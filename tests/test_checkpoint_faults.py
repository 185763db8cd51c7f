"""Fault tests of checkpoint writing: processes killed with SIGKILL at random moments.

SIGKILL cannot be caught, so nothing in the dying process gets to clean up: whatever the
folder holds at that instant is what the next reader sees. The promise of
``robustviz.train.checkpoint``: the previous complete checkpoint or the new one, never a
mix, and a resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from robustviz import data
from robustviz.train import train_model
from robustviz.train.checkpoint import has_checkpoint, read_checkpoint, save_checkpoint

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

REPO = Path(__file__).resolve().parents[1]

# Saves checkpoints in a loop, each one's tensors filled with its epoch number, and prints the
# epoch after every save that returned. Continues from the folder's last checkpoint.
SAVING_LOOP = """
import sys, torch
from robustviz.train.checkpoint import has_checkpoint, read_meta, save_checkpoint
directory = sys.argv[1]
model = torch.nn.Linear(200, 200)
start = read_meta(directory)["epoch"] + 1 if has_checkpoint(directory) else 1
print("ready", flush=True)
for epoch in range(start, 10**9):
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(epoch)
    save_checkpoint(directory, model, {"epoch": epoch},
                    {"epoch": epoch, "blob": torch.full((100_000,), float(epoch))})
    print(epoch, flush=True)
"""

# A real training run that writes a checkpoint every epoch (and resumes the folder's one).
TRAINING = """
import sys
from robustviz import data
from robustviz.train import train_model
bundle = data.load("blobs", n_train=200, n_test=20, seed=0)
print("ready", flush=True)
train_model("ce", bundle, epochs=int(sys.argv[2]), val_size=20, batch_size=50, monitor_steps=2,
            checkpoint_dir=sys.argv[1], resume=True, progress=False, device="cpu")
print("done", flush=True)
"""


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread here and in the children: the same arithmetic in both (so the weights can be
    compared bit for bit), and no slowdown from threads competing for 2 cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def start(code: str, *args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE, env=env,
                             text=True)
    assert child.stdout.readline().strip() == "ready"
    return child


def kill(child: subprocess.Popen) -> list[str]:
    """SIGKILL ``child``; returns the lines it printed."""
    child.send_signal(signal.SIGKILL)
    printed = child.stdout.read().split()
    child.wait(timeout=30)
    return printed


def test_a_save_killed_at_any_moment_leaves_one_complete_checkpoint(tmp_path):
    rng = random.Random(15)
    caught_mid_save = 0
    for _ in range(6):
        child = start(SAVING_LOOP, tmp_path)
        time.sleep(rng.uniform(0.05, 0.5))
        finished = [int(line) for line in kill(child)]
        caught_mid_save += any(".pt." in p.name for p in tmp_path.iterdir())
        if not has_checkpoint(tmp_path):  # killed during the very first save: nothing was committed
            assert not finished
            continue
        meta, weights, state = read_checkpoint(tmp_path)
        epoch = meta["epoch"]
        assert all(bool((tensor == epoch).all()) for tensor in weights.values()), "model.pt of another save"
        assert state["epoch"] == epoch and bool((state["blob"] == epoch).all()), "train_state.pt of another save"
        if finished:
            assert epoch >= finished[-1], "a save that returned was lost"
    print(f"{caught_mid_save} of 6 kills left a save half done")
    # The next writer finishes or discards what the killed one left, and leaves no temporary file.
    save_checkpoint(tmp_path, torch.nn.Linear(200, 200), {"epoch": -1}, {"epoch": -1})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "meta.json", "model.pt", "train_state.pt"]


def test_a_run_killed_while_training_resumes_to_the_uninterrupted_weights(tmp_path):
    epochs = 60
    bundle = data.load("blobs", n_train=200, n_test=20, seed=0)
    settings = dict(epochs=epochs, val_size=20, batch_size=50, monitor_steps=2, progress=False, device="cpu")
    reference, _ = train_model("ce", bundle, **settings)
    rng = random.Random(0)
    killed_at = []
    for _ in range(2):
        child = start(TRAINING, tmp_path, epochs)
        deadline = time.monotonic() + 60
        while not (tmp_path / "meta.json").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        kill(child)
        killed_at.append(read_checkpoint(tmp_path)[0]["epoch"])
    assert killed_at[0] < epochs, "the run finished before it was killed: kill sooner"
    resumed, history = train_model("ce", bundle, checkpoint_dir=tmp_path, resume=True, **settings)
    assert len(history) == epochs
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
