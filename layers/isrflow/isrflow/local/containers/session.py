"""One containers session: moto server, ``sam local start-lambda`` and the runtime's hooks into them.

``LocalRuntime(repo, containers=session)`` then runs the template's state machines with every
Task invoking the built images through the Lambda Invoke API on 127.0.0.1, the registry queue
on moto's SQS (drained by the writer's container), data in moto's S3 and the registry in
PostgreSQL. The repository it runs against must name that registry and ``s3://<bucket>`` as
its datastore (:func:`create_containers_repo`). The Fargate combine task (rare at demo sizes)
still runs as a host subprocess, with the same environment as the functions.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from isrflow.infra.aws_clients import ENV_AWS_ENDPOINT_URL
from isrflow.local.containers.invoke_api import InvokeApiLambdas, SqsEventSource
from isrflow.local.containers.sam import LambdaEndpoint, SamProject
from isrflow.local.containers.services import LocalAwsStack, free_port


class ContainerSession:
    """Started with :meth:`start`; :meth:`close` stops start-lambda and moto."""

    def __init__(self, project: SamProject, registry_url: str, log: Callable[[str], None] = print):
        self.project, self.registry_url, self.log = project, registry_url, log
        self.stack = LocalAwsStack(registry_url)
        self.endpoint: LambdaEndpoint | None = None
        self._tmp = Path(tempfile.mkdtemp(prefix="isrflow-containers-"))
        self._saved_env: dict[str, str | None] = {}

    def start(self) -> ContainerSession:
        self.stack.start()
        # this process (ItemReader/ResultWriter, the CLI's own reads) talks to moto too
        for key, value in {
            ENV_AWS_ENDPOINT_URL: self.stack.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": self.stack.names["region"],
        }.items():
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        env_file = self.project.env_vars_file(self._tmp, self.stack.function_env())
        log_path = self._tmp / "start-lambda.log"
        self.log(f"sam local start-lambda (log: {log_path}) ...")
        self.endpoint = self.project.start_lambda(env_file, free_port(), log_path)
        return self

    def function_env(self) -> dict[str, str]:
        return self.stack.function_env()

    def lambdas(self, app: Any) -> InvokeApiLambdas:
        assert self.endpoint is not None, "start() the session first"
        return InvokeApiLambdas(
            self.endpoint.url,
            {f.name: f.logical_id for f in app.functions.values()},
            region=self.stack.names["region"],
        )

    def event_source(self, invoke: Callable[[dict], Any], mapping: Any) -> SqsEventSource:
        sqs = self.stack.client("sqs")
        arn = sqs.get_queue_attributes(QueueUrl=self.stack.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        return SqsEventSource(
            sqs,
            self.stack.queue_url,
            arn,
            invoke,
            batch_size=mapping.batch_size,
            window_s=float(mapping.batching_window_s),
            report_batch_item_failures=mapping.report_batch_item_failures,
        )

    def reports(self) -> list[dict]:
        """What the stand-in runtime measured in every container so far."""
        return self.endpoint.reports() if self.endpoint is not None else []

    def close(self) -> None:
        if self.endpoint is not None:
            self.endpoint.stop()
            self.endpoint = None
        self.stack.stop()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def __enter__(self) -> ContainerSession:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def create_containers_repo(directory: Path, registry_url: str, bucket: str):
    """A repository whose registry is ``registry_url`` and whose datastore is ``s3://bucket``."""
    from isrflow.registry import create_repo

    return create_repo(directory, registry_url=registry_url, datastore=f"s3://{bucket}")
