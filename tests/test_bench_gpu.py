"""bench/gpu.py: refuses clearly without a GPU, and its CPU-safe parts run in a dry run.

Example:
    PYTHONPATH=. pytest tests/test_bench_gpu.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu.py"


def run_script(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_refuses_without_a_gpu_in_one_sentence():
    done = run_script()
    assert done.returncode == 2
    message = done.stderr.strip()
    assert message.startswith("bench/gpu.py needs a CUDA GPU") and "--dry-run" in message
    assert "Traceback" not in message and len(message.splitlines()) == 1
    assert not done.stdout.strip()


def test_main_refuses_when_cuda_is_unavailable(monkeypatch, capsys):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import gpu
    finally:
        sys.path.remove(str(ROOT / "bench"))
    monkeypatch.setattr(gpu.torch.cuda, "is_available", lambda: False)
    assert gpu.main([]) == 2
    assert capsys.readouterr().err.strip() == gpu.NO_GPU


def test_dry_run_runs_every_part_on_the_cpu_and_writes_only_where_asked(tmp_path):
    docs_before = (ROOT / "docs" / "gpu.md").read_text() if (ROOT / "docs" / "gpu.md").exists() else None
    out = tmp_path / "gpu.md"
    started = time.perf_counter()
    done = run_script("--dry-run", "--out", str(out))
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    assert seconds < 150  # the parts' budgets add up to under two minutes on the CPU
    report = out.read_text()
    assert report.startswith("# robustviz GPU check: dry run on the CPU")
    for heading in ("## 1. Every recipe's training step", "## 2. The `lab` profile", "## 3. PGD-10 throughput",
                    "## 4. AutoAttack-fast"):
        assert heading in report
    rows = [line for line in report.splitlines() if line.startswith("| ce | ")]
    assert {row.split(" | ")[3] for row in rows} == {"bf16", "fp16"}  # both precisions of the first recipe ran
    assert "| NO |" not in report  # every step that ran had a finite loss
    assert "failed" not in report.lower()
    if docs_before is not None:  # a dry run leaves docs/gpu.md alone
        assert (ROOT / "docs" / "gpu.md").read_text() == docs_before
