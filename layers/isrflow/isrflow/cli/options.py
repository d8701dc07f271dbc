"""Option types shared by every command, so each interface is spelled once."""

from __future__ import annotations

import click

from isrflow.camera import CAMERA_NAMES


def parse_id_list(text: str) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7] (inclusive ranges, order kept, duplicates dropped)."""
    ids: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else (part, part)
                a, b = int(lo), int(hi)
                if b < a:
                    raise ValueError
                ids.extend(range(a, b + 1))
            else:
                ids.append(int(part))
        except ValueError:
            raise click.BadParameter(f"{part!r} is not an id or an a-b range (e.g. 0-3,7)") from None
    return list(dict.fromkeys(ids))  # first occurrence of each, in order


class IdList(click.ParamType):
    name = "IDS"

    def convert(self, value, param, ctx):
        return value if isinstance(value, list) else parse_id_list(value)


camera_option = click.option(
    "--camera",
    type=click.Choice(CAMERA_NAMES, case_sensitive=False),
    help="camera model (default: from the headers)",
)
detectors_option = click.option("--detectors", type=IdList(), help="native detector ids, e.g. 0-3,7")
json_option = click.option("--json", "as_json", is_flag=True, help="print machine-readable JSON")

#: Upper bounds of counts given on the command line: far above any real use, low enough that a
#: typo cannot overflow a database integer or start a run of 10^20 frames.
MAX_WORKERS = 1024
MAX_FRAMES = 1000
MAX_COUNT = 1_000_000


class FiniteFloatRange(click.FloatRange):
    """A FloatRange that also refuses nan and +-inf (which pass every range comparison)."""

    def convert(self, value, param, ctx):
        import math

        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def frames(minimum: int = 0) -> click.IntRange:
    """A number of frames or exposures to make (0 or 1 .. MAX_FRAMES)."""
    return click.IntRange(minimum, MAX_FRAMES)


def count(minimum: int = 1) -> click.IntRange:
    """Any other count (visits, messages, invocations): ``minimum`` .. MAX_COUNT."""
    return click.IntRange(minimum, MAX_COUNT)


workers_option = click.option(
    "--workers",
    type=click.IntRange(1, MAX_WORKERS),
    default=None,
    help="local worker processes (default: all cores)",
)


def subgroup(group: click.Group, name: str, help: str) -> click.Group:
    """The named subgroup of ``group`` (another command module may have made it), created if needed."""
    existing = group.commands.get(name)
    if isinstance(existing, click.Group):
        return existing
    sub = click.Group(name=name, help=help)
    group.add_command(sub)
    return sub


class ListOption(click.Option):
    """A repeatable option that also takes a list: ``--input-collections A B`` (the words after it,
    up to the next option), ``--input-collections "A B"`` or ``A,B``, or the option repeated.
    The value is a tuple of the words, in order. Put positional arguments before such an option."""

    def __init__(self, *args, **kwargs):
        kwargs["multiple"] = True
        super().__init__(*args, **kwargs)

    def add_to_parser(self, parser, ctx) -> None:
        super().add_to_parser(parser, ctx)
        for name in self.opts:
            option = parser._long_opt.get(name) or parser._short_opt.get(name)
            if option is None or getattr(option, "_isrflow_greedy", False):
                continue
            single = option.process

            def process(value, state, single=single):
                single(value, state)
                while state.rargs and not state.rargs[0].startswith("-"):
                    single(state.rargs.pop(0), state)

            option.process = process
            option._isrflow_greedy = True

    def type_cast_value(self, ctx, value):
        words = super().type_cast_value(ctx, value) or ()
        return tuple(w for item in words for w in str(item).replace(",", " ").split())


def list_option(*names: str, **kwargs):
    """``click.option`` with :class:`ListOption` (see there)."""
    return click.option(*names, cls=ListOption, **kwargs)
