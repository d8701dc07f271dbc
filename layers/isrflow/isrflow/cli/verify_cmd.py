"""``isrflow registry verify``: every registered checksum matches its file (see :mod:`isrflow.registry.verify`)."""

from __future__ import annotations

import json
import sys

import click

from isrflow.cli.options import json_option, subgroup


def register(group: click.Group) -> None:
    """Add ``registry verify`` to the ``isrflow`` group."""
    registry = subgroup(group, "registry", "Registry maintenance commands.")

    @registry.command("verify")
    @click.option(
        "--repo",
        "repo_dir",
        required=True,
        type=click.Path(file_okay=False),
        help="Repository directory (holds isrflow-repo.yaml).",
    )
    @click.option(
        "--collection",
        "collections",
        multiple=True,
        help="Collection to check (repeat for several; default: every RUN, and a scan of the datastore).",
    )
    @click.option("--type", "dataset_type", default=None, help="Only this dataset type.")
    @click.option(
        "--where", default=None, help="Data query, e.g. \"instrument = 'HSC' AND exposure = 904010\"."
    )
    @click.option("--strict", is_flag=True, help="also fail on unregistered and temporary files")
    @json_option
    def verify_cmd(
        repo_dir: str,
        collections: tuple[str, ...],
        dataset_type: str | None,
        where: str | None,
        strict: bool,
        as_json: bool,
    ) -> None:
        """Check that every registered dataset's file exists with its registered size and sha256, and
        list files no dataset points at and temporary files left by interrupted writes. Exit 1 on
        any missing, mismatched or shared file (with --strict, on any finding)."""
        from isrflow.registry import open_repo
        from isrflow.registry.verify import verify_registry

        registry = open_repo(repo_dir)
        try:
            report = verify_registry(registry, list(collections) or None, where, dataset_type=dataset_type)
        finally:
            registry.close()
        counts = report.counts()
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "checked": report.checked,
                        "bytes_read": report.bytes_read,
                        "counts": counts,
                        "ok": report.ok(strict),
                        "problems": [
                            {
                                "kind": p.kind,
                                "uri": p.uri,
                                "detail": p.detail,
                                "dataset": str(p.dataset.id) if p.dataset else None,
                            }
                            for p in report.problems
                        ],
                    },
                    indent=1,
                )
            )
        else:
            for problem in report.problems:
                click.echo(problem.line())
            found = ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "no problems"
            click.echo(f"verified {report.checked} datasets ({report.bytes_read / 1e6:.1f} MB read): {found}")
        if not report.ok(strict):
            sys.exit(1)
