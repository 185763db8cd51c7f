"""Command line: ``robustviz demo | train | evaluate | compare | doctor``.

Examples:
    robustviz demo
    robustviz train --list
    robustviz train --method pgd_at --dataset mnist-mini --profile quick
    robustviz evaluate results/pgd_at-mnist-mini-quick-s0 --eps 0.1 0.3 --attacks fgsm pgd-20
    robustviz evaluate results/clustr-mnist-mini-quick-s0 --ladder --diagnose
    robustviz evaluate --model mine:cifar_resnet --dataset cifar10   # your own model, wrapped
    robustviz compare --profile quick --out docs/results-quick.md
    robustviz doctor

Mistakes end in one paragraph on stderr that says what went wrong and what to do, with exit
status 2 (Ctrl-C: 130, the shell's convention, with how to continue); ``--debug`` shows the
Python traceback instead. Runs go to the results folder of ``robustviz.app.runs.default_results``
(``$ROBUSTVIZ_RESULTS``, else the checkout's ``results/``), as for the notebooks.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import warnings
from pathlib import Path

PROFILE_CHOICES = ("quick", "lab", "full")  # robustviz.methods.PROFILES (not imported: the CLI starts fast)

USER_ERROR_EXIT, INTERRUPTED_EXIT = 2, 130
DISTRIBUTED_COMMANDS = ("train", "evaluate", "compare")  # the commands that run under torchrun
PACKAGE_DIR = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (0 ok, 1 a failed check, 2 a user error, 130 Ctrl-C)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return USER_ERROR_EXIT
    try:
        with warnings.catch_warnings():
            if not args.debug:
                warnings.showwarning = _show_warning
            if args.command in DISTRIBUTED_COMMANDS:
                join_torchrun(args)
            return args.run(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"robustviz {args.command}: {interrupted_message(args, argv)}", file=sys.stderr)
        return INTERRUPTED_EXIT
    except Exception as err:
        if args.debug or not is_user_error(err):
            raise
        print(f"robustviz {args.command}: error: {err}", file=sys.stderr)
        return USER_ERROR_EXIT


def join_torchrun(args) -> None:
    """Under ``torchrun``: join the process group; ranks other than 0 print nothing (no results,
    warnings or progress bars: rank 0 shows them once). Errors are still shown by every rank."""
    from .. import distributed

    if distributed.init_from_env() and not distributed.is_main():
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the rest of the process
        warnings.simplefilter("ignore")
        args.no_progress = True


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line for the command line, without the source line Python shows."""
    print(f"robustviz: warning: {message}", file=sys.stderr if file is None else file)


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` is a mistake to explain in a sentence rather than a bug to show as a traceback.

    Files and folders (``OSError``: missing, not writable, ...) always are; a ``ValueError``,
    ``TypeError`` or ``FloatingPointError`` is when robustviz raised it, since robustviz's
    messages say what to do.
    """
    if isinstance(err, OSError):
        return True
    return isinstance(err, (ValueError, TypeError, FloatingPointError)) and _raised_by_robustviz(err)


def _raised_by_robustviz(err: BaseException) -> bool:
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return PACKAGE_DIR in Path(tb.tb_frame.f_code.co_filename).resolve().parents


def interrupted_message(args, argv: list[str]) -> str:
    """What Ctrl-C left behind and how to go on."""
    directory = getattr(args, "checkpoint_dir", None)
    if args.command == "train" and directory is not None:
        from ..train.checkpoint import has_checkpoint, read_meta

        if not has_checkpoint(directory):
            return "interrupted before the first epoch was saved; nothing was written. Run the command again."
        meta = read_meta(directory)
        again = [arg for arg in argv if arg != "--overwrite"] + ([] if "--resume" in argv else ["--resume"])
        return (f"interrupted. {directory} keeps the last finished epoch ({meta.get('epoch')} of "
                f"{meta.get('epochs')}); continue where it stopped, with the same result as an uninterrupted "
                f"run: {shlex.join(['robustviz', *again])}")
    if args.command == "compare":
        return ("interrupted. Finished runs stay cached; the same command reuses them and resumes the "
                "interrupted one from its last finished epoch.")
    return "interrupted."


# ---- the parser -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robustviz", description="Feature-space adversarial robustness, for teaching. Accuracies are "
        "fractions of test images; eps is in [0, 1] pixel units (0.3 = 30 percent of the pixel range; 8/255 = 0.0314).")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks instead of one-line errors")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the Python traceback of an error instead of its one-paragraph message")
    sub = parser.add_subparsers(dest="command")

    def command(name: str, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kwargs)

    demo = command("demo", help="train ce and pgd_at on mnist-mini, compare, plot",
                   description="Train a standard (ce) and an adversarially trained (pgd_at) smallcnn on the "
                   "embedded mnist-mini on the CPU, evaluate clean/FGSM/PGD-20 accuracy at eps 0.1/0.2/0.3, "
                   "and write the table, two figures and both checkpoints to --out (replacing an earlier demo "
                   "there).")
    demo.add_argument("--out", default=None,
                      help="output folder (default: demo/ in the results folder, i.e. $ROBUSTVIZ_RESULTS/demo "
                           "or results/demo)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the models, training and attacks (default 0)")
    demo.add_argument("--n-eval", type=int, default=1000, help="test images to evaluate, 1..2000 (default 1000)")
    demo.add_argument("--device", default="cpu", help="cpu (default), cuda or auto (a GPU if there is one)")
    demo.add_argument("--epochs", type=int, default=None,
                      help="training epochs per model (default: the recipes' own, 4 and 5)")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    demo.set_defaults(run=run_demo_command)

    train = command("train", help="train one recipe on one dataset",
                    description="Train a recipe with its defaults for the dataset and profile; writes a "
                    "checkpoint folder after every epoch (crash-safe). The folder is named after what defines "
                    "the run: <method>-<dataset>-<profile>-s<seed>, plus -n<N> for --n-train and -x<hash> when "
                    "--epochs, --steps, --eps or --set change a setting. An existing run there is never "
                    "replaced silently: pass --resume to continue it, --overwrite to train it again, or --out.")
    train.add_argument("--list", action="store_true", help="list the recipes and exit")
    train.add_argument("--show-config", action="store_true",
                       help="print every resolved setting of this run, with its unit, and exit")
    train.add_argument("--method", default="ce", help="recipe key (see --list; default ce)")
    train.add_argument("--dataset", default="mnist-mini",
                       help="mnist-mini (default, embedded), mnist, fashion-mnist, cifar10, cifar100, svhn "
                            "(torchvision, under --root), folder:<path> (ImageFolder with train/ and test/), "
                            "moons, blobs")
    train.add_argument("--profile", default="quick", choices=PROFILE_CHOICES,
                       help="quick (CPU minutes, default), lab (one GPU session: CIFAR-10 in about 10 minutes "
                            "on a T4, docs/profiles.md) or full (the paper's settings, for a GPU)")
    train.add_argument("--seed", type=int, default=0, help="seed of the model, training and subset (default 0)")
    train.add_argument("--epochs", type=int, default=None, help="training epochs, >= 1 (default: the recipe's)")
    train.add_argument("--steps", type=int, default=None,
                       help="train for this many optimiser steps (batches) instead of --epochs, >= 1")
    train.add_argument("--eps", type=float, default=None,
                       help="training budget in [0, 1] pixel units, e.g. 0.3 or 0.0314 for 8/255 "
                            "(default: the dataset's)")
    train.add_argument("--n-train", type=int, default=None,
                       help="train on a stratified subset of this many training images (default: all)")
    train.add_argument("--root", default="data", help="folder of the torchvision datasets (default: data)")
    train.add_argument("--download", action="store_true", help="let torchvision download a missing dataset")
    train.add_argument("--device", default="auto", help="auto (default: a GPU if there is one), cpu or cuda")
    train.add_argument("--out", default=None,
                       help="checkpoint folder (default: the run's name, see above, in the results folder: "
                            "$ROBUSTVIZ_RESULTS or results/)")
    again = train.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the run in the folder (same settings required); a finished run is only "
                            "loaded")
    again.add_argument("--overwrite", action="store_true",
                       help="delete the run already in the folder (checkpoint and cached evaluations) and train "
                            "it again from scratch")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a training setting, e.g. --set lr=0.01 --set batch_size=64 "
                            "(values are read as JSON: numbers, true/false, [lists], {dicts})")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.set_defaults(run=run_train_command)

    evaluate = command("evaluate", help="evaluate a checkpoint (or your own model) under attacks",
                       description="Clean and robust accuracy of a saved model. CHECKPOINT is a folder written "
                       "by train or demo: a path, or a run's name in the results folder. Your own model: "
                       "--model package.module:function, a function that returns it wrapped with "
                       "robustviz.models.wrap (with --dataset).")
    evaluate.add_argument("checkpoint", nargs="?", default=None,
                          help="checkpoint folder (or the name of a run in the results folder)")
    evaluate.add_argument("--model", default=None, metavar="PACKAGE.MODULE:FUNCTION",
                          help="instead of a checkpoint: a function returning your model, wrapped with "
                               "robustviz.models.wrap (e.g. mine:cifar_resnet for cifar_resnet() in ./mine.py)")
    evaluate.add_argument("--dataset", default=None, help="dataset to evaluate on (default: the one it was "
                          "trained on; required with --model)")
    evaluate.add_argument("--eps", type=float, nargs="+", default=None,
                          help="budgets in [0, 1] pixel units, e.g. 0.1 0.3 (default: the dataset's eps)")
    evaluate.add_argument("--attacks", nargs="+", default=["fgsm", "pgd-20"],
                          help="fgsm, rfgsm, bim-K, mifgsm-K, pgd-K[xR][-margin|-dlr][-l2], mt-pgd-K, "
                               "adaptive-K[xR], autoattack[-fast|-rand] (K steps, R restarts; default fgsm pgd-20)")
    evaluate.add_argument("--ladder", action="store_true",
                          help="climb the attack ladder (clean, FGSM, PGD-20, restarts, margin/DLR, adaptive, "
                               "AutoAttack) at the first eps instead")
    evaluate.add_argument("--level", default="quick", choices=("quick", "standard", "full"),
                          help="ladder level (default quick: minutes on a CPU)")
    evaluate.add_argument("--diagnose", action="store_true",
                          help="also check for gradient masking at the first eps (about a minute for 500 images, "
                               "including training a surrogate)")
    evaluate.add_argument("--surrogate", default=None,
                          help="checkpoint of the transfer-attack surrogate for --diagnose (default: train a ce "
                               "model)")
    evaluate.add_argument("--n", "--n-test", dest="n", type=int, default=1000,
                          help="test images, >= 1 (default 1000; --diagnose uses at most 500); under torchrun write "
                               "--n-test, since torchrun reads --n as one of its own options")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the test subset and the attacks (default 0)")
    evaluate.add_argument("--root", default="data", help="folder of the torchvision datasets (default: data)")
    evaluate.add_argument("--download", action="store_true", help="let torchvision download a missing dataset")
    evaluate.add_argument("--device", default="auto", help="auto (default: a GPU if there is one), cpu or cuda")
    evaluate.add_argument("--json", default=None, help="also write the results to this JSON file")
    evaluate.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    evaluate.set_defaults(run=run_evaluate_command)

    compare = command("compare", help="train every recipe (or reuse the cached runs) and tabulate",
                      description="Train each recipe with its defaults (cached in --results and reused when "
                      "finished), evaluate them side by side and write a markdown table.")
    compare.add_argument("--methods", nargs="+", default=None, help="recipe keys (default: all)")
    compare.add_argument("--dataset", default="mnist-mini", help="dataset, as for train (default mnist-mini)")
    compare.add_argument("--profile", default="quick", choices=PROFILE_CHOICES,
                         help="quick (CPU minutes, default), lab (one GPU session per recipe, docs/profiles.md) "
                              "or full (the papers' settings, for a GPU)")
    compare.add_argument("--seed", type=int, default=0, help="seed of the models, training and attacks (default 0)")
    compare.add_argument("--n-eval", type=int, default=1000, help="test images to evaluate (default 1000)")
    compare.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.2, 0.3],
                         help="budgets in [0, 1] pixel units (default 0.1 0.2 0.3)")
    compare.add_argument("--attacks", nargs="+", default=["fgsm", "pgd-20"],
                         help="attacks, as for evaluate (default fgsm pgd-20)")
    compare.add_argument("--results", default=None,
                         help="run cache (default: $ROBUSTVIZ_RESULTS, else results/)")
    compare.add_argument("--root", default="data", help="folder of the torchvision datasets (default: data)")
    compare.add_argument("--download", action="store_true", help="let torchvision download a missing dataset")
    compare.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    compare.add_argument("--out", default=None, help="write the markdown table to this file")
    compare.add_argument("--ladder", default=None, choices=("quick", "standard", "full"),
                         help="also climb the attack ladder at the largest eps (level)")
    compare.add_argument("--ladder-n", type=int, default=500, help="test images for the ladder (default 500)")
    compare.add_argument("--notes", default=None,
                         help="a markdown file whose text goes under 'Notes' at the end of the table")
    compare.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    compare.set_defaults(run=run_compare_command)

    doctor = command("doctor", help="check the installation: versions, device, widgets, data",
                     description="Print the versions of robustviz and its dependencies, the device, whether "
                     "interactive widgets can display, where mnist-mini is found and where runs are cached; "
                     "exit status 0 when every required check passes, 1 otherwise.")
    doctor.add_argument("--json", action="store_true", help="print the report as JSON instead")
    doctor.set_defaults(run=run_doctor_command)
    return parser


# ---- the commands -----------------------------------------------------------------------------


def resolve_device(name: str):
    """The ``torch.device`` for a ``--device`` value; a clear error for one this machine lacks."""
    from .._checks import check_device

    return check_device(name)


def run_demo_command(args) -> int:
    from .demo import demo_table, run_demo
    from .runs import default_results

    out = Path(args.out) if args.out else default_results() / "demo"
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; the demo writes a folder")
    metrics = run_demo(out, seed=args.seed, n_eval=args.n_eval, device=str(resolve_device(args.device)),
                       progress=not args.no_progress, epochs=args.epochs)
    print(f"\nmnist-mini, {args.n_eval} test images, seed {args.seed} (accuracy, higher is better)")
    print(demo_table(metrics))
    print(f"\nwrote {out}/metrics.json, accuracy_vs_eps.png, features_pca.png and checkpoints")
    print(f"total time {metrics['timings']['total_s']:.0f} s")
    return 0


def run_train_command(args) -> int:
    from .. import data, methods
    from .._checks import check_eps
    from ..evaluate import accuracy
    from ..train import train_model
    from ..train.checkpoint import has_checkpoint
    from .runs import default_results, run_path

    if args.list:
        for key, summary in methods.list_recipes():
            print(f"{key:<15} {summary}")
        return 0
    recipe = methods.get(args.method)
    device = resolve_device(args.device)
    if args.eps is not None:
        check_eps(args.eps, "--eps")
    overrides = parse_settings(args.set)
    for key in ("epochs", "steps", "eps"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.show_config:
        from ..settings import show_config

        family = data.family_of(args.dataset)
        print(show_config(recipe.config(family, args.profile, **overrides),
                          f"{args.method} on {args.dataset} ({family} family), profile {args.profile}:"))
        return 0
    bundle = data.load(args.dataset, root=args.root, download=args.download, n_train=args.n_train, seed=args.seed)
    recipe.config(bundle.family, args.profile, **overrides)  # every setting checked before anything is written
    out = Path(args.out) if args.out else run_path(args.method, args.dataset, args.profile, args.seed,
                                                   args.n_train, default_results(), **overrides)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; a run is a folder: choose another --out")
    args.checkpoint_dir = out
    if args.resume and not has_checkpoint(out):
        print(f"--resume: no checkpoint in {out} yet, starting from the first epoch", file=sys.stderr)
    started = time.perf_counter()
    model, history = train_model(args.method, bundle, args.profile, args.seed, device=device, checkpoint_dir=out,
                                 resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress,
                                 **overrides)
    last = history.last
    print(f"{args.method} on {bundle.name} ({args.profile}): {len(history)} epochs in "
          f"{time.perf_counter() - started:.0f} s; final loss {last['loss']:.4f}, "
          f"held-out clean {100 * last['val_clean_acc']:.1f}%, PGD {100 * last['val_pgd_acc']:.1f}%, "
          f"test clean {100 * accuracy(model, bundle.test.x, bundle.test.y):.1f}%")
    print(f"checkpoint: {out}")
    return 0


def run_evaluate_command(args) -> int:
    from .. import data, distributed
    from ..data import stratified_indices
    from ..evaluate import evaluate_robustness
    from ..train import load_checkpoint

    device = resolve_device(args.device)
    if args.json:
        check_output_file(args.json, "--json")
    if args.n < 1:
        raise ValueError(f"--n must be at least 1 test image, got {args.n}")
    model, meta = load_evaluated_model(args, device)
    surrogate = "auto"
    if args.diagnose and args.surrogate:
        surrogate, _ = load_checkpoint(find_checkpoint(args.surrogate), device=device)
    bundle = data.load(args.dataset or meta["dataset"]["name"], root=args.root, download=args.download)
    test = bundle.test
    if args.n < len(test):
        test = test.subset(stratified_indices(test.y, args.n, args.seed))
    eps = args.eps or [bundle.eps]
    results = {}
    if args.ladder:
        from ..evaluate import ladder

        climbed = ladder(model, test, eps[0], level=args.level, n=None, seed=args.seed,
                         progress=not args.no_progress)
        print(f"{meta['method']} on {bundle.name}\n{climbed.table()}")
        results["ladder"] = climbed.to_dict()
    else:
        report = evaluate_robustness(model, test.x, test.y, eps, args.attacks, seed=args.seed,
                                     progress=not args.no_progress)
        print(report.table(f"{meta['method']} on {bundle.name}, {report.n} test images"))
        results = report.to_dict()
    if args.diagnose:
        from ..evaluate import diagnose

        diagnosis = diagnose(model, bundle, eps[0], n=min(args.n, 500), surrogate=surrogate, seed=args.seed,
                             progress=not args.no_progress)
        print(f"\n{diagnosis}")
        results["diagnosis"] = {name: vars(flag) for name, flag in diagnosis.flags.items()}
    if args.json and distributed.is_main():
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def load_evaluated_model(args, device):
    """``(model, meta)`` for ``evaluate``: a robustviz checkpoint, or ``--model`` with ``--dataset``."""
    from ..train import load_checkpoint

    if (args.checkpoint is None) == (args.model is None):
        raise ValueError("evaluate needs one model: a CHECKPOINT folder, or --model package.module:function "
                         "(not both)")
    if args.checkpoint is not None:
        return load_checkpoint(find_checkpoint(args.checkpoint), device=device)
    if args.dataset is None:
        raise ValueError(f"--model {args.model} needs --dataset (e.g. --dataset cifar10): a model of your own "
                         "records no dataset")
    from ..models.entry_point import load_entry_point

    model = load_entry_point(args.model).to(device).eval()
    return model, {"method": args.model, "dataset": {"name": args.dataset}}


def run_compare_command(args) -> int:
    from .. import distributed
    from .compare import compare, markdown_table

    notes = Path(args.notes).read_text() if args.notes else None  # read first: a wrong path fails before training
    if args.out:
        check_output_file(args.out, "--out")
    rows = compare(args.methods, args.dataset, args.profile, args.seed, args.n_eval, args.eps,
                   args.attacks, args.results, str(resolve_device(args.device)),
                   progress=not args.no_progress, ladder_level=args.ladder, ladder_n=args.ladder_n,
                   root=args.root, download=args.download)
    command = "robustviz compare " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["compare"] else "robustviz compare"
    text = markdown_table(rows, args.dataset, args.profile, command, notes)
    print(text)
    if args.out and distributed.is_main():
        Path(args.out).write_text(text)
    return 0


def run_doctor_command(args) -> int:
    from .doctor import doctor

    report = doctor(verbose=not args.json)
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    return 0 if report["ok"] else 1


# ---- helpers ----------------------------------------------------------------------------------


def parse_settings(pairs: list[str]) -> dict:
    """Parse ``KEY=VALUE`` strings; values are read as JSON when possible (numbers, lists)."""
    settings = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r} (e.g. --set lr=0.01)")
        key, value = pair.split("=", 1)
        try:
            settings[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            settings[key.strip()] = value
    if isinstance(settings.get("milestones"), list):
        settings["milestones"] = tuple(settings["milestones"])
    return settings


def find_checkpoint(name: str) -> Path:
    """The checkpoint folder ``name``: a path, or else the name of a run in the results folder."""
    from .runs import default_results

    path = Path(name)
    if path.exists() or path.is_absolute():
        return path
    cached = default_results() / name
    if cached.exists():
        return cached
    raise FileNotFoundError(f"no checkpoint folder {name!r}, neither here nor in the results folder "
                            f"{default_results()}; pass the folder `robustviz train` printed")


def check_output_file(path: str, flag: str) -> None:
    """Raise before any work when ``path`` cannot be written as a file."""
    target = Path(path)
    folder = target.parent
    if target.is_dir():
        raise ValueError(f"{flag} {path} is a folder; give a file name, e.g. {target / 'results.json'}")
    if not folder.is_dir():
        raise ValueError(f"{flag} {path}: the folder {folder} does not exist; create it first or choose "
                         "another path")
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise ValueError(f"{flag} {path} cannot be written (no permission); choose another path")


if __name__ == "__main__":
    sys.exit(main())
