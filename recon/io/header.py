"""The ISMRMRD XML header: validation through ``ismrmrd.xsd`` and a plain summary.

:func:`parse_header` first parses the document with ``ismrmrd.xsd.CreateFromDocument``
(strict: unknown elements and wrong types fail). Real files do not always validate, so when
that fails a :class:`HeaderWarning` is issued and the header is read leniently: every field
below is extracted from the XML tree by element name (namespaces ignored), whatever else the
document contains, and ``Header.xsd`` is ``None``. Only XML that is not well-formed, or a
header without any ``<encoding>``, raises :class:`~recon.errors.InputError`.
"""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from recon.errors import InputError

#: Counters of the encoding limits, in the order of the ISMRMRD schema.
LIMIT_NAMES = (
    "kspace_encoding_step_0",
    "kspace_encoding_step_1",
    "kspace_encoding_step_2",
    "average",
    "slice",
    "contrast",
    "phase",
    "repetition",
    "set",
    "segment",
)


class HeaderWarning(UserWarning):
    """A header that does not validate against ismrmrd.xsd, or an odd but usable value."""


@dataclass(frozen=True)
class Limit:
    """One counter's encoding limits (inclusive minimum and maximum, k-space centre)."""

    minimum: int
    maximum: int
    center: int


@dataclass(frozen=True)
class Encoding:
    """One ``<encoding>`` of the header.

    Matrices and fields of view are ``(x, y, z)`` = (readout, phase, partition/slab), FOVs in mm.
    ``limits`` maps the counter names of :data:`LIMIT_NAMES` to :class:`Limit` for the counters
    the header states. ``acceleration`` is ``(R_y, R_z)`` (1 when absent).
    """

    index: int
    encoded_matrix: tuple[int, int, int]
    encoded_fov_mm: tuple[float, float, float]
    recon_matrix: tuple[int, int, int]
    recon_fov_mm: tuple[float, float, float]
    trajectory: str
    limits: dict[str, Limit] = field(default_factory=dict)
    acceleration: tuple[int, int] = (1, 1)
    calibration_mode: str | None = None
    echo_train_length: int | None = None
    trajectory_description: dict[str, Any] = field(default_factory=dict)

    def limit(self, name: str) -> Limit | None:
        """The limits of counter ``name``, or None when the header does not state them."""
        return self.limits.get(name)

    @property
    def readout_oversampling(self) -> float:
        """Encoded / recon field of view along the readout (2.0 for 2x oversampling)."""
        if self.recon_fov_mm[0] <= 0:
            return 1.0
        return self.encoded_fov_mm[0] / self.recon_fov_mm[0]


@dataclass
class Header:
    """Summary of an ISMRMRD XML header (times in ms, angles in degrees, field in T)."""

    xml: str
    encodings: list[Encoding]
    validated: bool
    xsd: Any = None
    vendor: str | None = None
    model: str | None = None
    institution: str | None = None
    field_strength_t: float | None = None
    h1_frequency_hz: float | None = None
    receiver_channels: int | None = None
    relative_noise_bandwidth: float | None = None
    coil_names: list[str] = field(default_factory=list)
    tr_ms: list[float] = field(default_factory=list)
    te_ms: list[float] = field(default_factory=list)
    ti_ms: list[float] = field(default_factory=list)
    flip_angle_deg: list[float] = field(default_factory=list)
    echo_spacing_ms: list[float] = field(default_factory=list)
    sequence_type: str | None = None
    patient_position: str | None = None
    protocol_name: str | None = None
    measurement_id: str | None = None
    frame_of_reference_uid: str | None = None
    study_date: str | None = None
    study_time: str | None = None
    user_parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def encoding(self) -> Encoding:
        """The first (usually only) encoding."""
        return self.encodings[0]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(node: ET.Element | None, name: str) -> ET.Element | None:
    if node is None:
        return None
    for sub in node:
        if _local(sub.tag) == name:
            return sub
    return None


def _children(node: ET.Element | None, name: str) -> list[ET.Element]:
    if node is None:
        return []
    return [sub for sub in node if _local(sub.tag) == name]


def _path(node: ET.Element | None, *names: str) -> ET.Element | None:
    for name in names:
        node = _child(node, name)
    return node


def _text(node: ET.Element | None, *names: str) -> str | None:
    node = _path(node, *names)
    if node is None or node.text is None:
        return None
    text = node.text.strip()
    return text or None


def _number(node: ET.Element | None, *names: str, kind: type = float, where: str = "") -> Any:
    text = _text(node, *names)
    if text is None:
        return None
    try:
        return kind(float(text)) if kind is int else kind(text)
    except ValueError:
        warnings.warn(
            f"{where}: header field {'/'.join(names)} = {text!r} is not a number; ignored",
            HeaderWarning,
            stacklevel=4,
        )
        return None


def _numbers(node: ET.Element | None, name: str, where: str) -> list[float]:
    values = []
    for sub in _children(node, name):
        try:
            values.append(float((sub.text or "").strip()))
        except ValueError:
            warnings.warn(
                f"{where}: header field {name} = {sub.text!r} is not a number; ignored",
                HeaderWarning,
                stacklevel=3,
            )
    return values


def _triple(node: ET.Element | None, kind: type, default: float, where: str) -> tuple:
    values = []
    for axis in "xyz":
        value = _number(node, axis, kind=kind, where=where)
        values.append(kind(default) if value is None else value)
    return tuple(values)


def _encoding(node: ET.Element, index: int, where: str) -> Encoding:
    enc_space = _child(node, "encodedSpace")
    rec_space = _child(node, "reconSpace")
    if rec_space is None:
        rec_space = enc_space
    if enc_space is None:
        raise InputError(f"{where}: header encoding {index} has no <encodedSpace>")
    enc_matrix = _triple(_child(enc_space, "matrixSize"), int, 1, where)
    rec_matrix = _triple(_child(rec_space, "matrixSize"), int, 1, where)
    enc_fov = _triple(_child(enc_space, "fieldOfView_mm"), float, 0.0, where)
    rec_fov = _triple(_child(rec_space, "fieldOfView_mm"), float, 0.0, where)
    if min(enc_matrix) < 1 or min(rec_matrix) < 1:
        raise InputError(f"{where}: header encoding {index} has a matrix size below 1")
    limits = {}
    limits_node = _child(node, "encodingLimits")
    for name in LIMIT_NAMES:
        sub = _child(limits_node, name)
        if sub is None:
            continue
        lo = _number(sub, "minimum", kind=int, where=where)
        hi = _number(sub, "maximum", kind=int, where=where)
        centre = _number(sub, "center", kind=int, where=where)
        if lo is None or hi is None:
            continue
        limits[name] = Limit(lo, hi, centre if centre is not None else (lo + hi + 1) // 2)
    pi_node = _child(node, "parallelImaging")
    accel = _child(pi_node, "accelerationFactor")
    r1 = _number(accel, "kspace_encoding_step_1", kind=int, where=where) or 1
    r2 = _number(accel, "kspace_encoding_step_2", kind=int, where=where) or 1
    description = {}
    desc_node = _child(node, "trajectoryDescription")
    if desc_node is not None:
        description["identifier"] = _text(desc_node, "identifier")
        description.update(_user_parameters(desc_node, where))
    return Encoding(
        index=index,
        encoded_matrix=enc_matrix,
        encoded_fov_mm=enc_fov,
        recon_matrix=rec_matrix,
        recon_fov_mm=rec_fov,
        trajectory=(_text(node, "trajectory") or "other").lower(),
        limits=limits,
        acceleration=(max(int(r1), 1), max(int(r2), 1)),
        calibration_mode=_text(pi_node, "calibrationMode"),
        echo_train_length=_number(node, "echoTrainLength", kind=int, where=where),
        trajectory_description=description,
    )


def _user_parameters(node: ET.Element | None, where: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if node is None:
        return params
    for sub in node:
        tag = _local(sub.tag)
        if not tag.startswith("userParameter"):
            continue
        name = _text(sub, "name")
        value = _text(sub, "value")
        if name is None:
            continue
        if tag == "userParameterLong":
            params[name] = _number(sub, "value", kind=int, where=where)
        elif tag == "userParameterDouble":
            params[name] = _number(sub, "value", kind=float, where=where)
        else:
            params[name] = value
    return params


def _validate(xml: str, where: str) -> Any:
    """The ismrmrd.xsd object, or None (with a warning) when the header does not validate."""
    try:
        import ismrmrd.xsd

        return ismrmrd.xsd.CreateFromDocument(xml)
    except Exception as error:  # xsdata raises several unrelated types
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        warnings.warn(
            f"{where}: XML header does not validate against ismrmrd.xsd ({message}); "
            "reading it leniently",
            HeaderWarning,
            stacklevel=3,
        )
        return None


def parse_header(xml: str | bytes, where: str = "header") -> Header:
    """Parse an ISMRMRD XML header.

    Parameters
    ----------
    xml : str or bytes
        The document (``/dataset/xml``).
    where : str
        Name used in messages (usually the file path).

    Returns
    -------
    Header
        The summary; ``validated`` says whether ``ismrmrd.xsd`` accepted the document.

    Raises
    ------
    InputError
        Not well-formed XML, or no ``<encoding>``.
    """
    if isinstance(xml, bytes):
        xml = xml.decode("utf-8", errors="replace")
    xml = xml.rstrip("\x00")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as error:
        raise InputError(f"{where}: XML header is not well-formed ({error})") from None
    encodings = [
        _encoding(node, index, where) for index, node in enumerate(_children(root, "encoding"))
    ]
    if not encodings:
        raise InputError(f"{where}: XML header has no <encoding>")
    xsd = _validate(xml, where)
    system = _child(root, "acquisitionSystemInformation")
    sequence = _child(root, "sequenceParameters")
    measurement = _child(root, "measurementInformation")
    study = _child(root, "studyInformation")
    return Header(
        xml=xml,
        encodings=encodings,
        validated=xsd is not None,
        xsd=xsd,
        vendor=_text(system, "systemVendor"),
        model=_text(system, "systemModel"),
        institution=_text(system, "institutionName"),
        field_strength_t=_number(system, "systemFieldStrength_T", where=where),
        h1_frequency_hz=_number(
            root, "experimentalConditions", "H1resonanceFrequency_Hz", where=where
        ),
        receiver_channels=_number(system, "receiverChannels", kind=int, where=where),
        relative_noise_bandwidth=_number(system, "relativeReceiverNoiseBandwidth", where=where),
        coil_names=[_text(c, "coilName") or "" for c in _children(system, "coilLabel")],
        tr_ms=_numbers(sequence, "TR", where),
        te_ms=_numbers(sequence, "TE", where),
        ti_ms=_numbers(sequence, "TI", where),
        flip_angle_deg=_numbers(sequence, "flipAngle_deg", where),
        echo_spacing_ms=_numbers(sequence, "echo_spacing", where),
        sequence_type=_text(sequence, "sequence_type"),
        patient_position=_text(measurement, "patientPosition"),
        protocol_name=_text(measurement, "protocolName"),
        measurement_id=_text(measurement, "measurementID"),
        frame_of_reference_uid=_text(measurement, "frameOfReferenceUID"),
        study_date=_text(study, "studyDate"),
        study_time=_text(study, "studyTime"),
        user_parameters=_user_parameters(_child(root, "userParameters"), where),
    )
