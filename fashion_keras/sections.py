"""Config sections: each option declared once, as a field of one dataclass section.

A section is a dataclass whose fields carry their help text (:func:`option`). Commands compose the
sections they need, and their command-line flags are generated from the fields
(:func:`add_arguments`, :func:`from_args`): ``image_size`` is ``--image-size``, a ``bool`` is
``--flag/--no-flag``, a ``Literal[...]`` becomes ``choices``. Adding an option to a section adds
it to every command that composes the section (unless the command excludes it by name).

Sections: :class:`fashion_keras.data.config.DataConfig` and
:class:`~fashion_keras.data.config.PreprocessConfig` (where examples come from, and the crop
geometry), and in :mod:`fashion_keras.training.config` the model, optimisation and runtime
sections that a training run composes into ``TrainConfig``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, get_args


def option(default: Any, help: str) -> Any:
    """A section field with its default and its help text (the flag's ``--help`` line)."""
    return dataclasses.field(default=default, metadata={"help": help})


class Section:
    """Mixin for a dataclass config section: dict round trip and choice validation."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "config") -> Section:
        """The section from its dict form; unknown keys are an error naming them."""
        unknown = sorted(set(d) - set(cls.field_names()))
        if unknown:
            raise ValueError(
                f"{where}: unknown field(s) {unknown!r} in section {cls.__name__}; "
                f"expected some of {list(cls.field_names())}"
            )
        return cls(**d)

    def validate_choices(self) -> None:
        """Raises ``ValueError`` naming the field when a ``Literal`` field has another value."""
        for f in dataclasses.fields(self):
            if is_literal(f):
                value = getattr(self, f.name)
                if value is None and _is_optional(f):
                    continue
                if value not in literal_choices(f):
                    raise ValueError(
                        f"config field {f.name!r} = {value!r}; expected one of "
                        f"{list(literal_choices(f))}"
                    )

    def validate(self) -> None:
        """Raises ``ValueError`` naming the field and value of an out-of-range setting."""
        self.validate_choices()


def check_positive_ints(section: Any, names: Iterable[str]) -> None:
    """Each of ``names`` is ``None`` or an integer >= 1, else ``ValueError`` naming it."""
    for name in names:
        value = getattr(section, name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"config field {name!r} must be a positive integer, got {value!r}")


def _is_optional(f: dataclasses.Field) -> bool:
    return str(f.type).replace(" ", "").endswith("|None")


def literal_choices(f: dataclasses.Field) -> tuple[Any, ...]:
    """The allowed values of a ``Literal[...]`` (or ``Literal[...] | None``) field."""
    ann = f.type
    if isinstance(ann, str):
        # "Literal['a', 'b']" under `from __future__ import annotations`
        text = ann.split("|")[0].strip() if _is_optional(f) else ann
        return tuple(eval(text, {"Literal": Literal}).__args__)  # noqa: S307 - our own annotation
    return get_args(ann)


def is_literal(f: dataclasses.Field) -> bool:
    return str(f.type).startswith("Literal")


def _flag_type(f: dataclasses.Field) -> type:
    text = str(f.type)
    if text.startswith("bool"):
        return bool
    if "int" in text:
        return int
    if "float" in text:
        return float
    return str


def flag_name(field_name: str) -> str:
    """``image_size`` -> ``--image-size``."""
    return "--" + field_name.replace("_", "-")


def add_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    section: type,
    *,
    exclude: Iterable[str] = (),
    defaults: Mapping[str, Any] | None = None,
) -> None:
    """Adds one flag per field of ``section`` (a dataclass), except the ``exclude`` names.

    Every flag's parser default is ``None`` (= not given), so :func:`from_args` can tell a
    given flag from the field's default; the help text shows the field's default (or the one in
    ``defaults``, a command's own default for that field).
    """
    skip = set(exclude)
    unknown = skip - {f.name for f in dataclasses.fields(section)}
    if unknown:
        raise ValueError(f"exclude names {sorted(unknown)} are not fields of {section.__name__}")
    for f in dataclasses.fields(section):
        if f.name in skip:
            continue
        default = (defaults or {}).get(f.name, f.default)
        default_text = f"(default: {'unset' if default is None else default})"
        help_text = f"{f.metadata['help']} {default_text}".strip()
        kind = _flag_type(f)
        if kind is bool:
            parser.add_argument(
                flag_name(f.name),
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        elif is_literal(f):
            choices = literal_choices(f)
            parser.add_argument(
                flag_name(f.name),
                type=type(choices[0]),  # Literal[4, 8] parses ints
                choices=choices,
                default=None,
                help=help_text,
            )
        else:
            parser.add_argument(flag_name(f.name), type=kind, default=None, help=help_text)


def given_fields(section: type, args: argparse.Namespace) -> dict[str, Any]:
    """The fields of ``section`` whose flags were given on the command line."""
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(section)
        if getattr(args, f.name, None) is not None
    }


def from_args(section: type, args: argparse.Namespace, base: Any = None) -> Any:
    """``base`` (default: the section's defaults) with the flags actually given applied."""
    base = base if base is not None else section()
    return dataclasses.replace(base, **given_fields(section, args))


def fill_from_file(
    args: argparse.Namespace, path: str, groups: Mapping[str, type], extra: Sequence[str] = ()
) -> dict[str, Any]:
    """Fills the flags not given on the command line from a JSON file of sections
    (``{"data": {...}, "evaluation": {...}}``, keys of ``groups``); returns its ``extra``
    top-level keys (e.g. ``models``). Flags given on the command line win.

    Raises ``ValueError`` naming the file and the key that is not a section, or a field that is
    not an option of this command.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"--config {path}: cannot read it as JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a JSON object of sections, got {data!r}")
    unknown = sorted(set(data) - set(groups) - set(extra))
    if unknown:
        raise ValueError(
            f"--config {path}: unknown key(s) {unknown}; expected {sorted([*groups, *extra])}"
        )
    for name, cls in groups.items():
        section = data.get(name, {})
        fields = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(section, dict):
            raise ValueError(f"--config {path}: {name} = {section!r} must be an object of fields")
        for field, value in section.items():
            if field not in fields or not hasattr(args, field):
                raise ValueError(
                    f"--config {path}: {name}.{field} is not an option of this command "
                    f"(see --help for the {name} options)"
                )
            if getattr(args, field) is None:
                setattr(args, field, value)
    return {key: data[key] for key in extra if key in data}


def validated_from_args(args: argparse.Namespace, *section_classes: type) -> tuple[Any, ...]:
    """One validated section per class, from the flags given (``ValueError`` naming the field
    of an out-of-range value)."""
    built = tuple(from_args(cls, args) for cls in section_classes)
    for section in built:
        section.validate()
    return built
