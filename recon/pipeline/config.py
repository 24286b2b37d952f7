"""Scanner configurations: TOML files, their schema, ``--set`` overrides and selection.

A scanner config (``scanner_configs/*.toml``) says which scanners it is for (``[select]``)
and how their data are reconstructed: the stage chain per acquisition type (``[chain]``)
and the parameters of every stage. EPI files (``epi``, ``epi_accelerated``) run the Cartesian
stages on k-space sorted by :func:`recon.cartesian.epi.sort_epi` (ramp-sampling regridding
and, with ``epi.ghost_correction``, Nyquist ghost correction from the navigators).
:data:`SCHEMA` is the single description of all keys (type, default, allowed values,
meaning); :func:`validate` checks a parsed file against it and fills in the defaults, so a
config only has to state what differs. Unknown keys, wrong types and impossible chains raise
:class:`~recon.errors.ConfigError` naming the file and the key (with a spelling suggestion),
before any data is read.

Selection (:func:`select_config`): every config whose ``[select]`` criteria all match the
ISMRMRD header (vendor and model as case-insensitive substrings, field strength and receive
channel count as inclusive ranges) is a candidate; the one matching the most criteria wins,
``priority`` breaks ties, and ``default.toml`` (no criteria) is the fallback.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recon.errors import ConfigError
from recon.resources import scanner_configs_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: Acquisition types, each with its own stage chain (``[chain]`` keys).
ACQUISITIONS = (
    "cartesian_2d",
    "cartesian_2d_accelerated",
    "cartesian_3d",
    "cartesian_3d_accelerated",
    "noncartesian",
    "epi",
    "epi_accelerated",
)

#: Stages by name: (acquisition families it applies to, data it needs, data it gives).
#: Data states: ``kspace`` (per-coil k-space or samples), ``coils`` (per-coil images),
#: ``image`` (coil-combined image).
STAGES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "prewhiten": (("cartesian", "noncartesian"), "kspace", "kspace"),
    "compress": (("cartesian", "noncartesian"), "kspace", "kspace"),
    "dcf": (("noncartesian",), "kspace", "kspace"),
    "sensmaps": (("cartesian", "noncartesian"), "kspace", "kspace"),
    "grappa": (("cartesian",), "kspace", "kspace"),
    "partial_fourier": (("cartesian",), "kspace", "kspace"),
    "fft": (("cartesian",), "kspace", "coils"),
    "b0map": (("cartesian",), "coils", "coils"),
    "grid": (("noncartesian",), "kspace", "coils"),
    "sense": (("cartesian",), "kspace", "image"),
    "cg-sense": (("noncartesian",), "kspace", "image"),
    "pics": (("cartesian", "noncartesian"), "kspace", "image"),
    "combine": (("cartesian", "noncartesian"), "coils", "image"),
}

#: Stages that need coil maps from an earlier ``sensmaps``.
NEEDS_MAPS = ("sense", "cg-sense", "pics")


@dataclass(frozen=True)
class Key:
    """One config key: its type, default, allowed values and meaning."""

    kind: str  # "str", "int", "float", "bool", "list[str]", "list[int]", "list[float]"
    default: Any
    doc: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None


def _chain(*stages: str) -> Key:
    return Key("list[str]", list(stages), "stage chain", tuple(STAGES))


#: The schema: section -> key -> :class:`Key`.
SCHEMA: dict[str, dict[str, Key]] = {
    "config": {
        "description": Key("str", "", "what the config is for (shown by `recon configs`)"),
    },
    "select": {
        "vendor": Key("list[str]", [], "header systemVendor contains one of these (any case)"),
        "model": Key("list[str]", [], "header systemModel contains one of these (any case)"),
        "coil": Key("list[str]", [], "a header coilLabel name contains one of these (any case)"),
        "field_strength_t": Key("list[float]", [], "[min, max] field strength in T"),
        "channels": Key("list[int]", [], "[min, max] receive channels in the data"),
        "priority": Key("int", 0, "breaks ties between configs matching equally well"),
    },
    "scanner": {
        "noise_bandwidth": Key(
            "float",
            0.793,
            "relative receiver noise bandwidth, used when the header states none",
            minimum=0.01,
        ),
    },
    "chain": {
        "cartesian_2d": _chain("prewhiten", "partial_fourier", "fft", "combine"),
        "cartesian_2d_accelerated": _chain(
            "prewhiten", "grappa", "partial_fourier", "fft", "combine"
        ),
        "cartesian_3d": _chain("prewhiten", "partial_fourier", "fft", "combine"),
        "cartesian_3d_accelerated": _chain(
            "prewhiten", "grappa", "partial_fourier", "fft", "combine"
        ),
        "noncartesian": _chain("prewhiten", "dcf", "sensmaps", "cg-sense"),
        "epi": _chain("prewhiten", "fft", "combine"),
        "epi_accelerated": _chain("prewhiten", "grappa", "fft", "combine"),
    },
    "epi": {
        "ghost_correction": Key(
            "bool", True, "Nyquist ghost correction from the phase-correction navigators"
        ),
        "navigator_fit": Key(
            "str",
            "linear",
            "odd/even phase model fitted to the navigators: polynomial of order 1 (constant + "
            "slope), 0, 2 or 3",
            ("linear", "constant", "quadratic", "cubic"),
        ),
        "per_segment": Key(
            "bool",
            False,
            "segmented EPI: correct each shot (idx.segment) with its own navigators",
        ),
    },
    "noise": {
        "required": Key("bool", False, "fail when the file has no noise readouts"),
    },
    "compress": {
        "method": Key("str", "svd", "coil compression method", ("svd", "gcc")),
        "coils": Key("int", 0, "number of virtual coils (0: keep all)", minimum=0),
    },
    "sensitivity": {
        "method": Key(
            "str", "lowres", "coil map estimation", ("lowres", "espirit", "walsh", "inati")
        ),
        "calib_size": Key("int", 24, "calibration region edge (Cartesian), pixels", minimum=4),
        "kernel": Key("int", 6, "ESPIRiT kernel width / Walsh block size", minimum=2),
        "threshold": Key("float", 0.02, "ESPIRiT singular value threshold (relative)"),
        "crop": Key("float", 0.95, "ESPIRiT eigenvalue crop"),
        "radius": Key("float", 12.0, "non-Cartesian: k-space radius of the centre, grid units"),
    },
    "grappa": {
        "kernel_2d": Key("list[int]", [4, 5], "sources per class (ky, kx)"),
        "kernel_3d": Key("list[int]", [2, 4, 5], "sources per class (kz, ky, kx)"),
        "lambda": Key("float", 5e-4, "Tikhonov weight relative to ||A||_F^2 / n", minimum=0.0),
    },
    "sense": {
        "iterations": Key("int", 20, "conjugate gradient iterations", minimum=1),
        "lambda": Key("float", 0.0, "Tikhonov weight on BART-scaled data", minimum=0.0),
    },
    "pics": {
        "regularizer": Key("str", "l1-wavelet:0.005", "terms 'name:lambda' separated by ','"),
        "iterations": Key("int", 50, "solver iterations", minimum=1),
        "solver": Key("str", "auto", "iterative solver", ("auto", "fista", "pdhg", "cg")),
    },
    "partial_fourier": {
        "method": Key("str", "pocs", "partial Fourier filling", ("zero", "homodyne", "pocs")),
        "iterations": Key("int", 10, "POCS iterations", minimum=1),
    },
    "noncartesian": {
        "dcf": Key("str", "pipe-menon", "density compensation", ("pipe-menon", "radial", "none")),
        "eps": Key("float", 1e-4, "NUFFT tolerance", minimum=1e-7),
        "iterations": Key("int", 15, "CG-SENSE / pics iterations", minimum=1),
        "toeplitz": Key("bool", True, "normal operator through Toeplitz embedding"),
        "field_map": Key(
            "str",
            "",
            "B0 map (Hz) NIfTI on the output grid: cg-sense with time-segmented off-resonance "
            "correction ('' : none)",
        ),
    },
    "combine": {
        "method": Key("str", "rss", "coil combination", ("rss", "sensitivity", "adaptive")),
    },
    "output": {
        "formats": Key(
            "list[str]", ["nifti", "png"], "files written", ("nifti", "png", "ismrmrd", "dicom")
        ),
        "dtype": Key("str", "float32", "stored values", ("float32", "complex64")),
        "crop_to_recon_matrix": Key("bool", True, "crop to the header's recon matrix"),
        "tsnr_map": Key(
            "bool", False, "series: also write <stem>_tsnr.nii.gz, temporal mean / std"
        ),
        "b0_map": Key(
            "bool",
            False,
            "multi-echo Cartesian: also write <stem>_b0map.nii.gz, the B0 map (Hz) from the "
            "echoes' phase, for noncartesian.field_map (adds stage 'b0map' after 'fft')",
        ),
    },
    "compute": {
        "device": Key("str", "auto", "where to run", ("auto", "cpu", "cuda")),
        "blas_threads": Key(
            "int",
            1,
            "CPU BLAS threads for the per-unit matrix products (0: library default)",
            minimum=0,
        ),
    },
}


@dataclass
class ScannerConfig:
    """A validated scanner config: every key of :data:`SCHEMA` present with its value."""

    name: str
    path: Path | None
    values: dict[str, dict[str, Any]]
    sha256: str = ""
    overrides: list[str] = field(default_factory=list)

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.values[section]

    def get(self, dotted: str) -> Any:
        """Value of ``section.key``."""
        section, key = dotted.split(".", 1)
        return self.values[section][key]

    @property
    def description(self) -> str:
        return self.values["config"]["description"]

    def chain(self, acquisition: str) -> list[str]:
        """The stage names for one of :data:`ACQUISITIONS`."""
        return list(self.values["chain"][acquisition])

    def as_dict(self) -> dict[str, Any]:
        """Plain nested dict of all values (for JSON sidecars)."""
        return copy.deepcopy(self.values)

    def provenance(self) -> dict[str, Any]:
        """Where the config came from and every value used."""
        return {
            "name": self.name,
            "path": None if self.path is None else str(self.path),
            "sha256": self.sha256,
            "overrides": list(self.overrides),
            "values": self.as_dict(),
        }

    def to_toml(self) -> str:
        """The full config as TOML text (reloading it gives the same values)."""
        lines = [f"# scanner config {self.name!r} as used (all values explicit)"]
        if self.overrides:
            lines.append(f"# overrides: {' '.join(self.overrides)}")
        for section, keys in self.values.items():
            lines.append(f"\n[{section}]")
            for key, value in keys.items():
                lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else f'"{key}"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    return "[" + ", ".join(_toml_value(v) for v in value) + "]"


def _suggest(name: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind.startswith("list["):
        inner = kind[5:-1]
        return isinstance(value, list) and all(_type_ok(inner, v) for v in value)
    raise AssertionError(kind)


_KIND_NAMES = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "list[str]": "a list of strings",
    "list[int]": "a list of integers",
    "list[float]": "a list of numbers",
}


def _check_value(where: str, dotted: str, key: Key, value: Any) -> Any:
    if not _type_ok(key.kind, value):
        raise ConfigError(
            f"{where}: '{dotted}' must be {_KIND_NAMES[key.kind]}, got {value!r} "
            f"({type(value).__name__})"
        )
    if key.kind == "float":
        value = float(value)
    if key.kind == "list[float]":
        value = [float(v) for v in value]
    items = value if isinstance(value, list) else [value]
    if key.choices is not None:
        for item in items:
            if item not in key.choices:
                options = [str(c) for c in key.choices]
                raise ConfigError(
                    f"{where}: '{dotted}' = {item!r} is not one of "
                    f"{', '.join(options)}{_suggest(str(item), options)}"
                )
    if key.minimum is not None and value < key.minimum:
        raise ConfigError(f"{where}: '{dotted}' = {value!r} must be >= {key.minimum}")
    return value


def _check_chain(where: str, acquisition: str, stages: Sequence[str]) -> None:
    """A chain must turn k-space into one image, in a possible order."""
    family = "noncartesian" if acquisition == "noncartesian" else "cartesian"
    state, maps, seen = "kspace", False, []
    for stage in stages:
        families, needs, gives = STAGES[stage]
        prefix = f"{where}: chain.{acquisition}: stage '{stage}'"
        if family not in families:
            raise ConfigError(f"{prefix} does not apply to {family.replace('nonc', 'non-C')} data")
        if stage in seen:
            raise ConfigError(f"{prefix} appears twice")
        if state != needs:
            have = {"kspace": "k-space", "coils": "coil images", "image": "a combined image"}
            raise ConfigError(f"{prefix} needs {have[needs]} but gets {have[state]} there")
        if stage in NEEDS_MAPS and not maps:
            raise ConfigError(f"{prefix} needs coil maps: put 'sensmaps' before it")
        if stage == "prewhiten" and "compress" in seen:
            raise ConfigError(f"{prefix} must come before 'compress' (noise of physical coils)")
        if stage == "grappa" and not acquisition.endswith("accelerated"):
            raise ConfigError(f"{prefix} is for accelerated data only")
        maps = maps or stage == "sensmaps"
        state = gives
        seen.append(stage)
    if state != "image":
        raise ConfigError(
            f"{where}: chain.{acquisition} ends without a combined image "
            "(end with 'combine', 'sense', 'cg-sense' or 'pics')"
        )


def validate(
    table: dict[str, Any], where: str, *, installed: bool = True
) -> dict[str, dict[str, Any]]:
    """Check a parsed TOML table against :data:`SCHEMA`; return all values with defaults.

    Raises
    ------
    ConfigError
        Unknown section or key (with a suggestion), wrong type, value not allowed,
        impossible chain; the message names ``where`` and the key. With ``installed``,
        also when a chosen method needs a module this installation lacks.
    """
    values: dict[str, dict[str, Any]] = {
        section: {name: copy.deepcopy(key.default) for name, key in keys.items()}
        for section, keys in SCHEMA.items()
    }
    for section, content in table.items():
        if section not in SCHEMA:
            raise ConfigError(f"{where}: unknown section [{section}]{_suggest(section, SCHEMA)}")
        if not isinstance(content, dict):
            raise ConfigError(f"{where}: '{section}' must be a table [{section}]")
        for name, value in content.items():
            keys = SCHEMA[section]
            if name not in keys:
                raise ConfigError(f"{where}: unknown key '{section}.{name}'{_suggest(name, keys)}")
            values[section][name] = _check_value(where, f"{section}.{name}", keys[name], value)
    _check_semantics(values, where, installed)
    return values


def _check_semantics(values: dict[str, dict[str, Any]], where: str, installed: bool) -> None:
    for acquisition in ACQUISITIONS:
        _check_chain(where, acquisition, values["chain"][acquisition])
    for name, size in (("kernel_2d", 2), ("kernel_3d", 3)):
        kernel = values["grappa"][name]
        if len(kernel) != size or min(kernel) < 1:
            raise ConfigError(f"{where}: 'grappa.{name}' must be {size} positive integers")
    for name in ("field_strength_t", "channels"):
        bounds = values["select"][name]
        if bounds and (len(bounds) != 2 or bounds[0] > bounds[1]):
            raise ConfigError(f"{where}: 'select.{name}' must be [min, max]")
    from recon.iterative.pics import parse_terms

    try:
        parse_terms(values["pics"]["regularizer"])
    except ConfigError as error:
        raise ConfigError(f"{where}: 'pics.regularizer': {error}") from None
    uses_maps = any("sensmaps" in values["chain"][a] for a in ACQUISITIONS)
    if installed and uses_maps and values["sensitivity"]["method"] != "lowres":
        _require_module("recon.coils.sensitivity", where, "sensitivity.method")
    uses_compress = any("compress" in values["chain"][a] for a in ACQUISITIONS)
    if installed and uses_compress:
        _require_module("recon.coils.compress", where, "compress")
    if values["compress"]["method"] == "gcc" and "compress" in values["chain"]["noncartesian"]:
        raise ConfigError(
            f"{where}: 'compress.method' = 'gcc' needs a Cartesian readout; "
            "chain.noncartesian uses 'compress' (use svd)"
        )


def _require_module(module: str, where: str, key: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"{where}: '{key}' needs {module}, which this installation lacks")


# --------------------------------------------------------------------------------------
# files, overrides


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as error:
        raise ConfigError(f"scanner config {path}: cannot read ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"scanner config {path.name}: invalid TOML ({error})") from None


def available_configs() -> dict[str, Path]:
    """Shipped configs: name (file stem) -> path, sorted by name."""
    folder = scanner_configs_dir()
    return {p.stem: p for p in sorted(folder.glob("*.toml"))}


def resolve_path(name_or_path: str | Path) -> Path:
    """A shipped config by name (``terra_nova32``) or a TOML file by path."""
    text = str(name_or_path)
    candidate = Path(text)
    if text.endswith(".toml") or candidate.parent != Path("."):
        if not candidate.is_file():
            raise ConfigError(f"scanner config file {text} does not exist")
        return candidate
    configs = available_configs()
    if text not in configs:
        raise ConfigError(
            f"unknown scanner config '{text}'{_suggest(text, configs)}; "
            f"available: {', '.join(configs)}"
        )
    return configs[text]


def parse_override(text: str) -> tuple[str, str, Any]:
    """``"section.key=value"`` -> (section, key, value typed by the schema).

    Lists are written ``a,b,c`` (or TOML ``[...]``); booleans ``true/false``.
    """
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    dotted, raw = (part.strip() for part in text.split("=", 1))
    if "." not in dotted:
        raise ConfigError(f"--set {text!r}: the key must be section.key (e.g. grappa.lambda)")
    section, name = dotted.split(".", 1)
    if section not in SCHEMA:
        raise ConfigError(f"--set {text!r}: unknown section '{section}'{_suggest(section, SCHEMA)}")
    if name not in SCHEMA[section]:
        raise ConfigError(
            f"--set {text!r}: unknown key '{dotted}'{_suggest(name, SCHEMA[section])}"
        )
    key = SCHEMA[section][name]
    return section, name, _parse_typed(text, key.kind, raw)


def _parse_typed(text: str, kind: str, raw: str) -> Any:
    if kind.startswith("list["):
        inner = raw.strip()
        if inner.startswith("["):
            try:
                return tomllib.loads(f"v = {inner}")["v"]
            except tomllib.TOMLDecodeError as error:
                raise ConfigError(f"--set {text!r}: not a TOML list ({error})") from None
        parts = [p.strip() for p in inner.split(",") if p.strip()]
        return [_parse_typed(text, kind[5:-1], p) for p in parts]
    if kind == "str":
        return raw.strip().strip('"')
    if kind == "bool":
        lowered = raw.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"--set {text!r}: expected true or false")
    try:
        return int(raw) if kind == "int" else float(raw)
    except ValueError:
        raise ConfigError(f"--set {text!r}: expected {_KIND_NAMES[kind]}") from None


def load_config(name_or_path: str | Path, overrides: Sequence[str] = ()) -> ScannerConfig:
    """Load, validate and override a scanner config.

    Parameters
    ----------
    name_or_path : str or Path
        Shipped config name (see :func:`available_configs`) or path of a TOML file.
    overrides : sequence of str
        ``section.key=value`` settings applied after the file (``--set``).

    Raises
    ------
    ConfigError
        Unknown name, unreadable or invalid file, bad override.
    """
    path = resolve_path(name_or_path)
    table = _read_toml(path)
    for text in overrides:
        section, name, value = parse_override(text)
        table.setdefault(section, {})
        if not isinstance(table[section], dict):
            raise ConfigError(f"scanner config {path.name}: '{section}' must be a table")
        table[section][name] = value
    where = f"scanner config {path.name}" + (" with --set" if overrides else "")
    values = validate(table, where)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return ScannerConfig(path.stem, path, values, digest, list(overrides))


# --------------------------------------------------------------------------------------
# selection from the header


@dataclass(frozen=True)
class Selection:
    """Why a config was chosen: its name and the criteria it matched."""

    name: str
    matched: tuple[str, ...]
    automatic: bool


def _matches(select: dict[str, Any], facts: dict[str, Any]) -> tuple[str, ...] | None:
    """Names of the criteria matched, or None when one criterion fails."""
    matched = []
    for name in ("vendor", "model", "coil"):
        wanted = select[name]
        if not wanted:
            continue
        have = (facts.get(name) or "").lower()
        if not any(w.lower() in have for w in wanted):
            return None
        matched.append(name)
    for name, fact in (("field_strength_t", "field_strength_t"), ("channels", "channels")):
        bounds = select[name]
        if not bounds:
            continue
        value = facts.get(fact)
        if value is None or not bounds[0] <= value <= bounds[1]:
            return None
        matched.append(name)
    return tuple(matched)


def header_facts(header: Any, channels: int | None) -> dict[str, Any]:
    """The header values configs are selected by."""
    return {
        "vendor": header.vendor,
        "model": header.model,
        "coil": ";".join(header.coil_names),
        "field_strength_t": header.field_strength_t,
        "channels": channels if channels is not None else header.receiver_channels,
    }


def select_config(facts: dict[str, Any]) -> Selection:
    """The best matching shipped config for the header facts (see the module doc)."""
    best: tuple[int, int, str] | None = None
    chosen: Selection | None = None
    for name, path in available_configs().items():
        where = f"scanner config {path.name}"
        select = validate(_read_toml(path), where, installed=False)["select"]
        matched = _matches(select, facts)
        if matched is None:
            continue
        score = (len(matched), select["priority"], name)
        if best is None or score[:2] > best[:2]:
            best, chosen = score, Selection(name, matched, True)
    if chosen is None:
        raise ConfigError("no scanner config matches the data and default.toml is missing")
    return chosen
