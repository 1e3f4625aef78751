"""Images load into the segments that go on the bus; bad files are refused with line and reason."""

from __future__ import annotations

import zlib
from pathlib import Path

import bincopy
import pytest

from agent.config.vehicle import VehicleConfig
from agent.errors import ConfigurationError
from bench.appimage import build_image, to_hex
from update_agent.images import load_image, map_segments


def _hex_with_gap(path: Path) -> Path:
    bf = bincopy.BinFile()
    bf.add_binary(b"\xaa" * 300, address=0x10000)
    bf.add_binary(b"\xbb" * 100, address=0x10400)
    path.write_text(bf.as_ihex())
    return path


def test_intel_hex_becomes_one_segment_with_the_image_bytes(tmp_path: Path) -> None:
    image = build_image("1.1.0", "ENG-4711", 4096)
    path = tmp_path / "app.hex"
    path.write_text(to_hex(image, 0x10000))
    loaded = load_image(path)
    assert loaded.format == "ihex"
    assert [(s.address, s.data) for s in loaded.segments] == [(0x10000, image)]
    assert loaded.crc32 == zlib.crc32(image)


def test_srecord_and_binary_give_the_same_segments(tmp_path: Path) -> None:
    image = build_image("1.1.0", "ENG-4711", 2048)
    srec = tmp_path / "app.s19"
    srec.write_text(to_hex(image, 0x20000, fmt="srec"))
    raw = tmp_path / "app.bin"
    raw.write_bytes(image)
    a = load_image(srec)
    b = load_image(raw, base_address=0x20000)
    assert a.segments == b.segments
    assert a.format == "srec" and b.format == "bin"


def test_gaps_make_separate_segments_in_address_order(tmp_path: Path) -> None:
    loaded = load_image(_hex_with_gap(tmp_path / "gap.hex"))
    assert [(s.address, len(s.data)) for s in loaded.segments] == [(0x10000, 300), (0x10400, 100)]
    assert loaded.size == 400
    assert loaded.crc32 == zlib.crc32(b"\xaa" * 300 + b"\xbb" * 100)


def test_a_corrupt_checksum_names_the_line(tmp_path: Path) -> None:
    lines = to_hex(build_image("1", "P", 256), 0x10000).splitlines()
    record = lines[2]
    lines[2] = record[:-2] + ("00" if record[-2:] != "00" else "01")
    path = tmp_path / "bad.hex"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigurationError) as err:
        load_image(path)
    assert str(path) in str(err.value)
    assert "line 3: malformed ihex file" in str(err.value)
    assert "crc" in str(err.value)


def test_garbage_in_a_hex_record_names_the_line(tmp_path: Path) -> None:
    lines = to_hex(build_image("1", "P", 256), 0x10000).splitlines()
    lines[4] = lines[4][:9] + "ZZ" + lines[4][11:]
    path = tmp_path / "bad.hex"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigurationError, match="line 5: malformed ihex file"):
        load_image(path)


def test_a_truncated_hex_file_is_refused(tmp_path: Path) -> None:
    lines = to_hex(build_image("1", "P", 1024), 0x10000).splitlines()
    path = tmp_path / "cut.hex"
    path.write_text("\n".join(lines[:10]) + "\n")
    with pytest.raises(ConfigurationError, match="no end-of-file record"):
        load_image(path)


def test_a_malformed_s19_names_the_line(tmp_path: Path) -> None:
    lines = to_hex(build_image("1", "P", 512), 0x10000, fmt="srec").splitlines()
    lines[3] = lines[3][:-4]  # record shorter than its count says
    path = tmp_path / "bad.s19"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigurationError, match="line 4: malformed srec file"):
        load_image(path)


def test_a_truncated_s19_is_refused(tmp_path: Path) -> None:
    lines = to_hex(build_image("1", "P", 512), 0x10000, fmt="srec").splitlines()
    data = [line for line in lines if line.startswith(("S1", "S2", "S3"))]
    count = next(line for line in lines if line.startswith("S5"))
    cut = tmp_path / "cut.s19"
    cut.write_text("\n".join([*data[:-3], count]) + "\n")
    with pytest.raises(ConfigurationError, match=f"count record says {len(data)} data records, the file has "
                                                 f"{len(data) - 3}"):
        load_image(cut)
    bare = tmp_path / "bare.s19"
    bare.write_text("\n".join(data[:-3]) + "\n")
    with pytest.raises(ConfigurationError, match="neither a count"):
        load_image(bare)
    terminated = tmp_path / "terminated.s19"
    terminated.write_text("\n".join([*data, "S9030000FC"]) + "\n")
    assert load_image(terminated).size == 512


def test_binary_needs_a_base_address_and_text_formats_refuse_one(tmp_path: Path) -> None:
    raw = tmp_path / "app.bin"
    raw.write_bytes(b"\x01" * 64)
    with pytest.raises(ConfigurationError, match="needs a base address"):
        load_image(raw)
    hexfile = tmp_path / "app.hex"
    hexfile.write_text(to_hex(b"\x01" * 64, 0x10000))
    with pytest.raises(ConfigurationError, match="raw binary images only"):
        load_image(hexfile, base_address=0x10000)


def test_unknown_suffix_asks_for_the_format(tmp_path: Path) -> None:
    path = tmp_path / "app.dat"
    path.write_text(to_hex(b"\x01" * 64, 0x10000))
    with pytest.raises(ConfigurationError, match="pass --format"):
        load_image(path)
    assert load_image(path, fmt="ihex").size == 64


def test_empty_and_missing_files_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.hex"
    empty.write_text(":00000001FF\n")
    with pytest.raises(ConfigurationError, match="holds no data"):
        load_image(empty)
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_image(tmp_path / "missing.hex")


def test_segments_map_onto_regions(tmp_path: Path, bench_vehicle: VehicleConfig) -> None:
    engine = bench_vehicle.ecu("engine")
    loaded = load_image(_hex_with_gap(tmp_path / "gap.hex"))
    mapped = map_segments(loaded, engine.memory, "engine")
    assert [(s.address, r.name) for s, r in mapped] == [(0x10000, "application"), (0x10400, "application")]


@pytest.mark.parametrize(("address", "size"), [(0x0, 256), (0x8FF00, 0x200), (0x90000, 16)])
def test_an_image_outside_the_memory_map_is_refused(tmp_path: Path, bench_vehicle: VehicleConfig,
                                                    address: int, size: int) -> None:
    path = tmp_path / "out.hex"
    path.write_text(to_hex(b"\x5a" * size, address))
    loaded = load_image(path)
    with pytest.raises(ConfigurationError) as err:
        map_segments(loaded, bench_vehicle.ecu("engine").memory, "engine")
    message = str(err.value)
    assert f"segment {address:#010x}" in message
    assert "outside the memory map of engine (application 0x00010000-0x00090000)" in message
