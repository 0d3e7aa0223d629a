"""The example data the rule fixtures use is what its generators write: running each
`examples/rules/make_*.py` again gives the shipped files byte for byte."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "examples" / "rules"
GENERATORS = sorted(RULES.glob("make_*.py"))
DATA = sorted(p for p in RULES.iterdir() if p.suffix in {".csv", ".gz", ".log"} and p.is_file())
# Written before the generators were kept in the repository: no generator to run again.
WITHOUT_GENERATOR = {"scraper-slow-hoarder-office.csv"}


def test_every_generated_file_is_written_again_the_same(tmp_path):
    rules = tmp_path / "examples" / "rules"
    rules.mkdir(parents=True)
    for generator in GENERATORS:
        shutil.copy(generator, rules)
    for generator in GENERATORS:  # each writes under examples/rules of the working directory
        subprocess.run(
            [sys.executable, str(rules / generator.name)],
            cwd=tmp_path,
            check=True,
            capture_output=True,
        )
    written = {p.name for p in rules.iterdir() if p.suffix in {".csv", ".gz", ".log"}}
    shipped_names = {p.name for p in DATA}
    assert written == shipped_names - WITHOUT_GENERATOR, "a data file and its generator differ"
    for shipped in (p for p in DATA if p.name in written):
        assert (rules / shipped.name).read_bytes() == shipped.read_bytes(), shipped.name


@pytest.mark.parametrize("generator", GENERATORS, ids=lambda p: p.name)
def test_generators_name_what_they_write(generator):
    assert '"""' in generator.read_text().split("\n", 1)[0], "a docstring saying what it writes"
