"""The embedded detector's modules a compiled job ships beside job.py (`job_dir.SHIPPED`) run on
task managers that have no ecomwatch installed: each imports with the package unavailable (the
job's own operator, which needs PyFlink, runs in the mini-cluster tests)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import ecomwatch
from ecomwatch.flink.job_dir import SHIPPED

PACKAGE = Path(ecomwatch.__file__).parent


def test_each_shipped_module_imports_without_the_ecomwatch_package(tmp_path: Path):
    for module in SHIPPED:
        shutil.copy(PACKAGE / module, tmp_path)
    names = [Path(module).stem for module in SHIPPED if module.startswith("detect/")]
    assert "product_popularity" in names
    # `sys.modules['ecomwatch'] = None` makes any `import ecomwatch…` fail, as on a cluster.
    code = (
        "import sys; sys.modules['ecomwatch'] = None; "
        f"sys.path.insert(0, {str(tmp_path)!r}); " + "; ".join(f"import {name}" for name in names)
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
