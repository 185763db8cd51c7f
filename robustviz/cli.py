"""Command line: ``robustviz demo | train | evaluate | compare | doctor``.

Examples:
    robustviz demo
    robustviz train --list
    robustviz train --method pgd_at --dataset mnist-mini --profile quick
    robustviz evaluate results/pgd_at-mnist-mini-quick-s0 --eps 0.1 0.3 --attacks fgsm pgd-20
    robustviz evaluate results/clustr-mnist-mini-quick-s0 --ladder --diagnose
    robustviz compare --profile quick --out docs/results-quick.md
    robustviz doctor
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"robustviz {args.command}: error: {err}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robustviz", description="Feature-space adversarial robustness, for teaching."
    )
    sub = parser.add_subparsers(dest="command")

    demo = sub.add_parser("demo", help="train ce and pgd_at on mnist-mini, compare, plot",
                          description="Train a standard (ce) and an adversarially trained (pgd_at) "
                          "smallcnn on the embedded mnist-mini on the CPU, evaluate clean/FGSM/PGD-20 "
                          "accuracy at eps 0.1/0.2/0.3, and write results/demo/.")
    demo.add_argument("--out", default="results/demo", help="output folder (default: results/demo)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--n-eval", type=int, default=1000, help="test images to evaluate (default 1000)")
    demo.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    demo.add_argument("--epochs", type=int, default=None, help="override training epochs")
    demo.add_argument("--no-progress", action="store_true")
    demo.set_defaults(run=run_demo_command)

    train = sub.add_parser("train", help="train one recipe on one dataset",
                           description="Train a recipe with its defaults for the dataset and "
                           "profile; writes a checkpoint folder.")
    train.add_argument("--list", action="store_true", help="list the recipes and exit")
    train.add_argument("--method", default="ce", help="recipe key (see --list)")
    train.add_argument("--dataset", default="mnist-mini",
                       help="mnist-mini, mnist, fashion-mnist, cifar10, cifar100, svhn, "
                       "folder:<path>, moons, blobs")
    train.add_argument("--profile", default="quick", choices=("quick", "full"))
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--epochs", type=int, default=None)
    train.add_argument("--steps", type=int, default=None, help="train for this many steps instead")
    train.add_argument("--eps", type=float, default=None, help="training eps in [0, 1] units")
    train.add_argument("--n-train", type=int, default=None, help="stratified training subset")
    train.add_argument("--root", default="data", help="dataset folder (default: data)")
    train.add_argument("--download", action="store_true", help="let torchvision download data")
    train.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    train.add_argument("--out", default=None,
                       help="checkpoint folder (default: results/<method>-<dataset>-<profile>-s<seed>)")
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a training setting, e.g. --set lr=0.01 --set batch_size=64")
    train.add_argument("--no-progress", action="store_true")
    train.set_defaults(run=run_train_command)

    evaluate = sub.add_parser("evaluate", help="evaluate a checkpoint under attacks",
                              description="Clean and robust accuracy of a saved model.")
    evaluate.add_argument("checkpoint", help="checkpoint folder written by train or demo")
    evaluate.add_argument("--dataset", default=None, help="default: the one it was trained on")
    evaluate.add_argument("--eps", type=float, nargs="+", default=None,
                          help="budgets in [0, 1] units (default: the dataset's eps)")
    evaluate.add_argument("--attacks", nargs="+", default=["fgsm", "pgd-20"],
                          help="fgsm, rfgsm, bim-K, mifgsm-K, pgd-K[xR][-margin|-dlr][-l2], mt-pgd-K, "
                               "adaptive-K[xR], autoattack[-fast|-rand]")
    evaluate.add_argument("--ladder", action="store_true",
                          help="climb the attack ladder (clean, FGSM, PGD-20, restarts, margin/DLR, adaptive, "
                               "AutoAttack) at the first eps instead")
    evaluate.add_argument("--level", default="quick", choices=("quick", "standard", "full"),
                          help="ladder level (default quick)")
    evaluate.add_argument("--diagnose", action="store_true",
                          help="also check for gradient masking at the first eps")
    evaluate.add_argument("--surrogate", default=None,
                          help="checkpoint of the transfer-attack surrogate for --diagnose (default: train a ce model)")
    evaluate.add_argument("--n", type=int, default=1000, help="test images (default 1000)")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--root", default="data")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--json", default=None, help="also write the results to this file")
    evaluate.add_argument("--no-progress", action="store_true")
    evaluate.set_defaults(run=run_evaluate_command)

    compare = sub.add_parser("compare", help="train every recipe (or reuse results/) and tabulate",
                             description="Train each recipe with its defaults (cached under "
                             "--results and reused when finished), evaluate them side by side and "
                             "write a markdown table.")
    compare.add_argument("--methods", nargs="+", default=None, help="recipe keys (default: all)")
    compare.add_argument("--dataset", default="mnist-mini")
    compare.add_argument("--profile", default="quick", choices=("quick", "full"))
    compare.add_argument("--seed", type=int, default=0)
    compare.add_argument("--n-eval", type=int, default=1000)
    compare.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.2, 0.3])
    compare.add_argument("--attacks", nargs="+", default=["fgsm", "pgd-20"])
    compare.add_argument("--results", default="results", help="checkpoint cache (default: results)")
    compare.add_argument("--device", default="cpu")
    compare.add_argument("--out", default=None, help="write the markdown table here")
    compare.add_argument("--ladder", default=None, choices=("quick", "standard", "full"),
                         help="also climb the attack ladder at the largest eps (level)")
    compare.add_argument("--ladder-n", type=int, default=500, help="test images for the ladder (default 500)")
    compare.add_argument("--notes", default=None,
                         help="a markdown file whose text goes under 'Notes' at the end of the table")
    compare.add_argument("--no-progress", action="store_true")
    compare.set_defaults(run=run_compare_command)

    doctor = sub.add_parser("doctor", help="check the installation: versions, device, widgets, data",
                            description="Print the versions of robustviz and its dependencies, the device, "
                            "whether interactive widgets can display and where mnist-mini is found; exit "
                            "status 0 when every required check passes.")
    doctor.add_argument("--json", action="store_true", help="print the report as JSON instead")
    doctor.set_defaults(run=run_doctor_command)
    return parser


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def run_demo_command(args) -> int:
    from .demo import demo_table, run_demo

    metrics = run_demo(args.out, seed=args.seed, n_eval=args.n_eval,
                       device=str(resolve_device(args.device)), progress=not args.no_progress,
                       epochs=args.epochs)
    print(f"\nmnist-mini, {args.n_eval} test images, seed {args.seed} (accuracy, higher is better)")
    print(demo_table(metrics))
    print(f"\nwrote {args.out}/metrics.json, accuracy_vs_eps.png, features_pca.png and checkpoints")
    print(f"total time {metrics['timings']['total_s']:.0f} s")
    return 0


def run_train_command(args) -> int:
    from . import data, methods
    from .compare import run_dir
    from .evaluate import accuracy
    from .train import train_model

    if args.list:
        for key, summary in methods.list_recipes():
            print(f"{key:<15} {summary}")
        return 0
    bundle = data.load(args.dataset, root=args.root, download=args.download,
                       n_train=args.n_train, seed=args.seed)
    overrides = parse_settings(args.set)
    for key in ("epochs", "steps", "eps"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    out = Path(args.out) if args.out else run_dir("results", args.method, args.dataset, args.profile, args.seed)
    started = time.perf_counter()
    model, history = train_model(args.method, bundle, args.profile, args.seed,
                                 device=resolve_device(args.device), checkpoint_dir=out,
                                 resume=args.resume, progress=not args.no_progress, **overrides)
    last = history.last
    print(f"{args.method} on {bundle.name} ({args.profile}): {len(history)} epochs in "
          f"{time.perf_counter() - started:.0f} s; final loss {last['loss']:.4f}, "
          f"held-out clean {100 * last['val_clean_acc']:.1f}%, PGD {100 * last['val_pgd_acc']:.1f}%, "
          f"test clean {100 * accuracy(model, bundle.test.x, bundle.test.y):.1f}%")
    print(f"checkpoint: {out}")
    return 0


def run_evaluate_command(args) -> int:
    from . import data
    from .data import stratified_indices
    from .evaluate import evaluate_robustness
    from .train import load_checkpoint

    model, meta = load_checkpoint(args.checkpoint, device=resolve_device(args.device))
    bundle = data.load(args.dataset or meta["dataset"]["name"], root=args.root)
    test = bundle.test
    if args.n < len(test):
        test = test.subset(stratified_indices(test.y, args.n, args.seed))
    eps = args.eps or [bundle.eps]
    results = {}
    if args.ladder:
        from .evaluate import ladder

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
        from .evaluate import diagnose

        surrogate = "auto"
        if args.surrogate:
            surrogate, _ = load_checkpoint(args.surrogate, device=resolve_device(args.device))
        diagnosis = diagnose(model, bundle, eps[0], n=min(args.n, 500), surrogate=surrogate, seed=args.seed)
        print(f"\n{diagnosis}")
        results["diagnosis"] = {name: vars(flag) for name, flag in diagnosis.flags.items()}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def run_compare_command(args) -> int:
    from .compare import compare, markdown_table

    notes = Path(args.notes).read_text() if args.notes else None  # read first: a wrong path fails before training
    rows = compare(args.methods, args.dataset, args.profile, args.seed, args.n_eval, args.eps,
                   args.attacks, args.results, str(resolve_device(args.device)),
                   progress=not args.no_progress, ladder_level=args.ladder, ladder_n=args.ladder_n)
    command = "robustviz compare " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["compare"] else "robustviz compare"
    text = markdown_table(rows, args.dataset, args.profile, command, notes)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


def run_doctor_command(args) -> int:
    from .doctor import doctor

    report = doctor(verbose=not args.json)
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    return 0 if report["ok"] else 1


def parse_settings(pairs: list[str]) -> dict:
    """Parse ``KEY=VALUE`` strings; values are read as JSON when possible (numbers, lists)."""
    settings = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            settings[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            settings[key.strip()] = value
    if isinstance(settings.get("milestones"), list):
        settings["milestones"] = tuple(settings["milestones"])
    return settings


if __name__ == "__main__":
    sys.exit(main())
