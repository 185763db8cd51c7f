"""Every mistake a student makes gets a sentence, not a traceback; no silent wrong number; nothing lost.

Three parts:

* the silent failures (wrong results or lost work without a word); each of these tests
  failed on the code before they were fixed, so new names are imported inside the tests;
* the API table: a bad call, the exception type, and a phrase of the message that says
  what to do instead;
* the command-line table: ``python -m robustviz`` in a subprocess (all rows run at once in
  a module fixture, two at a time): non-zero exit, one paragraph on stderr, no ``Traceback``;
  then a check that none of those failing commands changed the run they were pointed at.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from robustviz import data, models
from robustviz.attacks import fgsm, pgd
from robustviz.evaluate import accuracy, diagnose, evaluate_robustness, ladder
from robustviz.train import fit, load_checkpoint, train_model
from robustviz.viz import extract

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mnist_batch():
    bundle = data.load("mnist-mini", n_train=100, n_test=50, seed=0)
    return bundle.test.x[:8], bundle.test.y[:8]


@pytest.fixture(scope="module")
def cnn():
    return models.build("smallcnn", 10, 1, seed=0).eval()


class NaNScores(nn.Module):
    """A broken classifier: every score is NaN (as after a diverged training run)."""

    num_classes = 10

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(784, 10)

    def forward(self, x):
        return self.linear(x.flatten(1)) * float("nan")


def three_class_net() -> nn.Module:
    """A classifier without ``num_classes``: its 3 classes are only known from its output."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 3))


def run_cli(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m robustviz ARGS`` as a student would run it (no GPU visible; one torch thread, since
    the rows run two at a time)."""
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
                   **(env or {})}
    return subprocess.run([sys.executable, "-m", "robustviz", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def checksums(folder: Path) -> dict[str, str]:
    """SHA-256 of every file of a run folder except its lock (which records who last trained there)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


# ---- silent failures ---------------------------------------------------------------------------


def test_nan_images_are_refused_instead_of_counting_as_class_0(cnn, mnist_batch):
    x, y = mnist_batch
    nan_images = torch.full_like(x, float("nan"))
    for call in (lambda: evaluate_robustness(cnn, nan_images, y, eps=(0.1,), progress=False),
                 lambda: accuracy(cnn, nan_images, y),
                 lambda: fgsm(cnn, nan_images, y, 0.1),
                 lambda: pgd(cnn, nan_images, y, 0.1, steps=2)):
        with pytest.raises(ValueError, match="NaN or infinite.*nan_to_num"):
            call()
    one_pixel = x.clone()
    one_pixel[3, 0, 5, 5] = float("inf")
    with pytest.raises(ValueError, match="1 NaN or infinite value"):
        fgsm(cnn, one_pixel, y, 0.1)


@pytest.mark.parametrize("budget", [float("nan"), float("inf")])
def test_non_finite_budgets_are_refused(cnn, mnist_batch, budget):
    x, y = mnist_batch
    for call in (lambda: fgsm(cnn, x, y, budget), lambda: pgd(cnn, x, y, budget, steps=1),
                 lambda: evaluate_robustness(cnn, x, y, eps=(budget,), progress=False),
                 lambda: ladder(cnn, (x, y), budget, attacks=("fgsm",), progress=False)):
        with pytest.raises(ValueError, match="finite number"):
            call()


def test_a_model_that_outputs_nan_is_counted_wrong_with_a_warning(mnist_batch):
    x, _ = mnist_batch
    class_0 = torch.zeros(len(x), dtype=torch.long)  # argmax of NaN scores is class 0: all "correct" before
    model = NaNScores()
    with pytest.warns(RuntimeWarning, match="counts those samples as misclassified"):
        assert accuracy(model, x, class_0) == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = evaluate_robustness(model, x, class_0, eps=(0.3,), attacks=("fgsm", "pgd-3"), progress=False)
        x_adv = pgd(model, x, class_0, 0.3, steps=3, seed=0)
    assert report.clean_acc == 0.0 and report.results[0.3]["worst case"] == 0.0
    assert torch.isfinite(x_adv).all() and 0 <= float(x_adv.min()) and float(x_adv.max()) <= 1


@pytest.fixture
def short_compare(monkeypatch):
    """``compare`` with 3 training steps per recipe (instead of the quick profile's epochs)."""
    from robustviz.app import runs as runs_module  # compare trains through runs.trained

    original = runs_module.train_model

    def short_training(method, bundle, profile, seed, **kwargs):
        return original(method, bundle, profile, seed, steps=3, val_size=100, **kwargs)

    monkeypatch.setattr(runs_module, "train_model", short_training)
    from robustviz.app.compare import compare

    return compare


def test_a_run_on_a_training_subset_is_named_for_it_and_compare_never_reuses_it(tmp_path, monkeypatch, capsys,
                                                                                   short_compare):
    from robustviz.app.cli import main

    results = tmp_path / "results"
    monkeypatch.setenv("ROBUSTVIZ_RESULTS", str(results))
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--method", "ce", "--n-train", "1000", "--steps", "3", "--set", "val_size=100",
                 "--device", "cpu", "--no-progress"]) == 0
    subset_run = Path(capsys.readouterr().out.split("checkpoint: ")[1].strip())
    assert subset_run.parent == results and subset_run.name.startswith("ce-mnist-mini-quick-s0-n1000-x")
    plain = results / "ce-mnist-mini-quick-s0"
    assert not plain.exists()

    short_compare(["ce"], n_eval=100, eps=(0.1,), attacks=("fgsm",), progress=False)  # the results folder
    assert json.loads((plain / "meta.json").read_text())["dataset"]["n_train"] == 8000

    shutil.rmtree(plain)
    shutil.copytree(subset_run, plain)  # a subset run where the full-data run belongs
    with pytest.raises(ValueError, match="1000 training samples .asked: mnist-mini with 8000"):
        short_compare(["ce"], results=results, n_eval=100, eps=(0.1,), attacks=("fgsm",), progress=False)


def test_train_never_overwrites_a_run_unless_asked(tmp_path, capsys):
    from robustviz.app.cli import main

    out = tmp_path / "run"
    common = ["--dataset", "blobs", "--n-train", "200", "--epochs", "1", "--out", str(out), "--device", "cpu",
              "--no-progress"]
    assert main(["train", "--method", "ce", *common]) == 0
    before = checksums(out)
    messages = []
    for method in ("ce", "fgsm_rs"):  # the same run again, and another method into its folder
        assert main(["train", "--method", method, *common]) == 2
        messages.append(capsys.readouterr().err)
        assert "--out" in messages[-1] and "--overwrite" in messages[-1] and "Traceback" not in messages[-1]
        assert checksums(out) == before
    assert "--resume" in messages[0] and "differs in method" in messages[1]
    assert main(["train", "--method", "fgsm_rs", *common, "--overwrite"]) == 0
    assert json.loads((out / "meta.json").read_text())["method"] == "fgsm_rs"


def test_a_second_writer_is_refused_while_a_run_trains(tmp_path):
    from robustviz.train.checkpoint import run_lock

    out = tmp_path / "busy"
    with run_lock(out):  # as a training process holds it
        result = run_cli(["train", "--dataset", "blobs", "--n-train", "200", "--epochs", "1", "--out", str(out),
                          "--no-progress"], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"another robustviz process (pid {os.getpid()}" in result.stderr
    assert not (out / "meta.json").exists()


@pytest.mark.parametrize("n_train", [300, 500])  # below and at the default val_size (500)
def test_n_train_at_or_below_val_size_trains_on_a_smaller_held_out_batch(n_train):
    bundle = data.load("mnist-mini", n_train=n_train, seed=0)
    with pytest.warns(UserWarning, match=f"holding out {n_train // 5} instead"):
        _, history = train_model("ce", bundle, steps=2, progress=False, device="cpu")
    assert math.isfinite(history.last["loss"]) and history.last["step"] == 2


# ---- the API ------------------------------------------------------------------------------------


def _api_cases():
    """(id, call(cnn, x, y), exception type, phrase of the message). ``x``, ``y``: 8 MNIST images."""
    return [
        ("nhwc-images", lambda m, x, y: fgsm(m, x.permute(0, 2, 3, 1), y, 0.3), ValueError, r"permute\(0, 3, 1, 2\)"),
        ("no-batch-axis", lambda m, x, y: pgd(m, x[0], y[:1], 0.3), ValueError, r"unsqueeze\(0\)"),
        ("wrong-channels", lambda m, x, y: evaluate_robustness(m, x.repeat(1, 3, 1, 1), y, eps=0.3, progress=False),
         ValueError, "3 channels .* the model takes 1"),
        ("labels-as-list", lambda m, x, y: fgsm(m, x, y.tolist(), 0.3), TypeError, r"torch.tensor\(y\)"),
        ("labels-one-hot", lambda m, x, y: fgsm(m, x, nn.functional.one_hot(y, 10).float(), 0.3), ValueError,
         r"argmax\(1\)"),
        ("labels-2d", lambda m, x, y: fgsm(m, x, y[:, None], 0.3), ValueError, r"flatten\(\)"),
        ("labels-out-of-range-no-num_classes", lambda m, x, y: evaluate_robustness(
            three_class_net(), x, y, eps=0.1, progress=False), ValueError, r"3 classes \(valid labels: 0..2\)"),
        ("labels-out-of-range-attack", lambda m, x, y: fgsm(three_class_net(), x, y, 0.1), ValueError,
         "valid labels: 0..2"),
        ("numpy-images", lambda m, x, y: fgsm(m, x.numpy(), y, 0.3), TypeError, "torch.from_numpy"),
        ("uint8-images", lambda m, x, y: fgsm(m, (x * 255).byte(), y, 0.3), ValueError, r"x.float\(\) / 255"),
        ("0-255-images", lambda m, x, y: accuracy(m, x * 255, y), ValueError, "divide by 255"),
        ("batch-mismatch", lambda m, x, y: fgsm(m, x, y[:-1], 0.3), ValueError, "must match"),
        ("eps-tuple-for-one", lambda m, x, y: fgsm(m, x, y, (0.1, 0.3)), TypeError, "eps=.0.1, 0.3."),
        ("eps-string", lambda m, x, y: pgd(m, x, y, "8/255"), TypeError, "8 / 255"),
        ("eps-255-units", lambda m, x, y: fgsm(m, x, y, 8), ValueError, "8/255 = 0.03137"),
        ("eps-empty", lambda m, x, y: evaluate_robustness(m, x, y, eps=(), progress=False), ValueError,
         "at least one budget"),
        ("unknown-attack", lambda m, x, y: evaluate_robustness(m, x, y, 0.1, attacks="cw", progress=False),
         ValueError, "unknown attack 'cw'"),
        ("empty-evaluate", lambda m, x, y: evaluate_robustness(m, x[:0], y[:0], 0.1, progress=False), ValueError,
         "empty batch"),
        ("empty-ladder", lambda m, x, y: ladder(m, (x[:0], y[:0]), 0.1, progress=False), ValueError, "empty batch"),
        ("empty-diagnose", lambda m, x, y: diagnose(m, (x[:0], y[:0]), 0.1, progress=False), ValueError,
         "empty batch"),
        ("empty-extract", lambda m, x, y: extract(m, (x[:0], y[:0])), ValueError, "empty batch"),
        ("empty-accuracy", lambda m, x, y: accuracy(m, x[:0], y[:0]), ValueError, "empty batch"),
        ("device-gpu", lambda m, x, y: m.to(_device("gpu")), ValueError, "use 'auto'"),
        ("train-lr-text", lambda m, x, y: fit(m, _tiny(), "ce", lr="abc", progress=False), TypeError,
         "lr must be a number"),
        ("train-epochs-0", lambda m, x, y: fit(m, _tiny(), "ce", epochs=0, progress=False), ValueError,
         "epochs must be >= 1"),
        ("train-eps-255", lambda m, x, y: fit(m, _tiny(), "pgd_at", eps=8, progress=False), ValueError,
         "8/255 = 0.03137"),
        ("train-batch-0", lambda m, x, y: fit(m, _tiny(), "ce", batch_size=0, progress=False), ValueError,
         "batch_size must be >= 1"),
        ("train-milestones", lambda m, x, y: fit(m, _tiny(), "ce", milestones=5, progress=False), TypeError,
         "list of epoch numbers"),
        ("n-train-0", lambda m, x, y: data.load("mnist-mini", n_train=0), ValueError, "in 1..8000"),
        ("n-train-too-many", lambda m, x, y: data.load("mnist-mini", n_train=9000), ValueError, "in 1..8000"),
    ]


def _tiny():
    return data.load("mnist-mini", n_train=200, n_test=50, seed=0)


def _device(name):
    from robustviz._checks import check_device

    return check_device(name)


@pytest.mark.parametrize("case", _api_cases(), ids=lambda case: case[0])
def test_api_mistakes_raise_a_sentence_that_says_what_to_do(case, cnn, mnist_batch):
    _, call, error, phrase = case
    x, y = mnist_batch
    if error is None:  # documented as accepted: must not raise
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call(cnn, x, y)
        return
    with pytest.raises(error, match=phrase):
        call(cnn, x, y)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_asking_for_a_missing_gpu_says_so(tmp_path):
    from robustviz.app.runs import trained

    with pytest.raises(ValueError, match="no CUDA GPU"):
        _device("cuda")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        trained("ce", "blobs", results=tmp_path, device="cuda", progress=False, epochs=1)


def test_one_budget_and_one_attack_name_are_accepted(cnn, mnist_batch):
    x, y = mnist_batch
    report = evaluate_robustness(cnn, x, y, eps=0.3, attacks="pgd-3", progress=False)
    assert list(report.results) == [0.3] and set(report.results[0.3]) == {"PGD-3", "worst case"}
    assert [row.attack for row in ladder(cnn, (x, y), 0.3, attacks="fgsm", progress=False).rows] == ["FGSM"]


def test_features_and_projections_print_as_one_line(cnn, mnist_batch):
    from robustviz.viz import project

    feats = extract(cnn, mnist_batch, attack="fgsm", eps=0.1)
    text = repr(feats)
    assert text == "Features(layer='features', n=8, dim=200, attack='fgsm', eps=0.1)"
    projection = project(feats, method="pca")
    shown = repr(projection)
    assert "\n" not in shown and shown.startswith("Projection(PCA") and len(shown) < 150


def test_diagnose_shows_its_progress(cnn, mnist_batch, capsys):
    diagnose(cnn, mnist_batch, 0.1, n=8, surrogate=None, strong_attack=(2, 1), progress=True)
    assert "diagnose eps=0.1" in capsys.readouterr().err


def _image_folder(root: Path, modes: dict[str, str], broken: tuple[str, ...] = ()) -> Path:
    """A tiny ImageFolder dataset: ``modes[part/class/name] = PIL mode``; ``broken`` files hold garbage."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for relative, mode in modes.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        shape = (6, 6) if mode == "L" else (6, 6, 3)
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(path)
    for relative in broken:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"not an image at all")
    return root


def test_a_folder_of_mixed_grayscale_and_colour_images_loads_as_rgb(tmp_path):
    modes = {f"{part}/{cls}/{i}.png": ("L" if i % 2 else "RGB") for part in ("train", "test")
             for cls in ("a", "b") for i in range(3)}
    bundle = data.load(f"folder:{_image_folder(tmp_path, modes)}")
    assert bundle.train.x.shape == (6, 3, 6, 6) and bundle.input_shape == (3, 6, 6)
    gray = data.load(f"folder:{_image_folder(tmp_path / 'gray', {k: 'L' for k in modes})}")
    assert gray.train.x.shape == (6, 1, 6, 6)


def test_a_corrupt_image_is_skipped_with_a_warning_that_names_it(tmp_path):
    modes = {f"{part}/{cls}/{i}.png": "RGB" for part in ("train", "test") for cls in ("a", "b") for i in range(3)}
    root = _image_folder(tmp_path, modes, broken=("train/a/broken.png",))
    with pytest.warns(UserWarning, match="skipped 1 of 7 image files .*broken.png"):
        bundle = data.load(f"folder:{root}")
    assert len(bundle.train) == 6
    for path in (root / "test").rglob("*.png"):
        path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="none of the 6 image files"), pytest.warns(UserWarning, match="skipped 1"):
        data.load(f"folder:{root}")


def test_every_flag_is_documented():
    from robustviz.app.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, command in commands.items():
        for action in command._actions:
            assert action.help, f"robustviz {name} {action.option_strings or action.dest} has no help"
            if action.dest == "eps":
                assert "[0, 1] pixel units" in action.help, f"{name} {action.dest}: say the units"
    assert "--download" in commands["evaluate"].format_help()  # the missing-dataset advice exists there


def test_one_results_folder_for_the_cli_the_api_and_doctor(tmp_path, monkeypatch, capsys):
    from robustviz.app.cli import main
    from robustviz.app.compare import run_dir
    from robustviz.app.doctor import doctor
    from robustviz.app.runs import default_results, run_path

    monkeypatch.setenv("ROBUSTVIZ_RESULTS", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert default_results() == tmp_path / "cache"
    assert main(["train", "--dataset", "blobs", "--n-train", "200", "--epochs", "1", "--device", "cpu",
                 "--no-progress"]) == 0
    assert run_path("ce", "blobs", n_train=200, epochs=1).is_dir()
    assert run_dir(None, "ce", "mnist-mini", "quick", 0) == tmp_path / "cache" / "ce-mnist-mini-quick-s0"
    assert doctor(verbose=False)["results"] == str(tmp_path / "cache")
    capsys.readouterr()
    name = run_path("ce", "blobs", n_train=200, epochs=1).name  # evaluate finds a run by its name
    assert main(["evaluate", name, "--n", "20", "--eps", "0.05", "--attacks", "fgsm", "--no-progress"]) == 0
    assert "ce on blobs" in capsys.readouterr().out


# ---- the command line ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A finished run, damaged copies of it, and a folder with a held lock."""
    from robustviz.app.cli import main

    root = tmp_path_factory.mktemp("cli")
    good = root / "good"
    assert main(["train", "--dataset", "blobs", "--n-train", "200", "--epochs", "2", "--set", "val_size=20",
                 "--out", str(good), "--device", "cpu", "--no-progress"]) == 0
    (good / "evaluation-cached.json").write_text("{}")  # as compare leaves next to a run
    for name, damage in DAMAGE.items():
        shutil.copytree(good, root / name)
        damage(root / name)
    _image_folder(root / "unreadable-images", {"train/a/0.png": "RGB", "train/b/0.png": "RGB"},
                  broken=("test/a/0.png", "test/b/0.png"))
    (root / "a-file").write_text("not a folder")
    return root


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _evil_pickle(folder: Path, update_checksum: bool) -> None:
    """A model.pt that would run a command when unpickled (a harmless ``touch``)."""
    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {folder / 'PWNED'}",)

    torch.save({"weight": Payload()}, folder / "model.pt")
    meta = json.loads((folder / "meta.json").read_text())
    if update_checksum:  # as a crafted folder would
        blob = (folder / "model.pt").read_bytes()
        meta["files"]["model.pt"] = {"bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
    else:  # a checkpoint of the first format, without checksums
        del meta["files"], meta["commit"]
    (folder / "meta.json").write_text(json.dumps(meta))


def _edit_meta(folder: Path, **model) -> None:
    meta = json.loads((folder / "meta.json").read_text())
    meta["model"].update(model)
    (folder / "meta.json").write_text(json.dumps(meta))


def _old_format_garbage(folder: Path) -> None:
    _evil_pickle(folder, update_checksum=False)
    (folder / "model.pt").write_bytes(os.urandom(3000))


DAMAGE = {
    "truncated": lambda f: _truncate(f / "model.pt"),
    "empty": lambda f: (f / "model.pt").write_bytes(b""),
    "garbage": lambda f: (f / "model.pt").write_bytes(os.urandom(4000)),
    "garbage-old-format": _old_format_garbage,
    "evil": lambda f: _evil_pickle(f, update_checksum=True),
    "evil-old-format": lambda f: _evil_pickle(f, update_checksum=False),
    "wrong-classes": lambda f: _edit_meta(f, num_classes=5),
    "wrong-architecture": lambda f: _edit_meta(f, name="smallcnn", in_channels=1, mean=[0.5], std=[0.5]),
    "truncated-meta": lambda f: _truncate(f / "meta.json"),
}

GOOD_RUN = ["--dataset", "blobs", "--n-train", "200", "--epochs", "2", "--set", "val_size=20", "--out", "good",
            "--no-progress"]

# (id, arguments (run in the workspace folder), phrase of the error)
CLI_CASES = [
    ("train-eps-in-255-units", ["train", "--eps", "8"], "pass --eps 0.03137"),
    ("train-set-wrong-type", ["train", "--set", "lr=abc"], "lr must be a number"),
    ("train-set-epochs-0", ["train", "--set", "epochs=0"], "epochs must be >= 1"),
    ("train-epochs-0", ["train", "--epochs", "0"], "epochs must be >= 1"),
    ("train-set-without-value", ["train", "--set", "lr"], "KEY=VALUE"),
    ("train-unknown-setting", ["train", "--set", "epochz=3"], "unknown training setting 'epochz'"),
    ("train-device-cuda-without-gpu", ["train", "--device", "cuda"], "no CUDA GPU"),
    ("train-device-gpu", ["train", "--device", "gpu"], "unknown device 'gpu'"),
    ("train-unknown-method", ["train", "--method", "nope"], "unknown method 'nope'"),
    ("train-out-is-a-file", ["train", "--dataset", "blobs", "--out", "a-file"], "a run is a folder"),
    ("train-n-train-too-large", ["train", "--n-train", "9000"], "in 1..8000"),
    ("train-missing-folder-dataset", ["train", "--dataset", "folder:nowhere"], "needs a train/ subfolder"),
    ("train-unreadable-images", ["train", "--dataset", "folder:unreadable-images"], "none of the 2 image files"),
    ("train-same-run-again", ["train", *GOOD_RUN], "already holds this run"),
    ("train-other-method-into-a-run", ["train", "--method", "fgsm_rs", *GOOD_RUN], "differs in method"),
    ("train-resume-other-settings", ["train", *GOOD_RUN, "--resume", "--set", "lr=0.5"], "different settings"),
    ("train-resume-other-seed", ["train", *GOOD_RUN, "--resume", "--seed", "1"], "seed 0 (asked: 1)"),
    ("train-missing-torchvision-set", ["train", "--dataset", "mnist", "--root", "."], "--download"),
    ("evaluate-missing-run", ["evaluate", "no-such-run"], "no checkpoint folder 'no-such-run'"),
    ("evaluate-folder-without-checkpoint", ["evaluate", "unreadable-images"], "meta.json missing"),
    ("evaluate-truncated", ["evaluate", "truncated"], "truncated, replaced or copied"),
    ("evaluate-empty", ["evaluate", "empty"], "0 bytes where"),
    ("evaluate-garbage", ["evaluate", "garbage"], "truncated, replaced or copied"),
    ("evaluate-garbage-old-format", ["evaluate", "garbage-old-format"], "not a readable checkpoint file"),
    ("evaluate-malicious-pickle", ["evaluate", "evil"], "refused: evil/model.pt is not a robustviz checkpoint"),
    ("evaluate-malicious-pickle-old-format", ["evaluate", "evil-old-format"], "is not a robustviz checkpoint"),
    ("evaluate-classes-do-not-match", ["evaluate", "wrong-classes"], "5 classes but a dataset with 3"),
    ("evaluate-architecture-does-not-match", ["evaluate", "wrong-architecture"], "do not fit the model"),
    ("evaluate-truncated-meta", ["evaluate", "truncated-meta"], "truncated-meta/meta.json is not valid JSON"),
    ("evaluate-json-into-missing-folder", ["evaluate", "good", "--json", "missing/out.json"], "does not exist"),
    ("evaluate-json-is-a-folder", ["evaluate", "good", "--json", "good"], "is a folder"),
    ("evaluate-device-cuda-without-gpu", ["evaluate", "good", "--device", "cuda"], "no CUDA GPU"),
    ("evaluate-missing-torchvision-set", ["evaluate", "good", "--dataset", "mnist", "--root", "."], "--download"),
    ("evaluate-eps-in-255-units", ["evaluate", "good", "--eps", "8", "--n", "10", "--no-progress"], "/255"),
    ("evaluate-n-0", ["evaluate", "good", "--n", "0"], "--n must be at least 1"),
    ("evaluate-unknown-attack", ["evaluate", "good", "--attacks", "cw", "--n", "10", "--no-progress"],
     "unknown attack 'cw'"),
    ("compare-unknown-method", ["compare", "--methods", "nope"], "unknown method 'nope'"),
    ("compare-out-into-missing-folder", ["compare", "--out", "missing/table.md"], "does not exist"),
    ("demo-out-is-a-file", ["demo", "--out", "a-file"], "is a file"),
]


@pytest.fixture(scope="module")
def cli_results(workspace):
    """Every ``CLI_CASES`` row run as a subprocess, two at a time: ``{id: CompletedProcess}``."""
    env = {"ROBUSTVIZ_RESULTS": str(workspace / "results")}
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {case_id: pool.submit(run_cli, args, workspace, env) for case_id, args, _ in CLI_CASES}
        return {case_id: future.result() for case_id, future in futures.items()}


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda case: case[0])
def test_cli_mistakes_end_in_one_paragraph_not_a_traceback(case, cli_results):
    case_id, args, phrase = case
    result = cli_results[case_id]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "weights_only=False" not in result.stderr
    # The error is the last line, one paragraph; warnings or a progress bar may come before it.
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(f"robustviz {args[0]}: error: "), result.stderr
    assert phrase in message, message


def test_no_failing_command_changes_the_run_it_was_pointed_at(workspace, cli_results):
    from robustviz.app.cli import main

    good = workspace / "good"
    before = checksums(good)
    assert "evaluation-cached.json" in before
    failing = [
        ["train", *GOOD_RUN],
        ["train", "--method", "fgsm_rs", *GOOD_RUN],
        ["train", *GOOD_RUN, "--resume", "--set", "lr=0.5"],
        ["train", *GOOD_RUN, "--eps", "8"],
        ["train", *GOOD_RUN, "--overwrite", "--set", "lr=abc"],
        ["train", *GOOD_RUN, "--overwrite", "--device", "gpu"],
        ["evaluate", "good", "--json", "good"],
    ]
    cwd = os.getcwd()
    os.chdir(workspace)
    try:
        for args in failing:
            assert main(args) == 2, args
        assert main(["train", *GOOD_RUN, "--resume"]) == 0  # a finished run, resumed: only read
    finally:
        os.chdir(cwd)
    with pytest.raises(ValueError, match="different settings"):
        train_model("ce", data.load("blobs", n_train=200, seed=0), epochs=3, val_size=20, checkpoint_dir=good,
                    resume=True, progress=False, device="cpu")
    assert checksums(good) == before  # the subprocess rows above ran against it too
    assert not any((workspace / name / "PWNED").exists() for name in ("evil", "evil-old-format"))
    model, meta = load_checkpoint(good)
    assert meta["epoch"] == 2


def test_debug_shows_the_traceback(tmp_path):
    for args in (["train", "--eps", "8", "--debug"], ["--debug", "train", "--eps", "8"]):
        result = run_cli(args, tmp_path)
        assert result.returncode != 0 and "Traceback" in result.stderr and "ValueError: --eps=8" in result.stderr


def test_ctrl_c_says_how_to_resume_and_resuming_finishes_the_run(tmp_path):
    out = tmp_path / "run"
    epochs = 40
    args = ["train", "--dataset", "blobs", "--n-train", "200", "--epochs", str(epochs), "--set", "val_size=20",
            "--out", str(out), "--no-progress"]
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    # Ctrl-C as in a terminal: a suite started in the background by a non-interactive shell (`cmd &`)
    # inherits SIGINT ignored, and Python then never raises KeyboardInterrupt; reset it for the child.
    child = subprocess.Popen([sys.executable, "-m", "robustviz", *args], cwd=tmp_path, env=environment,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not (out / "meta.json").exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    assert child.poll() is None, "the run ended before it could be interrupted"
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 130, stderr
    assert "Traceback" not in stderr and "keeps the last finished epoch" in stderr
    resume_command = stderr.split("run: ")[-1].strip().split()
    assert resume_command[:2] == ["robustviz", "train"] and resume_command[-1] == "--resume"
    finished = run_cli(resume_command[1:], tmp_path)
    assert finished.returncode == 0, finished.stderr
    assert json.loads((out / "meta.json").read_text())["epoch"] == epochs


def test_an_unknown_method_setting_is_named_with_the_valid_ones():
    from robustviz import methods

    recipe = methods.get("pgd_at")
    config = recipe.config("mnist", "quick", method_kwargs={"bogus": 1})
    with pytest.raises(ValueError, match=r"unknown setting of the pgd_at method 'bogus'; choose one of: .*steps"):
        recipe.build_method(config, 0.3)


@pytest.mark.parametrize("profile", ["quick", "lab", "full"])
def test_every_recipe_setting_is_one_its_method_takes(profile):
    from robustviz import methods

    for key, recipe in methods.RECIPES.items():
        for family in methods.FAMILIES:
            config = recipe.config(family, profile)
            known = recipe.method_settings()
            assert known is None or set(config.method_kwargs) <= set(known), (key, family, profile)
