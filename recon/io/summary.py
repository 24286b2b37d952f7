"""A summary of a raw dataset, computed from the headers only (``recon info``).

Definitions used (per encoding, over its imaging and calibration readouts):

- ``acceleration``: the header's ``(R_y, R_z)``; ``measured_acceleration`` the most common
  step between neighbouring sampled ``ky`` lines outside the calibration lines.
- ``calibration_lines``: distinct ``(kz, ky)`` lines of calibration readouts (flags 20 and 21).
- ``partial_fourier``: per phase axis, ``min(1, (last - first + R) / N)`` with the first and
  last sampled line, the acceleration ``R`` along that axis (an acquired line stands for
  ``R`` lines) and the matrix ``N``; 1.0 means full coverage. For the readout,
  ``samples / (2 * max(centre, samples - centre))`` (asymmetric echo).
- ``readout_oversampling``: encoded / recon field of view along x.

``axis_codes`` are the NIfTI (RAS) axis codes of the image axes x, y, z of the first imaging
readout's slice, as exported (e.g. ``LPS`` for a transverse slice read left-right).

Sampling figures (line ranges, partial Fourier, measured acceleration) are given for
Cartesian and EPI encodings only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from nibabel.orientations import aff2axcodes

from recon.geometry import geometry_from_header
from recon.io.flags import ReadoutKind, flag_counts, kind_counts
from recon.io.ismrmrd import RawData
from recon.io.sort import CALIBRATION_KINDS, IMAGING_KINDS


def _range(values: np.ndarray) -> list[int] | None:
    return [int(values.min()), int(values.max())] if values.size else None


def _pf(first: int, last: int, step: int, n: int) -> float:
    return round(min(1.0, (last - first + step) / n), 4) if n > 1 else 1.0


def _encoding_summary(raw: RawData, index: int) -> dict[str, Any]:
    enc = raw.header.encodings[index]
    head = raw.head
    imaging = raw.select(*IMAGING_KINDS, encoding=index)
    calib = raw.select(*CALIBRATION_KINDS, encoding=index)
    _, ny, nz = enc.encoded_matrix
    e1, e2 = head.kspace_encode_step_1, head.kspace_encode_step_2
    out: dict[str, Any] = {
        "trajectory": enc.trajectory,
        "encoded_matrix": list(enc.encoded_matrix),
        "recon_matrix": list(enc.recon_matrix),
        "encoded_fov_mm": [round(v, 3) for v in enc.encoded_fov_mm],
        "recon_fov_mm": [round(v, 3) for v in enc.recon_fov_mm],
        "readout_oversampling": round(enc.readout_oversampling, 4),
        "acceleration": list(enc.acceleration),
        "calibration_mode": enc.calibration_mode,
        "imaging_readouts": int(imaging.size),
        "calibration_readouts": int(calib.size),
        "limits": {
            name: [lim.minimum, lim.maximum, lim.center] for name, lim in enc.limits.items()
        },
    }
    lines = np.unique(np.stack([e2[imaging], e1[imaging]], 1), axis=0) if imaging.size else None
    cal_lines = np.unique(np.stack([e2[calib], e1[calib]], 1), axis=0) if calib.size else None
    out["imaging_lines"] = 0 if lines is None else len(lines)
    out["calibration_lines"] = 0 if cal_lines is None else len(cal_lines)
    out["calibration_ky_range"] = None if cal_lines is None else _range(cal_lines[:, 1])
    out["calibration_kz_range"] = None if cal_lines is None else _range(cal_lines[:, 0])
    if imaging.size:
        ns = head.number_of_samples[imaging].astype(int)
        out["samples_per_readout"] = int(np.median(ns))
        out["dwell_time_us"] = round(float(np.median(head.sample_time_us[imaging])), 4)
        out["trajectory_dimensions"] = int(np.median(head.trajectory_dimensions[imaging]))
    if imaging.size and enc.trajectory in ("cartesian", "epi"):
        centre = head.center_sample[imaging].astype(int)
        ky = np.unique(e1[imaging])
        kz = np.unique(e2[imaging])
        out["ky_range"] = _range(ky)
        out["kz_range"] = _range(kz)
        outside = ky[~np.isin(ky, cal_lines[:, 1])] if cal_lines is not None else ky
        steps = np.diff(outside)
        out["measured_acceleration"] = int(np.bincount(steps).argmax()) if steps.size else 1
        ry, rz = enc.acceleration
        lim1 = enc.limit("kspace_encoding_step_1")
        lim2 = enc.limit("kspace_encoding_step_2")
        out["ky_center"] = lim1.center if lim1 else ny // 2
        out["kz_center"] = lim2.center if lim2 else nz // 2
        c = int(np.median(centre))
        n = int(np.median(ns))
        echo = n / (2 * max(c, n - c)) if c > 0 else 1.0
        out["partial_fourier"] = {
            "ky": _pf(int(ky.min()), int(ky.max()), ry, ny),
            "kz": _pf(int(kz.min()), int(kz.max()), rz, nz),
            "kx": round(echo, 4),
        }
    if imaging.size:
        first = imaging[0]
        geometry = geometry_from_header(
            (enc.encoded_matrix[2], enc.encoded_matrix[1], enc.encoded_matrix[0]),
            enc.encoded_fov_mm,
            head.position[first],
            head.read_dir[first],
            head.phase_dir[first],
            head.slice_dir[first],
        )
        out["position_lps_mm"] = [round(float(v), 3) for v in geometry.position]
        out["axis_codes"] = "".join(aff2axcodes(geometry.nifti_affine()))
    counters = {}
    for name in ("slice", "contrast", "phase", "repetition", "set", "average", "segment"):
        values = getattr(head, name)[imaging]
        counters[name] = int(np.unique(values).size) if values.size else 0
    out["counts"] = counters
    return out


def summarize(raw: RawData) -> dict[str, Any]:
    """JSON-able summary of ``raw``: header facts, readout counts, per-encoding sampling."""
    header = raw.header
    head = raw.head
    nonoise = raw.usable & (raw.kinds != ReadoutKind.NOISE)
    noise = raw.select(ReadoutKind.NOISE)
    channels = np.unique(head.active_channels[nonoise])
    return {
        "kind": "raw",
        "file": str(raw.path),
        "header_validated": header.validated,
        "vendor": header.vendor,
        "model": header.model,
        "field_strength_t": header.field_strength_t,
        "h1_frequency_hz": header.h1_frequency_hz,
        "receiver_channels": header.receiver_channels,
        "channels": int(channels[0]) if channels.size else 0,
        "protocol": header.protocol_name,
        "sequence_type": header.sequence_type,
        "tr_ms": header.tr_ms,
        "te_ms": header.te_ms,
        "flip_angle_deg": header.flip_angle_deg,
        "readouts": len(raw),
        "unusable_readouts": int(np.count_nonzero(~raw.usable)),
        "kinds": kind_counts(raw.kinds),
        "flags": flag_counts(head.flags),
        "noise_readouts": int(noise.size),
        "noise_dwell_time_us": (
            round(float(np.median(head.sample_time_us[noise])), 4) if noise.size else None
        ),
        "encodings": [_encoding_summary(raw, i) for i in range(len(header.encodings))],
    }


def summarize_images(series: list) -> dict[str, Any]:
    """JSON-able summary of image series (from :func:`recon.io.images.read_ismrmrd_images`)."""
    out = []
    for item in series:
        headers = item.headers
        out.append(
            {
                "name": item.name,
                "images": int(item.data.shape[0]),
                "shape": [int(v) for v in item.data.shape[1:]],
                "dtype": str(item.data.dtype),
                "image_types": sorted({int(v) for v in headers["image_type"]}),
                "series_index": sorted({int(v) for v in headers["image_series_index"]}),
                "fov_mm": [round(float(v), 3) for v in headers["field_of_view"][0]],
                "slices": int(np.unique(headers["slice"]).size),
                "repetitions": int(np.unique(headers["repetition"]).size),
            }
        )
    return {"kind": "images", "series": out}
