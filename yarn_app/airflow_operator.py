"""An Airflow operator for tfoy jobs: submit a job spec to YARN, wait, fail the Airflow task when the job fails.

    from yarn_app.airflow_operator import TfoySubmitOperator
    train = TfoySubmitOperator(task_id="train", spec="/opt/jobs/mnist_train.yaml",
                               overrides={"args": "[--data,mnist/tfr,--epochs,5]"})

Retries are safe: every submission of one task in one DAG run carries the same tag, so a retry whose earlier
attempt's application is still running re-attaches to it instead of starting a second copy. Stopping the Airflow
task kills the application. On a Kerberized cluster the worker's ticket cache is used, or `principal` + `keytab`
(a keytab on the Airflow worker). Airflow is imported only here; tfoy itself never depends on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from airflow.exceptions import AirflowException
from airflow.sdk import BaseOperator


def run_tag(dag_id: str, task_id: str, run_id: str) -> str:
    """A YARN-safe tag (lowercase, short, no commas) that is the same for every try of one task in one run."""
    digest = hashlib.sha1(f"{dag_id}\0{task_id}\0{run_id}".encode()).hexdigest()[:16]
    return f"airflow-{digest}"


class TfoySubmitOperator(BaseOperator):
    template_fields = ("spec", "overrides", "name", "queue", "principal", "keytab")

    def __init__(self, *, spec: str, overrides: Mapping[str, str] | None = None, name: str | None = None,
                 queue: str | None = None, principal: str | None = None, keytab: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.principal = principal
        self.keytab = keytab
        self.spec = spec
        self.overrides = dict(overrides or {})
        self.name = name
        self.queue = queue
        self.app_id: str | None = None

    def execute(self, context: Any) -> str:
        from hdfs_io.kerberos import KerberosError
        from yarn_app import client
        from yarn_app.errors import EXIT_OK
        from yarn_app.spec import SpecError, load_spec

        ti = context["ti"]
        tag = run_tag(ti.dag_id, ti.task_id, ti.run_id)
        try:
            job = load_spec(self.spec, name=self.name, queue=self.queue,
                            sets=[f"{k}={v}" for k, v in self.overrides.items()])
            job.security.principal = self.principal or job.security.principal
            job.security.keytab = self.keytab or job.security.keytab
            job.security.validate()
        except (SpecError, OSError) as exc:
            raise AirflowException(f"tfoy job spec {self.spec}: {exc}") from exc

        def remember(app_id: str) -> None:
            self.app_id = app_id

        try:
            code = client.submit(job, reattach_tag=tag, out=self.log.info, on_app_id=remember)
        except KerberosError as exc:  # no ticket, a wrong keytab: retrying will not help
            raise AirflowException(f"tfoy job {job.name}: {exc}") from exc
        if code != EXIT_OK:
            raise AirflowException(f"tfoy job {job.name} ({self.app_id or 'not submitted'}) failed with exit {code}; "
                                   f"the failing task's traceback is in this log, full logs: tfoy logs {self.app_id}")
        return self.app_id or ""

    def on_kill(self) -> None:
        if self.app_id:
            from yarn_app import client

            client.kill(self.app_id)
            self.log.info("killed %s", self.app_id)
