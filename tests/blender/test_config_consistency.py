"""Every default, range and choice list of a user-facing setting comes from ``backend/config.py``.

Walks every property of the extension's property groups, preferences and operators (real bpy),
every field of the worker protocol's argument dataclasses, and every option of both command lines
(``python -m backend`` and ``blender --command compact_sdf``), and checks each against the config
setting the maps below name for it: the same default, and for Blender properties the same hard
``min``/``max`` (soft limits are the panel's own, inside them). A number, choice list or text
default that no map names fails the test: map it to its config setting, or say in ``NOT_SETTINGS``
why it is none. So a new property or option cannot drift from config unnoticed.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any

import bpy

from backend.config import (DEFAULT_DEVICE, DEFAULT_FRAME, DEFAULT_PRESET, DEFAULT_SIZE, DEVICES, FRAMES, PACES,
                            PRESET_CHOICES, PRESETS, SIZE_CHOICES, SIZES, DecodeConfig, EncodeConfig, ExploreConfig,
                            TrainConfig, setting)
from backend.field.blend_modes import BLEND_MODES
from backend.interfaces import cli as backend_cli
from backend.interfaces import protocol

_NO_DEFAULT = object()


@dataclasses.dataclass(frozen=True)
class From:
    """A number set by the config setting ``settings.field``. ``unset``: what the interface holds
    for the setting's "not given" (0 in Blender for "the preset's steps", None or [] on a command
    line); its default is then ``unset``, and in Blender also its minimum."""

    settings: type
    field: str
    unset: Any = _NO_DEFAULT


@dataclasses.dataclass(frozen=True)
class OneOf:
    """A choice among the names of a config choice list (or the blend-mode registry), defaulting to ``default``."""

    options: Mapping[str, Any]
    default: Any


PRESET, SIZE = OneOf(PRESETS, DEFAULT_PRESET), OneOf(SIZES, DEFAULT_SIZE)
FRAME = OneOf(FRAMES, DEFAULT_FRAME)
MODE, PACE = OneOf(BLEND_MODES, DecodeConfig().mode), OneOf(PACES, DecodeConfig().pace)
DEVICE = OneOf(DEVICES, DEFAULT_DEVICE)
#: ``blender --command``'s --device: None keeps the add-on preference for the run.
DEVICE_OR_PREFERENCE = OneOf(DEVICES, None)

#: Settings of the panel, its preferences and its operators ("<class>.<property>").
BLENDER: dict[str, From | OneOf] = {
    "CSDF_PG_scene_settings.preset": PRESET,
    "CSDF_PG_scene_settings.size": SIZE,
    "CSDF_PG_scene_settings.frame": FRAME,
    "CSDF_PG_scene_settings.steps": From(TrainConfig, "steps", unset=0),
    "CSDF_PG_scene_settings.seed": From(EncodeConfig, "seed"),
    "CSDF_PG_scene_settings.checkpoint_minutes": From(EncodeConfig, "checkpoint_minutes"),
    # The panel decodes lighter than the engine: config names that default interactive_resolution.
    "CSDF_PG_scene_settings.resolution": From(DecodeConfig, "interactive_resolution"),
    "CSDF_PG_scene_settings.target_faces": From(DecodeConfig, "target_faces", unset=0),
    "CSDF_PG_scene_settings.blend_mode": MODE,
    "CSDF_PG_scene_settings.interp_count": From(DecodeConfig, "count"),
    "CSDF_PG_scene_settings.interp_pace": PACE,
    "CSDF_PG_scene_settings.detail": From(DecodeConfig, "detail"),
    "CSDF_PG_scene_settings.variation": From(ExploreConfig, "amount"),
    "CSDF_PG_scene_settings.explore_seed": From(ExploreConfig, "seed"),
    "CSDF_PG_scene_settings.explore_spread": From(ExploreConfig, "spread"),
    "CSDF_PG_scene_settings.nearest_count": From(ExploreConfig, "nearest"),
    "CSDF_PG_scene_settings.redecode_resolution": From(DecodeConfig, "resolution"),
    "CSDF_PG_scene_settings.preview_resolution": From(DecodeConfig, "preview_resolution"),
    "CSDF_OT_redecode.resolution": From(DecodeConfig, "resolution"),
    "CSDF_AddonPreferences.device": DEVICE,
}

#: Fields of the worker protocol's arguments ("<field>", or "<class>.<field>" where it differs).
PROTOCOL: dict[str, From | OneOf] = {
    "preset": PRESET,
    "size": SIZE,
    "frame": FRAME,
    "steps": From(TrainConfig, "steps"),
    "seed": From(EncodeConfig, "seed"),
    "checkpoint_minutes": From(EncodeConfig, "checkpoint_minutes"),
    "device": DEVICE,
    "resolution": From(DecodeConfig, "resolution"),
    "band": From(DecodeConfig, "band"),
    "mode": MODE,
    "target_faces": From(DecodeConfig, "target_faces"),
    "detail": From(DecodeConfig, "detail"),
    "pace": PACE,
    "spread": From(ExploreConfig, "spread"),
    "nearest": From(ExploreConfig, "nearest"),
    "ExploreArgs.seed": From(ExploreConfig, "seed", unset=None),  # None: not a random variant
}

#: Options of ``python -m backend`` ("<option>", or "<command>.<option>" where it differs).
BACKEND_CLI: dict[str, From | OneOf] = {
    "preset": PRESET,
    "size": SIZE,
    "frame": FRAME,
    "steps": From(TrainConfig, "steps", unset=None),  # encode, invert, replace: None grows with the collection
    "minutes": From(TrainConfig, "time_budget_s", unset=None),  # in minutes on the command line
    "seed": From(EncodeConfig, "seed"),
    "checkpoint_every": From(EncodeConfig, "checkpoint_minutes"),
    "device": DEVICE,
    "resolution": From(DecodeConfig, "resolution"),
    "band": From(DecodeConfig, "band"),
    "interpolate.steps": From(DecodeConfig, "count"),
    "correspond.resolution": From(DecodeConfig, "interactive_resolution"),  # registration lattice: the panel's
    "mode": MODE,
    "detail": From(DecodeConfig, "detail"),
    "pace": PACE,
    "vary": From(ExploreConfig, "amount", unset=None),
    "random": From(ExploreConfig, "seed", unset=None),
    "spread": From(ExploreConfig, "spread"),
    "nearest": From(ExploreConfig, "nearest"),
}

#: Options of ``blender --command compact_sdf`` ("<option>", or "<command>.<option>").
BLENDER_CLI: dict[str, From | OneOf] = {
    "preset": PRESET,
    "size": SIZE,
    "frame": FRAME,
    "steps": From(TrainConfig, "steps", unset=0),  # as in the panel: 0 is the preset's
    "seed": From(EncodeConfig, "seed"),
    "device": DEVICE_OR_PREFERENCE,
    # It runs the panel's operators, with the panel's defaults.
    "resolution": From(DecodeConfig, "interactive_resolution"),
    "count": From(DecodeConfig, "count"),
    "mode": MODE,
    "detail": From(DecodeConfig, "detail"),
    "pace": PACE,
    "vary": From(ExploreConfig, "amount", unset=[]),
    "random": From(ExploreConfig, "seed", unset=[]),
    "spread": From(ExploreConfig, "spread"),
    "nearest": From(ExploreConfig, "nearest"),
}

#: Numbers, choices and text defaults that are no config setting, and why ("<where>.<name>"; "*": all of it).
NOT_SETTINGS = {
    "CSDF_PG_scene_settings.active_shape": "the shape list's active row",
    "CSDF_PG_scene_settings.encode_mode": "Blender-only: whether Encode adds to the library file or replaces it",
    "CSDF_PG_scene_settings.heatmap_range": "Blender-only: the colour scale of the fidelity heatmap",
    "CSDF_PG_scene_settings.blend": "a position along the path of ticked shapes (0 the first, 1 the last)",
    "CSDF_PG_scene_settings.explore_source": "Blender-only: which code the variation sliders move",
    "CSDF_PG_shape.*": "one shape of the open library: facts shown from its file, its tick and weight in a blend",
    "CSDF_PG_nearest.*": "a shape the last preview found near its code",
    "CSDF_PG_job_state.*": "the running job's state",
    "CSDF_PG_backend_state.*": "what the last backend check found",
    "CSDF_PG_explore_state.*": "what the last preview found",
    "CSDF_OT_interpolate.mode": "which button ran: in-betweens along the path or one weighted blend",
    "backend.encode.sampling_workers": "None: one process per core",
    "backend.decode.format": "mesh file formats",
    "backend.interpolate.format": "mesh file formats",
    "backend.explore.format": "mesh file formats",
    "backend.correspond.format": "mesh file formats",
    "backend.correspond.steps": "2: just the mapped mesh; more carry it along the path",
    "backend.eval.*": "the fidelity tool: its sample count and seed measure, they set nothing of a library",
    "backend.make-collection.*": "the test-collection generator, not a library setting",
    "blender.encode.mode": "the panel's Encode Into (auto, new, add)",
    "blender.interpolate.weights": "one blend weight per shape",
}


def _exempt(where: str, name: str) -> bool:
    return f"{where}.{name}" in NOT_SETTINGS or f"{where}.*" in NOT_SETTINGS


def _spec(table: dict[str, From | OneOf], where: str, name: str, exempt_as: str | None = None) -> From | OneOf | None:
    """The entry for ``name`` at ``where`` (``where.name``, else ``name``); None where ``NOT_SETTINGS``
    exempts it (as ``exempt_as.name``: the key of ``where`` there) or nothing maps it."""
    if _exempt(exempt_as or where, name):
        return None
    return table.get(f"{where}.{name}", table.get(name))


def _expected_default(spec: From | OneOf) -> Any:
    if isinstance(spec, OneOf):
        return spec.default
    return setting(spec.settings, spec.field).default if spec.unset is _NO_DEFAULT else spec.unset


def _check_choices(spec: From | OneOf, offered: Iterator[str] | None, where: str) -> list[str]:
    if not isinstance(spec, OneOf):
        return [f"{where}: a choice list, mapped to a number"] if offered is not None else []
    if offered is None:
        return [f"{where}: not a choice list, mapped to one"]
    offered = sorted(offered)
    return [] if offered == sorted(spec.options) else [f"{where} offers {offered}, config {sorted(spec.options)}"]


# Blender ---------------------------------------------------------------------------------------

_BLENDER_INT_MAX = 2**31 - 1


def _same(blender: float, config: Any) -> bool:
    """Equal, up to Blender keeping float properties in single precision."""
    return isinstance(config, int | float) and math.isclose(blender, config, rel_tol=1e-6, abs_tol=1e-12)


def _blender_classes(addon) -> Iterator[type]:
    for cls in addon._CLASSES:
        if issubclass(cls, bpy.types.PropertyGroup | bpy.types.AddonPreferences | bpy.types.Operator):
            yield cls


def _rna_properties(cls: type) -> Iterator[Any]:
    if issubclass(cls, bpy.types.Operator):  # its own properties, not those of every operator
        module, name = cls.bl_idname.split(".")
        rna = getattr(getattr(bpy.ops, module), name).get_rna_type()
    else:
        rna = cls.bl_rna
    for prop in rna.properties:
        if prop.identifier not in {"rna_type", "name", "bl_idname"} and prop.type in {"INT", "FLOAT", "ENUM"}:
            yield prop


def _blender_problems(cls: type, prop: Any) -> list[str]:
    where = f"{cls.__name__}.{prop.identifier}"
    spec = _spec(BLENDER, cls.__name__, prop.identifier)
    if spec is None:
        return [] if _exempt(cls.__name__, prop.identifier) else [f"{where}: map it to a config setting or exempt it"]
    if prop.type == "ENUM":
        problems = _check_choices(spec, (item.identifier for item in prop.enum_items), where)
        return problems + ([] if prop.default == spec.default else [f"{where} defaults to {prop.default!r}, config {spec.default!r}"])
    problems = _check_choices(spec, None, where)
    if problems:
        return problems
    s = setting(spec.settings, spec.field)
    defaults = list(prop.default_array) if prop.is_array else [prop.default]
    default = _expected_default(spec)
    if not all(_same(d, default) for d in defaults):
        problems.append(f"{where} defaults to {defaults if prop.is_array else prop.default}, config {default!r}")
    low = spec.unset if spec.unset is not _NO_DEFAULT else s.low
    if low is not None and not _same(prop.hard_min, low):
        problems.append(f"{where}: min {prop.hard_min}, config {low}")
    if s.high is not None and not _same(prop.hard_max, s.high):
        problems.append(f"{where}: max {prop.hard_max}, config {s.high}")
    if s.high is None and prop.hard_max < _BLENDER_INT_MAX:
        problems.append(f"{where}: max {prop.hard_max}, but config sets no maximum")
    if not prop.hard_min <= prop.soft_min <= prop.soft_max <= prop.hard_max:
        problems.append(f"{where}: soft limits {prop.soft_min}..{prop.soft_max} outside {prop.hard_min}..{prop.hard_max}")
    return problems


def test_blender_properties_take_defaults_and_ranges_from_config(addon):
    problems, checked = [], set()
    for cls in _blender_classes(addon):
        for prop in _rna_properties(cls):
            problems += _blender_problems(cls, prop)
            checked.add(f"{cls.__name__}.{prop.identifier}")
    assert not problems, "\n".join(problems)
    assert not set(BLENDER) - checked, f"mapped but not found: {sorted(set(BLENDER) - checked)}"
    assert bpy.context.scene.csdf.resolution == DecodeConfig().interactive_resolution  # as registered


# Worker protocol -------------------------------------------------------------------------------


def _members(hint: Any) -> tuple:
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)


def test_protocol_defaults_come_from_config():
    problems = []
    for cls in [*protocol.REQUEST_TYPES.values(), protocol.DecodeItem]:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.default is dataclasses.MISSING:
                continue  # required: nothing to drift (and list defaults are empty)
            numeric = any(m in (int, float) for m in _members(hints[f.name]))
            if not numeric and not isinstance(f.default, str):
                continue
            where = f"{cls.__name__}.{f.name}"
            spec = _spec(PROTOCOL, cls.__name__, f.name)
            if spec is None:
                if not _exempt(cls.__name__, f.name):
                    problems.append(f"{where}: map it to a config setting or exempt it")
                continue
            if f.default != _expected_default(spec):
                problems.append(f"{where} defaults to {f.default!r}, config {_expected_default(spec)!r}")
    assert not problems, "\n".join(problems)


# Command lines ---------------------------------------------------------------------------------


def _options(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.Action]]:
    """(command, option) of every subcommand's options."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                for option in sub._actions:
                    if option.option_strings and not isinstance(option, argparse._HelpAction):
                        yield command, option


def _cli_problems(parser: argparse.ArgumentParser, table: dict[str, From | OneOf], prefix: str) -> list[str]:
    problems = []
    for command, option in _options(parser):
        numeric = option.type in (int, float)
        if not numeric and option.choices is None and not isinstance(option.default, str):
            continue
        where = f"{prefix}.{command}"
        spec = _spec(table, command, option.dest, exempt_as=where)
        if spec is None:
            if not _exempt(where, option.dest):
                problems.append(f"{where} --{option.dest}: map it to a config setting or exempt it")
            continue
        problems += _check_choices(spec, option.choices, f"{where} --{option.dest}")
        if option.default != _expected_default(spec):
            problems.append(f"{where} --{option.dest} defaults to {option.default!r}, config {_expected_default(spec)!r}")
    return problems


def test_backend_cli_options_take_defaults_and_choices_from_config():
    problems = _cli_problems(backend_cli.build_parser(), BACKEND_CLI, "backend")
    assert not problems, "\n".join(problems)


def test_blender_command_options_take_defaults_and_choices_from_config(addon):
    problems = _cli_problems(addon.cli_command.build_parser(), BLENDER_CLI, "blender")
    assert not problems, "\n".join(problems)


# Config itself ---------------------------------------------------------------------------------


def test_every_choice_has_panel_text_and_every_default_is_a_choice():
    assert list(PRESET_CHOICES) == list(PRESETS) and list(SIZE_CHOICES) == list(SIZES)
    for choices in (PRESET_CHOICES, SIZE_CHOICES, FRAMES, PACES, DEVICES, BLEND_MODES):
        assert all(c.label and c.description for c in choices.values())
    assert DEFAULT_PRESET in PRESETS and DEFAULT_SIZE in SIZES and DEFAULT_DEVICE in DEVICES and DEFAULT_FRAME in FRAMES
    assert DecodeConfig().mode in BLEND_MODES and DecodeConfig().pace in PACES
    for settings in (DecodeConfig, EncodeConfig, ExploreConfig):
        for f in dataclasses.fields(settings):
            s = setting(settings, f.name)
            if s.default is not None and (s.low, s.high) != (None, None):
                assert s.contains(s.default), f"{settings.__name__}.{f.name}: default outside its range"
