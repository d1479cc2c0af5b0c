"""The examples refuse counts that would train nothing, never end, or divide by zero, in the parser (exit 2, the
option named), before any data is read or a model version exported."""

from __future__ import annotations

import pytest

from examples import toy_train
from examples.mnist import mnist_data_setup, mnist_inference, mnist_spark, mnist_train


@pytest.mark.parametrize("parse, argv, message", [
    # --epochs 0 exported an untrained model as a new version; --train-records 0 made an endless first epoch
    (mnist_train.parse_args, ["--data", "d", "--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
    (mnist_train.parse_args, ["--data", "d", "--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
    (mnist_train.parse_args, ["--data", "d", "--train-records", "0"], "argument --train-records: must be >= 1"),
    (mnist_train.parse_args, ["--data", "d", "--epochs", "x"], "argument --epochs: not a whole number: 'x'"),
    (mnist_inference.parse_args, ["--data", "d", "--model", "m", "--output", "o", "--batch-size", "-1"],
     "argument --batch-size: must be >= 1, got -1"),
    (mnist_data_setup.parse_args, ["--output", "o", "--limit", "-5"], "argument --limit: must be >= 0, got -5"),
    (mnist_data_setup.parse_args, ["--output", "o", "--num-partitions", "0"],
     "argument --num-partitions/--num_partitions: must be >= 1"),
    (mnist_spark.parse_args, ["--images", "i", "--model", "m", "--batch_size", "0"], "argument --batch_size: must"),
    (toy_train._parse_args, ["--data", "d", "--steps", "0"], "--steps must be >= 1, got 0"),
])
def test_counts_below_their_minimum_exit_2_naming_the_option(capsys, parse, argv, message):
    with pytest.raises(SystemExit) as exited:
        parse(argv)
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_inference_drops_parts_of_an_earlier_wider_run(tmp_path):
    """Three workers wrote part-00000..2 last time; two this time: part-00002 would be counted as this run's."""
    out = tmp_path / "predictions"
    out.mkdir()
    for i, lines in enumerate(["1 1\n2 2\n", "3 3\n", "4 0\n5 0\n6 0\n"]):
        (out / f"part-{i:05d}").write_text(lines)
    (out / "part-notes").write_text("kept: not a numbered part\n")
    (out / "_SUCCESS").write_text("")
    assert mnist_inference.accuracy(f"file://{out}") == (0.5, 6)
    dropped = mnist_inference.drop_wider_runs(f"file://{out}", 2)
    assert dropped == [f"file://{out}/part-00002"]
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "part-00000", "part-00001", "part-notes"]
