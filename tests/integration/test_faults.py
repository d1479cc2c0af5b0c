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


# the other rows (worker, chief, double kill, evaluator, tensorboard, client, namenode, nodemanager, spark-inference)
# run in the benchmark only, to keep the suite within its time: kill -9 and resume of a task is also
# test_yarn_jobs.py's test_kill_9_restarts_the_task_and_training_resumes, YARN's recovery the resourcemanager row
@pytest.mark.parametrize("row", ["am", "ps", "datanode", "resourcemanager", "spark-train"])
def test_fault_is_survived_with_nothing_lost_or_left(bench, row):
    result = faults.ROWS[row](bench)
    assert result.survived and result.lost == 0 and result.orphans == 0, result
