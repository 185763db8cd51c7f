"""What is built on the pipeline: the command line, the run cache, comparisons, the demo, the
environment check and the notebooks' claims.

The pipeline itself is the rest of the package, in the order data flows through it:
``data`` -> ``models`` -> ``methods`` (with ``train``) -> ``attacks`` -> ``evaluate`` -> ``viz``.

| module | what it does |
|---|---|
| ``cli`` | ``robustviz train / evaluate / compare / demo / doctor`` |
| ``runs`` | the run cache (one folder per run) and the notebooks' ``Course`` |
| ``compare`` | every recipe trained, evaluated and tabled side by side |
| ``demo`` | ``make demo``: two recipes in two minutes on a CPU |
| ``doctor`` | what this machine can run |
| ``claims`` | ``expect``: a notebook's statement checked against its measured number |
"""
