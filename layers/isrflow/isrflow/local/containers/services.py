"""The AWS side of container runs: moto in server mode with the stack's resources, on this machine.

Containers started by ``sam local`` sit on the engine's default bridge (SAM CLI creates them
there even with ``--docker-network host``), so they reach this machine at the bridge's gateway
address (docker0, e.g. 172.17.0.1): moto listens there, and the PostgreSQL registry, which
listens on 127.0.0.1 only, is reached through a :class:`TcpForwarder` there. Nothing leaves the
machine. One :class:`LocalAwsStack` holds the data bucket, the registry queue and its
dead-letter queue, and a Secrets Manager secret with the registry's credentials, named as a
deployed stack in account 123456789012 would name them in the sample events (events/names.json).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EVENT_NAMES_FILE = Path(__file__).resolve().parents[5] / "events" / "names.json"
DEFAULT_NAMES = {
    "region": "us-east-1",
    "account": "123456789012",
    "bucket": "isrflow-data-123456789012",
    "registry_queue": "isrflow-registry",
    "registry_dlq": "isrflow-registry-dlq",
    "registry_secret": "isrflow-registry-credentials",
}
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def event_names() -> dict[str, str]:
    """The AWS names the sample events use: events/names.json (in a checkout), else the defaults."""
    if EVENT_NAMES_FILE.exists():
        return {**DEFAULT_NAMES, **json.loads(EVENT_NAMES_FILE.read_text())}
    return dict(DEFAULT_NAMES)


def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral TCP port on ``host`` that was free a moment ago."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def bridge_gateway() -> str:
    """This machine's address on the Docker engine's default bridge (where containers find it)."""
    out = subprocess.run(["docker", "network", "inspect", "bridge"], capture_output=True, text=True)
    if out.returncode == 0:
        for cfg in json.loads(out.stdout)[0].get("IPAM", {}).get("Config") or []:
            if cfg.get("Gateway"):
                return cfg["Gateway"].split("/")[0]
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "docker0"], capture_output=True, text=True)
    for word in out.stdout.split():
        if word.count(".") == 3 and "/" in word:
            return word.split("/")[0]
    from isrflow.local.containers.engine import ContainerEngineError

    raise ContainerEngineError("cannot find the Docker bridge's gateway address (docker0)")


class TcpForwarder:
    """Accepts on ``listen`` and relays each connection to ``target`` (both on this machine)."""

    def __init__(self, listen_host: str, target: tuple[str, int]):
        self.target = target
        self.sock = socket.create_server((listen_host, 0))
        self.address = self.sock.getsockname()[:2]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True, name="tcp-forwarder").start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


@dataclass
class LocalAwsStack:
    """moto server + the stack's resources; :meth:`function_env` is what every function gets."""

    registry_url: str
    names: dict[str, str] = field(default_factory=event_names)
    host: str = ""
    port: int = 0
    server: Any = None
    forwarder: TcpForwarder | None = None
    queue_url: str = ""
    dlq_url: str = ""
    secret_arn: str = ""

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def bucket(self) -> str:
        return self.names["bucket"]

    @property
    def datastore_root(self) -> str:
        return f"s3://{self.bucket}"

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=self.names["region"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def start(self) -> LocalAwsStack:
        from moto.server import ThreadedMotoServer
        from sqlalchemy.engine import make_url

        self.host = self.host or bridge_gateway()
        self.port = self.port or free_port(self.host)
        os.environ.setdefault("MOTO_PORT", str(self.port))
        self.server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        self.server.start()
        import urllib.request

        # moto's backends live in this process and outlive a server: start from an empty account
        urllib.request.urlopen(
            urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST"), timeout=30
        )
        self.client("s3").create_bucket(Bucket=self.bucket)
        sqs = self.client("sqs")
        self.dlq_url = sqs.create_queue(QueueName=self.names["registry_dlq"])["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self.queue_url = sqs.create_queue(
            QueueName=self.names["registry_queue"],
            Attributes={
                "VisibilityTimeout": "900",
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
            },
        )["QueueUrl"]
        url = make_url(self.registry_url)
        self.forwarder = TcpForwarder(self.host, (url.host or "127.0.0.1", url.port or 5432))
        self.secret_arn = self.client("secretsmanager").create_secret(
            Name=self.names["registry_secret"],
            SecretString=json.dumps(
                {"username": url.username or "postgres", "password": url.password or "unused"}
            ),
        )["ARN"]
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.forwarder is not None:
            self.forwarder.close()
            self.forwarder = None

    def __enter__(self) -> LocalAwsStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def function_env(self) -> dict[str, str]:
        """Environment of every function (template-declared names only: sam local drops others)."""
        from sqlalchemy.engine import make_url

        assert self.forwarder is not None, "start() the stack first"
        host, port = self.forwarder.address
        url = make_url(self.registry_url).set(username=None, password=None, host=host, port=port)
        return {
            "ISRFLOW_AWS_ENDPOINT_URL": self.endpoint,
            "ISRFLOW_DATASTORE_ROOT": self.datastore_root,
            "ISRFLOW_REGISTRY_QUEUE_URL": self.queue_url,
            "ISRFLOW_REGISTRY_SECRET_ARN": self.secret_arn,
            "ISRFLOW_REGISTRY_URL": url.render_as_string(hide_password=False),
        }
