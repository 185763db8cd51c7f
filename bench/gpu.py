"""One GPU check: robustviz's CUDA paths on one GPU in at most 8 minutes, written to docs/gpu.md.

Five parts, each with its own time budget (a part that runs out of time says what it skipped):

1. **Training steps**: every recipe's training step on CUDA through the real ``fit`` path
   (``train_model`` with ``steps=3``), once in bf16 and once in fp16 with the gradient scaler;
   the loss must be finite (``fit`` stops a run on a non-finite loss). With ``--cifar`` the
   recipes' ``full`` profile on a CIFAR-10 subset (their real architectures, WRN-34-10
   included), else mnist-mini.
2. **The lab profile on CIFAR-10**: ``fgsm_rs`` and ``pgd_at`` in the ``lab`` profile, if
   ``robustviz.methods.PROFILES`` has one and ``--cifar`` is given: seconds per epoch, and,
   when the whole schedule fits the budget, the clean and PGD-20 accuracy (eps 8/255) on the
   10,000 test images.
3. **PGD-10 throughput** of ``robustviz.attacks.pgd`` against torchattacks' PGD on the GPU
   (``bench/vs_torchattacks.py``'s measurement; torchattacks is optional: without it only
   robustviz's number is given).
4. **AutoAttack-fast** (``robustviz.attacks.autoattack(version="fast")``: APGD-CE then
   APGD-T) on 1,000 test images of the lab ``pgd_at`` model of part 2 or, without it, of a
   ``pgd_at`` model trained here in the ``quick`` profile.
5. **Several GPUs** (on a machine with more than one): one ``pgd_at`` epoch under ``torchrun``
   with 1, 2 and all GPUs (``bench/distributed.py --device cuda``); with one GPU the report
   says that GPU scaling is not measured.

The report gives the GPU (name, compute capability, memory), the versions and every number.
Without a GPU the script refuses (exit status 2). ``--dry-run`` runs the same code on the
CPU with tiny sizes, to show that the script works; it writes a report only where ``--out``
says.

Example:
    $ python bench/gpu.py --cifar ../shared/datasets/cifar10-jpg.tar.gz   # on a GPU: writes docs/gpu.md
    $ python bench/gpu.py --dry-run                                       # on the CPU: prints the report
    $ make bench-gpu
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import torch  # noqa: E402

import robustviz  # noqa: E402
from robustviz import data as rdata  # noqa: E402
from robustviz import methods  # noqa: E402
from robustviz.train import train_model  # noqa: E402

NO_GPU = ("bench/gpu.py needs a CUDA GPU and torch sees none; run it on a GPU machine, "
          "or pass --dry-run to check the script on the CPU.")
TOTAL_SECONDS = 480  # 8 minutes, the promise of `make bench-gpu`


@dataclass
class Sizes:
    """How big each part is: the GPU run's sizes, or tiny ones for ``--dry-run``."""

    device: str
    budgets: dict  # part -> seconds
    step_profile: str
    steps: int
    step_n_train: int
    step_val_size: int
    step_batch: int | None
    precisions: tuple[str, ...]
    lab_recipes: tuple[str, ...] = ("fgsm_rs", "pgd_at")
    pgd_cases: tuple = ()
    pgd_repeats: int = 5
    aa_images: int = 1000
    fallback_overrides: dict = field(default_factory=dict)
    lab_overrides: dict = field(default_factory=dict)
    test_images: int | None = None


GPU_SIZES = Sizes(
    device="cuda", budgets={"data": 60, "steps": 150, "lab": 160, "pgd": 40, "autoattack": 60, "scaling": 120},
    step_profile="full", steps=3, step_n_train=1024, step_val_size=256, step_batch=None,
    precisions=("bf16", "fp16"),
    pgd_cases=(("smallcnn", (1, 28, 28), 1024), ("preact_resnet18", (3, 32, 32), 512), ("wrn34_10", (3, 32, 32), 128)),
    fallback_overrides={"steps": 300},  # about 0.8 epoch of CIFAR-10: a robust model to attack, in seconds
)
DRY_SIZES = Sizes(
    device="cpu", budgets={"data": 30, "steps": 40, "lab": 15, "pgd": 10, "autoattack": 15, "scaling": 5},
    step_profile="quick", steps=1, step_n_train=128, step_val_size=16, step_batch=16,
    precisions=("bf16", "fp16"), pgd_cases=(("smallcnn", (1, 28, 28), 16),), pgd_repeats=1, aa_images=16,
    fallback_overrides={"steps": 2, "batch_size": 16, "val_size": 16}, lab_overrides={"steps": 2, "val_size": 16},
    test_images=64,
)


class Budget:
    """Seconds left for a part: its own budget, capped by what is left of the whole run."""

    def __init__(self, seconds: float, total_end: float) -> None:
        self.end = min(time.perf_counter() + seconds, total_end)

    def left(self) -> float:
        return self.end - time.perf_counter()


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar", type=Path, default=None,
                        help="CIFAR-10 as an ImageFolder tree (train/, test/) or the archive cifar10-jpg.tar.gz")
    parser.add_argument("--dry-run", action="store_true",
                        help="run on the CPU with tiny sizes to check the script; writes only to --out")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the report goes (default: docs/gpu.md on a GPU; printed only with --dry-run)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def short_error(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}"


def load_cifar(path: Path, workdir: Path):
    """The CIFAR-10 ``DataBundle`` from an ImageFolder tree or the ``cifar10-jpg.tar.gz`` archive."""
    if not path.exists():
        raise FileNotFoundError(f"--cifar {path} does not exist")
    if path.is_file():
        with tarfile.open(path) as archive:
            try:
                archive.extractall(workdir, filter="data")
            except TypeError:  # Python < 3.11.4: no extraction filters
                archive.extractall(workdir)
        roots = [p.parent for p in workdir.rglob("train") if p.is_dir() and (p.parent / "test").is_dir()]
        if not roots:
            raise FileNotFoundError(f"{path} holds no train/ and test/ folders (ImageFolder layout)")
        path = roots[0]
    return rdata.load(f"folder:{path}")


# ---- part 1: every recipe's training step ---------------------------------------------------------------------


def part_steps(bundle, sizes: Sizes, budget: Budget, seed: int) -> dict:
    rows, skipped = [], []
    # take_subsets changes the bundle it is given: give it a copy, the lab part needs every image.
    subset = rdata.take_subsets(dataclasses.replace(bundle, info=dict(bundle.info)),
                                min(sizes.step_n_train, len(bundle.train)), None, seed)
    for key in methods.RECIPES:
        for amp in sizes.precisions:
            if budget.left() <= 0:
                skipped.append(f"{key} ({amp})")
                continue
            overrides = {"steps": sizes.steps, "amp": amp, "val_size": sizes.step_val_size}
            if sizes.step_batch:
                overrides["batch_size"] = sizes.step_batch
            config = methods.get(key).config(subset.family, sizes.step_profile, **overrides)
            row = {"recipe": key, "amp": amp, "model": config.model, "batch": config.batch_size}
            started = time.perf_counter()
            try:
                _, history = train_model(key, subset, sizes.step_profile, seed, device=sizes.device,
                                         progress=False, **overrides)
                loss = float(history.last["loss"])
                row.update(loss=loss, ok=math.isfinite(loss))
            except Exception as err:  # noqa: BLE001 - a failing recipe is the finding; the others still run
                row.update(loss=float("nan"), ok=False, error=short_error(err))
            row["seconds"] = time.perf_counter() - started
            rows.append(row)
            if sizes.device == "cuda":
                torch.cuda.empty_cache()
    return {"rows": rows, "skipped": skipped, "profile": sizes.step_profile, "dataset": subset.name,
            "n_train": len(subset.train), "steps": sizes.steps}


# ---- part 2: the lab profile on CIFAR-10 ----------------------------------------------------------------------


def part_lab(bundle, sizes: Sizes, budget: Budget, seed: int, dry_run: bool) -> dict:
    if "lab" not in methods.PROFILES:
        return {"skipped": f"robustviz has no 'lab' profile yet (robustviz.methods.PROFILES = {methods.PROFILES})"}
    if bundle is None:
        return {"skipped": "no CIFAR-10 given (--cifar PATH)"}
    from robustviz.evaluate import evaluate_robustness

    rows, models = [], {}
    test = bundle.test if sizes.test_images is None else bundle.test.subset(
        rdata.stratified_indices(bundle.test.y, sizes.test_images, seed))
    for key in sizes.lab_recipes:
        config = methods.get(key).config(bundle.family, "lab")
        epochs = config.steps / math.ceil(len(bundle.train) / config.batch_size) if config.steps else config.epochs
        row = {"recipe": key, "model": config.model, "epochs": round(epochs, 2), "batch": config.batch_size}
        rows.append(row)
        if budget.left() <= 0:
            row["note"] = "not run: the part's time budget was spent"
            continue
        try:
            probe = {"epochs": 1, "steps": None, **sizes.lab_overrides}  # one epoch: its time
            _, history = train_model(key, bundle, "lab", seed, device=sizes.device, progress=False, **probe)
            row["seconds_per_epoch"] = float(history["seconds"][0])
            projected = row["seconds_per_epoch"] * epochs * 1.15 + 15
            if dry_run or projected > budget.left():
                row["note"] = (f"accuracy not measured: the whole schedule would take about {projected:.0f} s, "
                               f"{max(budget.left(), 0):.0f} s were left" if not dry_run else
                               "dry run: one short epoch only")
                continue
            started = time.perf_counter()
            model, history = train_model(key, bundle, "lab", seed, device=sizes.device, progress=False)
            row["train_seconds"] = time.perf_counter() - started
            report = evaluate_robustness(model, test.x, test.y, (bundle.eps,), ("pgd-20",), seed=seed,
                                         progress=False)
            (eps, accuracies), = report.results.items()  # one budget; its attack names as the report spells them
            pgd20 = next(v for k, v in accuracies.items() if k != "worst case")
            row.update(clean=report.clean_acc, pgd20=pgd20, n_test=len(test), eps=eps)
            models[key] = model
        except Exception as err:  # noqa: BLE001
            row["note"] = f"failed: {short_error(err)}"
    return {"rows": rows, "models": models, "dataset": bundle.name, "eps": bundle.eps}


# ---- part 3: PGD-10 throughput --------------------------------------------------------------------------------


def part_pgd(sizes: Sizes, budget: Budget) -> dict:
    from vs_torchattacks import measure

    try:
        import torchattacks

        reference, note = True, f"torchattacks {torchattacks.__version__}"
    except ImportError:
        reference, note = False, "torchattacks is not installed: robustviz's throughput only"
    rows, skipped = [], []
    for arch, shape, batch in sizes.pgd_cases:
        if budget.left() <= 0:
            skipped.append(arch)
            continue
        try:
            rows.append(measure(arch, shape, batch, sizes.pgd_repeats, device=sizes.device, reference=reference))
        except Exception as err:  # noqa: BLE001
            rows.append({"model": arch, "input": "x".join(map(str, shape)), "batch": batch,
                         "error": short_error(err)})
    return {"rows": rows, "skipped": skipped, "note": note}


# ---- part 4: AutoAttack-fast ----------------------------------------------------------------------------------


def part_autoattack(bundle, lab_models: dict, sizes: Sizes, budget: Budget, seed: int) -> dict:
    try:
        import pyautoattack  # noqa: F401
    except ImportError:
        return {"skipped": "pyautoattack is not installed (pip install pyautoattack)"}
    from robustviz.attacks import autoattack

    started = time.perf_counter()
    if "pgd_at" in lab_models:
        model, source = lab_models["pgd_at"], "pgd_at, lab profile (part 2)"
    else:
        if budget.left() <= 0:
            return {"skipped": "no time left to train a model to attack"}
        model, _ = train_model("pgd_at", bundle, "quick", seed, device=sizes.device, progress=False,
                               **sizes.fallback_overrides)
        source = f"pgd_at, quick profile, trained here ({time.perf_counter() - started:.0f} s)"
    n = min(sizes.aa_images, len(bundle.test))
    test = bundle.test.subset(rdata.stratified_indices(bundle.test.y, n, seed))
    x, y = test.x.to(sizes.device), test.y.to(sizes.device)
    t0 = time.perf_counter()
    result = autoattack(model, x, y, bundle.eps, version="fast", seed=seed)
    seconds = time.perf_counter() - t0
    return {"model": source, "dataset": bundle.name, "n": n, "eps": bundle.eps, "clean": result.clean_acc,
            "robust": result.robust_acc, "seconds": seconds, "per_attack": result.seconds,
            "breakdown": result.breakdown}


# ---- the report -----------------------------------------------------------------------------------------------


def part_scaling(sizes: Sizes, budget: Budget) -> dict:
    """Several GPUs: one ``pgd_at`` epoch on 1 and on every GPU under torchrun (``bench/distributed.py``)."""
    count = torch.cuda.device_count() if sizes.device == "cuda" else 0
    if count < 2:
        return {"skipped": f"this machine has {count} GPU(s); GPU scaling is not measured"}
    procs = sorted({1, 2, count})
    command = [sys.executable, str(ROOT / "bench" / "distributed.py"), "--device", "cuda", "--methods", "pgd_at",
               "--procs", *map(str, procs)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=max(budget.left(), 1))
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "bench/distributed.py")
    return {"table": done.stdout.strip(), "command": " ".join(["python bench/distributed.py", *command[2:]])}


def hardware(device: str) -> list[str]:
    if device != "cuda":
        cpu = platform.processor() or platform.machine()
        return [f"- device: CPU ({cpu}, {torch.get_num_threads()} torch threads)"]
    props = torch.cuda.get_device_properties(0)
    major, minor = torch.cuda.get_device_capability(0)
    return [f"- GPU: {torch.cuda.get_device_name(0)}, compute capability {major}.{minor}, "
            f"{props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} multiprocessors",
            f"- CUDA (torch's build): {torch.version.cuda}; cuDNN {torch.backends.cudnn.version()}"]


def versions() -> str:
    names = {"python": platform.python_version(), "torch": torch.__version__, "robustviz": robustviz.__version__}
    for module in ("torchvision", "numpy", "torchattacks", "pyautoattack"):
        try:
            names[module] = getattr(__import__(module), "__version__", "installed")
        except ImportError:
            names[module] = "not installed"
    return ", ".join(f"{k} {v}" for k, v in names.items())


def pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def render(results: dict, args, sizes: Sizes) -> str:
    title = "# robustviz on a GPU" if not args.dry_run else "# robustviz GPU check: dry run on the CPU"
    command = "python bench/gpu.py" + (" --dry-run" if args.dry_run else "") + (f" --cifar {args.cifar}" if args.cifar
                                                                                else "")
    lines = [title, "", f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in "
             f"{results['total_seconds']:.0f} s.", ""]
    if args.dry_run:
        lines += ["A dry run checks the script on the CPU with tiny sizes: its numbers say nothing about a GPU.", ""]
    lines += ["## Hardware and versions", "", *hardware(sizes.device), f"- versions: {versions()}", ""]
    if results.get("data_note"):
        lines += [f"Data: {results['data_note']}", ""]

    for name, error in results.get("errors", {}).items():
        lines += [f"**Part `{name}` failed**: {error}", ""]
    steps = results["steps"]
    if "error" in steps:
        steps = {"rows": [], "skipped": [], "steps": "-", "profile": "-", "dataset": "-", "n_train": 0}
    ok = sum(r["ok"] for r in steps["rows"])
    lines += ["## 1. Every recipe's training step", "",
              f"`train_model(recipe, ..., steps={steps['steps']}, amp=...)`, profile `{steps['profile']}`, "
              f"{steps['dataset']} ({steps['n_train']} training images); seconds include building the model, the "
              f"steps and the held-out check. {ok} of {len(steps['rows'])} runs finished with a finite loss.", "",
              "| recipe | model | batch | amp | loss | finite | seconds |", "|---|---|---|---|---|---|---|"]
    for r in steps["rows"]:
        loss = f"{r['loss']:.4f}" if math.isfinite(r["loss"]) else (r.get("error") or "nan")
        lines.append(f"| {r['recipe']} | {r['model']} | {r['batch']} | {r['amp']} | {loss} | "
                     f"{'yes' if r['ok'] else 'NO'} | {r['seconds']:.1f} |")
    if steps["skipped"]:
        lines.append(f"\nNot run (time budget spent): {', '.join(steps['skipped'])}.")
    lines.append("")

    lab = results["lab"]
    lines += ["## 2. The `lab` profile on CIFAR-10", ""]
    if "skipped" in lab and isinstance(lab["skipped"], str):
        lines += [f"Skipped: {lab['skipped']}.", ""]
    elif "error" in lab:
        lines += ["Failed (above).", ""]
    else:
        lines += [f"{lab['dataset']}; accuracy on the test images at eps {lab['eps']:.4g} ({255 * lab['eps']:.3g}/255; "
                  "PGD-20: 20 steps from a random start).", "",
                  "| recipe | model | epochs | s / epoch | train s | clean | PGD-20 | note |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in lab["rows"]:
            spe = f"{r['seconds_per_epoch']:.1f}" if "seconds_per_epoch" in r else "-"
            train_s = f"{r['train_seconds']:.0f}" if "train_seconds" in r else "-"
            lines.append(f"| {r['recipe']} | {r['model']} | {r['epochs']} | {spe} | {train_s} | {pct(r.get('clean'))} "
                         f"| {pct(r.get('pgd20'))} | {r.get('note', '')} |")
        lines.append("")

    pgd = results["pgd"]
    lines += ["## 3. PGD-10 throughput against torchattacks", "",
              f"L-inf PGD, 10 steps of 2.5 eps / 10 from a random start, model in eval mode, float32; images per "
              f"second, median of {sizes.pgd_repeats} interleaved repeats ({pgd['note']}).", "",
              "| model | input | batch | robustviz (img/s) | torchattacks (img/s) | ratio |",
              "|---|---|---|---|---|---|"]
    for r in pgd.get("rows", []):
        if "error" in r:
            lines.append(f"| {r['model']} | {r['input']} | {r['batch']} | {r['error']} | | |")
            continue
        theirs = f"{r['theirs']:.0f}" if "theirs" in r else "-"
        ratio = f"{r['ratio']:.2f}x" if "ratio" in r else "-"
        lines.append(f"| {r['model']} | {r['input']} | {r['batch']} | {r['ours']:.0f} | {theirs} | {ratio} |")
    if pgd.get("skipped"):
        lines.append(f"\nNot run (time budget spent): {', '.join(pgd['skipped'])}.")
    lines.append("")

    aa = results["autoattack"]
    lines += ["## 4. AutoAttack-fast", ""]
    if isinstance(aa.get("skipped"), str):
        lines += [f"Skipped: {aa['skipped']}.", ""]
    elif "error" in aa:
        lines += ["Failed (above).", ""]
    else:
        per = ", ".join(f"{k} {v:.1f} s" for k, v in aa["per_attack"].items())
        lines += [f"`autoattack(version=\"fast\")` (APGD-CE, APGD-T) on {aa['n']} test images of {aa['dataset']}, "
                  f"eps {aa['eps']:.4g}, model: {aa['model']}.", "",
                  f"- clean {pct(aa['clean'])}, robust {pct(aa['robust'])}",
                  f"- {aa['seconds']:.1f} s in all ({per})", ""]

    scaling = results.get("scaling", {"skipped": "pending"})
    lines += ["## 5. Several GPUs under torchrun", ""]
    if isinstance(scaling.get("skipped"), str):
        lines += [f"Skipped: {scaling['skipped']}.", ""]
    elif "error" in scaling:
        lines += ["Failed (above).", ""]
    else:
        lines += [f"`{scaling['command']}`: one epoch of `pgd_at` (quick recipe, mnist-mini), global batch 128.", "",
                  scaling["table"], ""]
    return "\n".join(lines)


def write(out: Path | None, results: dict, args, sizes: Sizes, started: float, pending=()) -> str:
    """Render the report (parts not run yet are listed as pending) and write it to ``out`` if given."""
    results["total_seconds"] = time.perf_counter() - started
    shown = {"steps": {"error": "pending"}, "lab": {"skipped": "pending"}, "pgd": {"rows": [], "note": "pending"},
             "autoattack": {"skipped": "pending"}, **results}
    report = render(shown, args, sizes)
    if pending:
        report += f"\n**Incomplete**: the run stopped before the parts {', '.join(pending)}.\n"
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report + "\n")
        print(f"[bench/gpu.py] wrote {out}", flush=True)
    return report


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print(NO_GPU, file=sys.stderr)
        return 2
    sizes = DRY_SIZES if args.dry_run else GPU_SIZES
    started = time.perf_counter()
    total_end = started + TOTAL_SECONDS
    torch.backends.cudnn.benchmark = sizes.device == "cuda"
    results: dict = {"errors": {}}
    with tempfile.TemporaryDirectory(prefix="robustviz-gpu-") as workdir:
        cifar = None
        if args.cifar is not None:
            t0 = time.perf_counter()
            try:
                cifar = load_cifar(args.cifar, Path(workdir))
                results["data_note"] = (f"CIFAR-10 from {args.cifar}: {len(cifar.train):,} train / "
                                        f"{len(cifar.test):,} test images, read in {time.perf_counter() - t0:.0f} s.")
            except Exception as err:  # noqa: BLE001 - the other parts still run on mnist-mini
                results["data_note"] = f"CIFAR-10 could not be read from {args.cifar} ({short_error(err)})."
        mnist = rdata.load("mnist-mini")
        base = cifar if cifar is not None else mnist
        parts = [
            ("steps", lambda b: part_steps(base, sizes, b, args.seed)),
            ("lab", lambda b: part_lab(cifar if not args.dry_run else mnist, sizes, b, args.seed, args.dry_run)),
            ("pgd", lambda b: part_pgd(sizes, b)),
            ("autoattack", lambda b: part_autoattack(base, results.get("lab", {}).get("models", {}), sizes, b,
                                                     args.seed)),
            ("scaling", lambda b: part_scaling(sizes, b)),
        ]
        out = args.out if args.out is not None else (None if args.dry_run else ROOT / "docs" / "gpu.md")
        for done, (name, run) in enumerate(parts):
            print(f"[bench/gpu.py] part {name} ({time.perf_counter() - started:.0f} s so far)", flush=True)
            try:
                results[name] = run(Budget(sizes.budgets[name], total_end))
            except Exception as err:  # noqa: BLE001 - report it and go on with the next part
                traceback.print_exc()
                results["errors"][name] = short_error(err)
                results[name] = {"rows": [], "skipped": [], "note": "failed", "error": short_error(err)}
            if out is not None and done < len(parts) - 1:  # a run stopped from outside keeps what it measured
                write(out, results, args, sizes, started, pending=[n for n, _ in parts[done + 1:]])
    report = write(out, results, args, sizes, started)
    print(report)
    failed = [r for r in results["steps"].get("rows", []) if not r["ok"]]
    return 1 if failed or results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
