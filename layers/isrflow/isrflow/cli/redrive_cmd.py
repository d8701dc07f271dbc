"""``isrflow registry redrive``: dead-lettered registry messages back to the registry queue."""

from __future__ import annotations

import click

from isrflow.cli.options import count, subgroup


def register(group: click.Group) -> None:
    """Add ``registry redrive`` to the ``isrflow`` group."""
    registry = subgroup(group, "registry", "Registry maintenance commands.")

    @registry.command("redrive")
    @click.option(
        "--repo",
        "repo_dir",
        type=click.Path(file_okay=False),
        help="repository whose local queue to redrive (the local runtime's queue.sqlite3)",
    )
    @click.option("--aws", "on_aws", is_flag=True, help="redrive the deployed stack's SQS dead-letter queue")
    @click.option("--stack", help="the deployed stack's name (with --aws)")
    @click.option("--region", help="AWS region of the stack (with --aws; default: the AWS configuration's)")
    @click.option("--limit", type=count(1), help="move at most this many messages")
    def redrive_cmd(
        repo_dir: str | None, on_aws: bool, stack: str | None, region: str | None, limit: int | None
    ) -> None:
        """Move dead-lettered registry messages back to the registry queue, where the writer
        applies them (idempotently: a message applied before changes nothing)."""
        from isrflow.infra.redrive import RedriveError, redrive_local, redrive_stack

        if on_aws == bool(repo_dir):
            raise RedriveError("give either --repo DIR (local queue) or --aws --stack NAME (SQS), not both")
        if on_aws and not stack:
            raise RedriveError("--aws needs --stack NAME")
        if on_aws:
            result = redrive_stack(stack, region=region, limit=limit)  # type: ignore[arg-type]
        else:
            result = redrive_local(repo_dir, limit=limit)  # type: ignore[arg-type]
        left = f"; {result.left} left there" if result.left else ""
        click.echo(f"redrove {result.moved} message(s) from {result.source} to {result.target}{left}")
