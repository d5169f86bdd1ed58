"""The public surface of watchdog.stats, and that the core works without scipy."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import watchdog.stats
from watchdog.stats import Counts, ks_buckets, mann_whitney_buckets, proportion_test, psi, sprt_result, sprt_start


def test_public_surface_is_exactly_this():
    assert sorted(watchdog.stats.__all__) == [
        "Counts", "Decision", "SprtState", "StatResult", "align_buckets", "bucket_counts", "counter_delta",
        "cumulative_at", "cumulative_buckets", "histogram_delta", "ks_buckets", "ks_samples",
        "mann_whitney_buckets", "mann_whitney_samples", "newcombe_interval", "proportion_test", "psi",
        "psi_buckets", "scipy_available", "sprt_result", "sprt_start", "sprt_update",
    ]
    for name in watchdog.stats.__all__:
        assert hasattr(watchdog.stats, name), name


def test_core_works_without_scipy_and_names_the_extra():
    # A fresh interpreter where `import scipy` fails, as on an install without the [stats] extra.
    script = textwrap.dedent("""
        import sys
        sys.modules["scipy"] = None
        import watchdog.stats as s
        assert not s.scipy_available()
        h = {"0.1": 30, "0.5": 80, "+Inf": 100}
        assert s.proportion_test(s.Counts(60, 2000), s.Counts(30, 2000)).verdict == "breach"
        assert s.psi_buckets(h, h).verdict == "ok" and s.ks_buckets(h, h).verdict == "ok"
        assert s.mann_whitney_buckets(h, h).verdict == "ok"
        state, _ = s.sprt_update(s.sprt_start(s.Counts(20, 1000), min_effect=0.5), s.Counts(1, 100))
        try:
            s.mann_whitney_samples([1.0] * 30, [2.0] * 30)
        except ImportError as exc:
            assert "pip install 'model-watchdog[stats]'" in str(exc), exc
        else:
            raise AssertionError("expected ImportError")
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_importing_the_package_does_not_import_scipy():
    script = "import sys, watchdog.stats; print('scipy' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.strip() == "False", done.stderr


def test_every_result_is_json_for_the_audit_history():
    hist = {"0.1": 30, "0.5": 80, "+Inf": 100}
    results = [
        proportion_test(Counts(8, 500), Counts(0, 500)),
        proportion_test(Counts(1, 5), Counts(0, 5)),
        mann_whitney_buckets(hist, {"0.1": 10, "0.5": 60, "+Inf": 100}),
        psi({"a": 0, "b": 200}, {"a": 100, "b": 100}),
        ks_buckets(hist, {"0.2": 1, "+Inf": 100}),
        sprt_result(sprt_start(Counts(0, 10), min_effect=0.2)),
    ]
    for result in results:
        data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
        assert data["verdict"] in ("breach", "ok", "inconclusive") and data["reason"]
