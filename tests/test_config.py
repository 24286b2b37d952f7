"""Scanner configs: the shipped files validate, the schema rejects bad keys and types with the
key's name, ``--set`` overrides are typed by the schema, and the header picks the right file."""

from __future__ import annotations

from pathlib import Path

import pytest

from recon.errors import ConfigError
from recon.pipeline.config import (
    ACQUISITIONS,
    SCHEMA,
    available_configs,
    load_config,
    parse_override,
    select_config,
    validate,
)

SEVEN_T = (
    "siemens_terra_nova32",
    "siemens_terra_ptx8_32",
    "philips_achieva7t_32",
    "ge_signa7t_32",
    "research_64ch_7t",
)


def write(tmp_path: Path, text: str, name: str = "mine.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_configs_are_valid_and_documented():
    configs = available_configs()
    assert {"default", "siemens_skyra_3t", *SEVEN_T} <= set(configs)
    for name, path in configs.items():
        text = path.read_text()
        values = validate(_toml(path), name, installed=False)
        assert values["config"]["description"], name
        # documented: a comment block at the top, and a comment on (or above) every value
        assert text.lstrip().startswith("#"), name
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if " = " in line and not line.startswith("#") and "#" not in line:
                j = i - 1  # a block of key lines under a comment
                while " = " in lines[j] and not lines[j].startswith("#"):
                    j -= 1
                assert lines[j].startswith("#"), f"{name}: {line} is not documented"
        for acquisition in ACQUISITIONS:
            assert values["chain"][acquisition][-1] in ("combine", "sense", "cg-sense", "pics")
    # every config states each reconstruction choice explicitly (chains, compression, maps,
    # PI/CS, regularisation, iterations, partial Fourier, output, device)
    for name, path in configs.items():
        table = _toml(path)
        assert (
            any(table["select"].get(k) for k in ("vendor", "model", "field_strength_t", "channels"))
            or name == "default"
        ), name
        for section, keys in SCHEMA.items():
            if section in ("select", "noise"):
                continue
            missing = set(keys) - set(table.get(section, {}))
            assert not missing, f"{name}: [{section}] does not state {sorted(missing)}"
    # default.toml states every key of the schema, each with a comment
    default = _toml(configs["default"])
    assert sum(len(v) for v in default.values()) == sum(len(v) for v in SCHEMA.values())


def _toml(path: Path) -> dict:
    from recon.pipeline.config import _read_toml

    return _read_toml(path)


def test_default_and_skyra_load_with_all_values():
    for name in available_configs():  # every method a shipped config names is installed
        assert load_config(name).name == name
    config = load_config("siemens_skyra_3t")
    assert config.get("grappa.kernel_2d") == [4, 5]
    assert config.get("scanner.noise_bandwidth") == pytest.approx(0.793)
    assert config.get("noncartesian.eps") == pytest.approx(1e-4)  # default filled in
    assert len(config.sha256) == 64


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[grappa]\nlamda = 0.1\n", "unknown key 'grappa.lamda' (did you mean 'lambda'?)"),
        ("[grapa]\nlambda = 0.1\n", "unknown section [grapa] (did you mean 'grappa'?)"),
        ('[grappa]\nlambda = "big"\n', "'grappa.lambda' must be a number"),
        ("[sense]\niterations = 2.5\n", "'sense.iterations' must be an integer"),
        ("[noncartesian]\ntoeplitz = 1\n", "'noncartesian.toeplitz' must be true or false"),
        ('[partial_fourier]\nmethod = "homodine"\n', "did you mean 'homodyne'?"),
        ("[sense]\niterations = 0\n", "'sense.iterations' = 0 must be >= 1"),
        ('[chain]\ncartesian_2d = ["fft"]\n', "ends without a combined image"),
        ('[chain]\ncartesian_2d = ["grappa", "fft", "combine"]\n', "accelerated data only"),
        ('[chain]\nnoncartesian = ["dcf", "cg-sense"]\n', "needs coil maps"),
        ('[chain]\nnoncartesian = ["grappa", "combine"]\n', "does not apply to non-Cartesian"),
        ('[chain]\ncartesian_2d = ["fft", "partial_fourier", "combine"]\n', "needs k-space"),
        ('[chain]\ncartesian_2d = ["fft", "combine", "combine"]\n', "appears twice"),
        ('[pics]\nregularizer = "l2:0.1"\n', "'pics.regularizer'"),
        ("[select]\nchannels = [64, 32]\n", "'select.channels' must be [min, max]"),
    ],
)
def test_invalid_files_name_the_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "mine.toml" in str(error.value)
    assert message in str(error.value)


def test_unknown_name_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown scanner config 'siemens_skyra' .*did you mean"):
        load_config("siemens_skyra")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(write(tmp_path, "[grappa\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_overrides_are_typed_by_the_schema():
    assert parse_override("grappa.lambda=1e-3") == ("grappa", "lambda", 1e-3)
    assert parse_override("sense.iterations=7") == ("sense", "iterations", 7)
    assert parse_override("noncartesian.toeplitz=false") == ("noncartesian", "toeplitz", False)
    assert parse_override("grappa.kernel_2d=3,5") == ("grappa", "kernel_2d", [3, 5])
    assert parse_override('output.formats=["png"]') == ("output", "formats", ["png"])
    config = load_config("default", ["grappa.lambda=0.002", "partial_fourier.method=zero"])
    assert config.get("grappa.lambda") == 0.002
    assert config.get("partial_fourier.method") == "zero"
    assert config.overrides == ["grappa.lambda=0.002", "partial_fourier.method=zero"]
    for bad, message in [
        ("grappa.lamda=1", "did you mean 'lambda'"),
        ("sense.iterations=many", "expected an integer"),
        ("grappa", "expected section.key=value"),
        ("lambda=1", "section.key"),
        ("partial_fourier.method=homodine", "did you mean 'homodyne'"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config("default", [bad])


def test_written_toml_reloads_to_the_same_values(tmp_path):
    config = load_config("siemens_skyra_3t", ["grappa.lambda=0.003", "pics.iterations=9"])
    path = write(tmp_path, config.to_toml(), "used.toml")
    again = load_config(path)
    assert again.values == config.values


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (("SIEMENS", "Skyra", 2.89362, 14, ""), "siemens_skyra_3t"),
        (
            ("Siemens Healthineers", "MAGNETOM Terra", 6.98, 32, "HeadNova_1Tx32Rx"),
            "siemens_terra_nova32",
        ),
        (("Siemens", "MAGNETOM Terra.X", 6.98, 32, "Nova_8Tx32Rx"), "siemens_terra_ptx8_32"),
        (("Philips Medical Systems", "Achieva", 7.0, 32, ""), "philips_achieva7t_32"),
        (("GE MEDICAL SYSTEMS", "SIGNA 7.0T", 7.0, 32, ""), "ge_signa7t_32"),
        (("Siemens", "MAGNETOM Terra", 6.98, 64, ""), "research_64ch_7t"),
        (("ISMRMRD Labs", "Virtual Scanner", None, 4, ""), "default"),
        (("JEMRIS", "v2.8.4", 0.0, 1, ""), "default"),
    ],
)
def test_selection_from_header_values(facts, expected):
    vendor, model, field, channels, coil = facts
    chosen = select_config(
        {
            "vendor": vendor,
            "model": model,
            "field_strength_t": field,
            "channels": channels,
            "coil": coil,
        }
    )
    assert chosen.name == expected
    assert chosen.automatic
