"""Bad input: each case gives a one-line error naming the file (CLI exit code 2) or a warning
where reconstruction can go on."""

from __future__ import annotations

import re
import subprocess
import sys

import h5py
import ismrmrd
import numpy as np
import pytest
import test_io_helpers as synth

from recon.errors import InputError
from recon.io import read_dataset, sort_cartesian
from recon.io.header import HeaderWarning, parse_header
from recon.io.ismrmrd import ReadWarning
from recon.io.sort import SortWarning


def _lines(rng, n=6, nc=2, ns=16, **kw):
    out = []
    for e1 in range(n):
        data = (rng.standard_normal((nc, ns)) + 1j * rng.standard_normal((nc, ns))).astype(
            np.complex64
        )
        out.append(synth.acquisition(data, e1=e1, **kw))
    return out


def _xml(**kw):
    kw.setdefault("enc_matrix", (16, 8, 1))
    kw.setdefault("rec_matrix", (16, 8, 1))
    kw.setdefault("e1", (0, 5, 4))
    kw.setdefault("channels", 2)
    return synth.header_xml(**kw)


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "recon", *args], capture_output=True, text=True, timeout=120
    )


def test_not_hdf5(tmp_path):
    path = tmp_path / "x.h5"
    path.write_text("hello")
    with pytest.raises(InputError, match="not an HDF5 file") as info:
        read_dataset(path)
    assert str(path) in str(info.value)


def test_truncated_file(tmp_path, rng):
    good = synth.write(tmp_path / "good.h5", _xml(), _lines(rng))
    data = good.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.h5") as info:
        read_dataset(cut)
    assert "\n" not in str(info.value)


def test_missing_xml_and_missing_data(tmp_path, rng):
    no_xml = tmp_path / "noxml.h5"
    with h5py.File(no_xml, "w") as f:
        f.create_group("dataset").create_dataset("data", data=np.zeros(3))
    with pytest.raises(InputError, match=r"missing /dataset/xml"):
        read_dataset(no_xml)
    no_data = tmp_path / "nodata.h5"
    with h5py.File(no_data, "w") as f:
        f.create_group("dataset").create_dataset("xml", data=[_xml().encode()])
    with pytest.raises(InputError, match=r"missing /dataset/data"):
        read_dataset(no_data)


def test_zero_channels_or_samples_warn_and_are_skipped(tmp_path, rng):
    acqs = _lines(rng)
    empty = ismrmrd.Acquisition()
    empty.idx.kspace_encode_step_1 = 2
    acqs.append(empty)
    path = synth.write(tmp_path / "empty.h5", _xml(), acqs)
    with pytest.warns(ReadWarning, match="zero channels or samples"):
        raw = read_dataset(path)
    assert int((~raw.usable).sum()) == 1
    data = sort_cartesian(raw)
    assert int(data.mask.sum()) == 6


def test_channel_count_change_is_an_error(tmp_path, rng):
    acqs = _lines(rng, nc=2) + _lines(rng, n=1, nc=3)
    path = synth.write(tmp_path / "chan.h5", _xml(), acqs)
    with pytest.raises(InputError, match=r"channel count changes mid-scan .*readout 6"):
        read_dataset(path)


def test_counter_outside_matrix_is_an_error_outside_limits_a_warning(tmp_path, rng):
    acqs = _lines(rng)
    acqs[3].idx.kspace_encode_step_1 = 40  # row 40 - 4 + 4 = 40 >= 8
    path = synth.write(tmp_path / "out.h5", _xml(), acqs)
    with pytest.raises(InputError, match=r"kspace_encode_step_1 = 40, outside the encoded"):
        sort_cartesian(read_dataset(path))
    acqs = _lines(rng)
    acqs[3].idx.kspace_encode_step_1 = 7  # inside the matrix (row 7), outside limits 0..5
    path = synth.write(tmp_path / "lim.h5", _xml(), acqs)
    with pytest.warns(SortWarning, match="outside the encoding limits"):
        data = sort_cartesian(read_dataset(path))
    assert bool(data.mask.reshape(-1)[7])


def test_nan_samples_warn_and_become_zero(tmp_path, rng):
    acqs = _lines(rng)
    acqs[2].data[0, 3] = np.nan
    acqs[4].data[1, 0] = np.inf
    path = synth.write(tmp_path / "nan.h5", _xml(), acqs)
    with pytest.warns(ReadWarning, match="2 readout"):
        data = sort_cartesian(read_dataset(path))
    assert np.isfinite(data.kspace).all()
    assert int(np.count_nonzero(data.kspace == 0)) >= 2


def test_header_that_does_not_validate_is_read_leniently():
    xml = _xml(extra="<vendorExtension><foo>1</foo></vendorExtension>")
    with pytest.warns(HeaderWarning, match="does not validate"):
        header = parse_header(xml, "f.h5")
    assert not header.validated and header.encoding.encoded_matrix == (16, 8, 1)
    with pytest.raises(InputError, match="not well-formed"):
        parse_header("<ismrmrdHeader><encoding>", "f.h5")


def test_cli_reports_one_line_and_exit_code_2(tmp_path, rng):
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    result = _cli("info", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "bad.h5" in result.stderr
    assert "Traceback" not in result.stderr
    acqs = _lines(rng, nc=2) + _lines(rng, n=1, nc=3)
    chan = synth.write(tmp_path / "chan.h5", _xml(), acqs)
    result = _cli("info", str(chan))
    assert result.returncode == 2 and "channel count changes" in result.stderr


def test_corrupt_sample_heap_names_the_file(tmp_path, rng):
    """Headers readable, samples not (damaged HDF5 global heaps): error when sorting."""
    xml = _xml(enc_matrix=(256, 8, 1), rec_matrix=(256, 8, 1))
    good = synth.write(tmp_path / "good.h5", xml, _lines(rng, n=6, ns=256))
    content = bytearray(good.read_bytes())
    heaps = [m.start() for m in re.finditer(b"GCOL", bytes(content))]
    assert len(heaps) > 2
    # Keep the XML header's heap and those of the first and last readouts (the reader
    # checks its header offsets against h5py on them); damage the others.
    for start in heaps[2:-1]:
        content[start : start + 4] = b"XXXX"
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(bytes(content))
    raw = read_dataset(damaged)
    assert len(raw) == 6
    with pytest.raises(InputError, match=r"damaged.h5: cannot read readouts 0\.\.5"):
        sort_cartesian(raw)


def test_group_name_other_than_dataset(tmp_path, rng):
    path = tmp_path / "scan.h5"
    dset = ismrmrd.Dataset(str(path), "scan_1", create_if_needed=True)
    dset.write_xml_header(_xml())
    for acq in _lines(rng):
        dset.append_acquisition(acq)
    dset.close()
    assert len(read_dataset(path)) == 6
    with h5py.File(path, "a") as f:
        f.copy("scan_1", "scan_2")
    with pytest.raises(InputError, match="no /dataset group"):
        read_dataset(path)
