"""Progress reporting, the plain progress lines, history records and the history page, without a cluster."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from tests.unit.fakes import ManualClock
from tfnode import progress
from yarn_app import history, history_page, live
from yarn_app.job_view import Progress, TaskView


def test_reports_are_rate_limited_but_epoch_ends_and_phases_always_go_out(caplog):
    sent, clock = [], ManualClock()
    r = progress.Reporter(sent.append, every_s=2.0, clock=clock)
    r.report(phase="training", epochs=3)
    r.report(epoch=1)
    for step in range(1, 6):
        clock.now += 0.1
        r.report(step=step, loss=1.0 / step)
    assert len(sent) == 2  # the phase and the epoch change; steps inside 2 s are not sent
    clock.now += 2.0
    r.report(step=30, loss=0.1)
    assert sent[-1]["step"] == 30 and sent[-1]["metrics"]["loss"] == 0.1 and sent[-1]["steps_per_s"] > 0
    with caplog.at_level(logging.WARNING):
        r.report(epoch=1, epoch_end=True, loss=0.09, accuracy=0.8, note="not a number")
        r.report(note="again")
    assert sent[-1]["history"] == [{"epoch": 1, "loss": 0.09, "accuracy": 0.8}]
    assert "note" not in sent[-1]["metrics"]
    assert len([m for m in caplog.messages if "'note'" in m]) == 1  # one warning per metric name
    assert progress.describe(sent[-1]).startswith("training epoch 1/3 step 30 loss 0.09 accuracy 0.8")


def test_a_failing_sink_never_fails_training():
    def broken(snapshot):
        raise OSError("disk full")

    progress.Reporter(broken).report(phase="training", force=True)  # no exception


def test_numpy_counts_and_odd_epochs_never_fail_this_report_or_the_next(caplog):
    """The defect: ctx.report(step=np.int64(5)) raised TypeError (not JSON serializable) in the user's job, and the
    value stayed in the state, so every later report (Keras's callback's too) raised it again."""
    import json

    import numpy as np

    sent = []
    r = progress.Reporter(sent.append, every_s=0.0)
    r.report(epoch=np.int64(1), step=np.int64(5), epochs=np.int32(3), loss=np.float32(0.5), acc=np.int64(1))
    assert (sent[-1]["epoch"], sent[-1]["step"], sent[-1]["epochs"]) == (1, 5, 3)
    assert sent[-1]["metrics"] == {"loss": 0.5, "acc": 1.0}
    r.report(epoch=float("nan"), step="7", loss=float("nan"))
    r.report(loss=0.25)
    assert sent[-1]["epoch"] == 1 and sent[-1]["step"] == 5 and sent[-1]["metrics"]["loss"] == 0.25
    assert all(json.loads(json.dumps(s, allow_nan=False)) == s for s in sent)  # valid JSON for `status --json`
    assert sum("not a whole number" in m for m in caplog.messages) == 2


def test_file_sink_is_read_back_whole(tmp_path):
    sink = progress.FileSink(tmp_path / "p.json")
    sink({"phase": "training", "seq": 1})
    assert progress.read_snapshot(tmp_path / "p.json") == {"phase": "training", "seq": 1}
    assert progress.read_snapshot(tmp_path / "missing.json") is None


def _prog(**tasks) -> Progress:
    return Progress("application_1_0001", "RUNNING", "UNDEFINED", "http://rm/proxy/application_1_0001/",
                    tasks={n: TaskView(n, state=s, container=f"c-{n}", progress=p) for n, (s, p) in tasks.items()})


def test_plain_view_prints_on_change_and_then_at_most_every_interval():
    lines, clock = [], ManualClock()
    view = live.PlainView(lines.append, every_s=30, clock=clock)
    snap = {"phase": "training", "epoch": 1, "epochs": 2, "step": 3, "metrics": {"loss": 0.5}, "seq": 1}
    view.update(_prog(**{"chief:0": ("running", snap)}), 5)
    view.update(_prog(**{"chief:0": ("running", dict(snap, step=4, seq=2))}), 6)
    assert len(lines) == 1 and "chief:0      training   epoch 1/2 step 3 loss 0.5" in lines[0]
    clock.now = 31
    view.update(_prog(**{"chief:0": ("running", dict(snap, step=9, seq=3))}), 36)
    view.update(_prog(**{"chief:0": ("running", dict(snap, epoch=2, seq=4))}), 37)
    assert len(lines) == 3 and "step 9" in lines[1] and "epoch 2/2" in lines[2]
    assert live.task_phase(TaskView("w", state="waiting")) == "barrier"


def test_the_terminal_view_shows_metric_names_as_text_not_rich_markup(capsys):
    """`val[/x]` raised rich's MarkupError and ended `tfoy submit` on a terminal (exit 1)."""
    view = live.TerminalView()
    snap = {"phase": "training", "epoch": 1, "epochs": 2, "metrics": {"val[/x]": 0.5, "[bold]acc": 0.9}, "seq": 1}
    view.update(_prog(**{"chief:0": ("running", snap)}), 5)
    view.close()
    out = capsys.readouterr().out
    assert "val[/x] 0.5" in out and "[bold]acc 0.9" in out


def test_a_record_names_outcomes_attempts_and_the_first_traceback_and_hides_secrets():
    from yarn_app.spec import JobSpec

    spec = JobSpec.from_dict({"entry_point": "m:f", "roles": {"worker": {"instances": 1}},
                              "env": {"TOKEN": "s3cret", "MODE": "x"}, "security": {"secret_env": ["TOKEN"]}})
    record = history.JobRecord.for_spec("application_1_0002", spec, "alice")
    prog = _prog(**{"worker:0": ("running", {"phase": "training", "metrics": {"loss": 0.3},
                                             "history": [{"epoch": 1, "loss": 0.3}], "seq": 1})})
    record.observe(prog)
    prog.tasks["worker:0"].outcome = "failed\nTraceback ...\nValueError: boom"
    prog.failed_containers = {"c-2": ("worker:0", "exit 1")}
    record.observe(prog)
    done = record.finish("FINISHED", "FAILED", 1, "one task failed")
    assert done["tasks"]["worker:0"]["outcome"] == "failed" and done["tasks"]["worker:0"]["attempts"] == 2
    assert done["traceback"].endswith("ValueError: boom") and done["spec"]["env"] == {"TOKEN": "(secret)", "MODE": "x"}
    assert "s3cret" not in json.dumps(done)
    page = history_page.job_page(done).decode()
    assert "ValueError: boom" in page and "<svg" in page and "tfoy logs application_1_0002" in page
    index = history_page.jobs_page([done], ["hdfs://x/bad.json: skipped"], "hdfs://x").decode()
    assert "application_1_0002" in index and "bad.json: skipped" in index


def test_the_history_page_escapes_every_field_and_answers_a_failure_with_a_page(tmp_path):
    """`--user U` serves another user's folder, whose files that user writes: attempts went into the page raw."""
    import urllib.error
    import urllib.request

    evil = "<script>alert('x')</script>"
    record = {"app_id": "application_1_0007", "state": "FINISHED", "final_status": "FAILED", "name": evil,
              "tasks": {"worker:0": {"outcome": evil, "attempts": 1, "last_progress": evil, "metrics": {evil: 1.0},
                                     "epochs": [{"epoch": 0, evil: 0.5}, {"epoch": 1, evil: 0.25}]}},
              "traceback": evil, "diagnostics": evil, "how": evil, "logs": evil}
    page = history_page.job_page(history.parse(json.dumps(record).encode(), "r.json")).decode()
    assert "<script>" not in page and page.count("&lt;script&gt;") >= 8
    record["tasks"]["worker:0"]["attempts"] = evil  # written by hand: refused by parse, a 500 page served
    (tmp_path / "application_1_0007.json").write_text(json.dumps(record))
    server = history_page.make_server(f"file://{tmp_path}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/job/application_1_0007", timeout=10)
        body = answer.value.read().decode()
        assert answer.value.code == 500 and "tasks.worker:0.attempts" in body and "<script>" not in body
    finally:
        server.shutdown()
        server.server_close()


def test_history_listing_skips_a_corrupt_file_naming_it(tmp_path):
    folder = f"file://{tmp_path}"
    ok = {"app_id": "application_1_0003", "ended": 5.0, "state": "FINISHED", "final_status": "SUCCEEDED"}
    assert history.write(ok, folder) == f"{folder}/application_1_0003.json"
    (tmp_path / "application_1_0004.json").write_text("{not json")
    records, problems = history.list_records(folder)
    assert [r["app_id"] for r in records] == ["application_1_0003"]
    assert problems == [f"skipped {folder}/application_1_0004.json: not a tfoy history record (not JSON: Expecting "
                        "property name enclosed in double quotes: line 1 column 2 (char 1))"]
    assert history.list_records(f"file://{tmp_path}/none") == ([], [])
    assert history.parse_since("2h") > 0


def test_an_unwritable_history_folder_is_named_and_nothing_raises(tmp_path, caplog):
    (tmp_path / "file").write_text("x")
    with caplog.at_level(logging.WARNING):
        assert history.write({"app_id": "application_1_0005"}, f"file://{tmp_path}/file/history") is None
    assert f"{tmp_path}/file/history is not writable" in caplog.text
