"""The rows of benchmarks/faults.py that CI runs as tests (each a real fault in a real job on the embedded
cluster): must be survived, with nothing lost and nothing left behind. The full table is the benchmark's."""

from __future__ import annotations

import pytest

from benchmarks import faults

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bench(hadoop_conf):
    b = faults.Bench()
    yield b
    faults.fs.delete(faults.absolute_uri(b.base), recursive=True)
    b.skein.close()


# the other rows (worker, double kill, evaluator, tensorboard, client, namenode, spark-inference) run in the benchmark
# only, to keep the suite within its time: the kill-and-resume path they share is tested by chief and ps here
@pytest.mark.parametrize("row", ["am", "chief", "ps", "datanode", "nodemanager", "resourcemanager", "spark-train"])
def test_fault_is_survived_with_nothing_lost_or_left(bench, row):
    result = faults.ROWS[row](bench)
    assert result.survived and result.lost == 0 and result.orphans == 0, result
