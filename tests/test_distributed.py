"""Training and evaluation under torchrun: 2 real CPU processes (gloo) against one process.

``tests/distributed_worker.py`` runs every scenario once under ``torchrun --nproc_per_node=2``
(one launch, about 20-40 s on 2 cores); the tests here compare what each rank saved with the
other rank and with the same work done in this process. The command-line test launches
``torchrun -m robustviz train`` and ``evaluate`` as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import distributed_worker as worker
import pytest
import torch

from robustviz import distributed
from robustviz.attacks import autoattack
from robustviz.data import BatchIterator, Split
from robustviz.evaluate import evaluate_robustness, ladder
from robustviz.train import fit

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def torchrun(*args: str, cwd: Path = ROOT, timeout: int = 240) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 ARGS`` with this checkout first on the path."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"torchrun failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(autouse=True)
def one_thread():
    """One thread, as each rank has: the thread count changes the rounding of a convolution's
    backward pass (and two threads per process on two shared cores are slow)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """What both ranks of one torchrun launch of the worker saved: ``{name: (rank 0, rank 1)}``."""
    out = tmp_path_factory.mktemp("ranks")
    torchrun(str(ROOT / "tests" / "distributed_worker.py"), str(out))
    names = ("ce", "evaluate", "resume", "refusal", *worker.METHODS)
    return {name: tuple(torch.load(out / f"{name}-rank{r}.pt", weights_only=False) for r in (0, 1))
            for name in names}


def assert_same(a, b, where: str = "") -> None:
    """Equal nested dicts/lists of tensors (NaN equal to NaN) and plain values."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        if a.is_floating_point():
            assert torch.equal(a.isnan(), b.isnan()), where
            a, b = a.nan_to_num(), b.nan_to_num()
        assert torch.equal(a, b), where
    else:
        assert a == b or (a != a and b != b), where


def test_two_ranks_with_half_batches_train_the_weights_of_one_process_with_the_whole_batch(ranks):
    mnist = worker.bundle()
    single = worker.build(mnist)
    fit(single, mnist, "ce", seed=3, **worker.CE)
    assert_same(*ranks["ce"])  # the ranks agree exactly
    for name, value in single.state_dict().items():
        torch.testing.assert_close(ranks["ce"][0][name], value, rtol=0, atol=1e-5, msg=name)
    moved = max(float((ranks["ce"][0][n] - worker.build(mnist).state_dict()[n]).abs().max()) for n in ranks["ce"][0])
    assert moved > 1e-3  # 20 steps really trained (the comparison is not of two untouched models)


@pytest.mark.parametrize("key", list(worker.METHODS))
def test_every_rank_ends_with_the_same_weights_and_method_state(ranks, key):
    first, second = ranks[key]
    for record in first["history"] + second["history"]:
        record.pop("seconds")  # each rank's own clock
    assert_same(first, second)
    assert first["history"][-1]["step"] >= 4
    if key == "clustr":  # the index was rebuilt on rank 0 and copied: centres, assignments, example losses
        assert first["method"]["index"]["centres"].abs().sum() > 0
        assert (~first["method"]["example_losses"].isnan()).sum() > 0


def test_an_interrupted_two_rank_run_resumes_to_the_uninterrupted_weights(ranks):
    for saved in ranks["resume"]:
        assert_same(saved["reference"], saved["resumed"])
    assert_same(ranks["resume"][0], ranks["resume"][1])


def test_a_refusal_on_rank_0_is_raised_on_every_rank(ranks):
    first, second = ranks["refusal"]
    assert first == second and first.startswith("CheckpointError") and "resume=True" in first


def test_sharded_evaluation_gives_the_per_sample_results_of_one_process(ranks):
    mnist = worker.bundle()
    model = worker.build(mnist)
    model.load_state_dict(ranks["ce"][0])
    model.eval()
    x, y = mnist.test.x[:worker.N_EVAL], mnist.test.y[:worker.N_EVAL]
    report = evaluate_robustness(model, x, y, worker.EVAL_EPS, worker.EVAL_ATTACKS, batch_size=worker.EVAL_BATCH,
                                 seed=2, progress=False)
    climbed = ladder(model, (x, y), 0.2, attacks=worker.LADDER_ATTACKS, n=None, batch_size=worker.EVAL_BATCH,
                     seed=2, progress=False)
    result = autoattack(model, x[:worker.AA_N], y[:worker.AA_N], 0.15, version="fast", batch_size=worker.AA_BATCH,
                        seed=2)
    for saved in ranks["evaluate"]:
        assert_same(saved["robustness"], report.correct)
        assert_same(saved["ladder"], climbed.correct)
        assert_same(saved["autoattack"], {"x_adv": result.x_adv, "breakdown": result.breakdown})
    broken = [float(c.float().mean()) for c in climbed.correct.values()]
    assert broken[-1] < broken[0] <= 1  # the attacks broke some samples and kept others: a real comparison


def test_torchrun_runs_robustviz_train_and_evaluate(tmp_path):
    run = tmp_path / "run"
    trained = torchrun("-m", "robustviz", "train", "--method", "ce", "--dataset", "mnist-mini", "--n-train", "400",
                       "--steps", "6", "--set", "val_size=40", "--set", "monitor_steps=2", "--device", "cpu",
                       "--no-progress", "--out", str(run), cwd=tmp_path)
    assert trained.stdout.count("checkpoint:") == 1  # rank 0 alone prints
    meta = json.loads((run / "meta.json").read_text())
    assert meta["step"] == 6 and len(meta["history"]) == 2  # 360 training images: 3 batches of 128 per epoch
    results = tmp_path / "eval.json"
    evaluated = torchrun("-m", "robustviz", "evaluate", str(run), "--n-test", "60", "--eps", "0.2", "--attacks", "fgsm",
                         "pgd-5", "--device", "cpu", "--no-progress", "--json", str(results), cwd=tmp_path)
    assert evaluated.stdout.count("PGD-5") == 1
    assert set(json.loads(results.read_text())["results"]["0.2"]) == {"FGSM", "PGD-5", "worst case"}


def test_outside_torchrun_everything_is_one_process(monkeypatch):
    for name in distributed.TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert not distributed.init_from_env() and not distributed.is_active()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert list(distributed.shard(3)) == [0, 1, 2]
    values = torch.tensor([1.0, 2.0])
    assert distributed.sum_over_ranks(values) is values
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}


def test_each_rank_gets_its_part_of_the_same_global_batches():
    split = Split(torch.rand(10, 1, 8, 8), torch.arange(10))
    whole = list(BatchIterator(split, 4, seed=7, augment="crop_flip").epoch(2))
    parts = [list(BatchIterator(split, 4, seed=7, augment="crop_flip", rank=r, world_size=3).epoch(2))
             for r in range(3)]
    for k, (x, y) in enumerate(whole):
        for r in range(3):
            assert torch.equal(parts[r][k][1], y[r::3]) and torch.equal(parts[r][k][0], x[r::3])
    with pytest.raises(ValueError, match="rank must be"):
        BatchIterator(split, 4, rank=2, world_size=2)
