"""Erase with NRC 0x78, RequestDownload / TransferData / RequestTransferExit, check routines."""

from __future__ import annotations

import zlib
from collections.abc import Callable

from bench.appimage import build_image

from .support import ENGINE_APP, ENGINE_CAL, Tester

MakeCore = Callable[..., Tester]
ERASE_OK = bytes.fromhex("7101ff0000")


def _erase_request(address: int, size: int) -> bytes:
    return bytes([0x31, 0x01, 0xFF, 0x00, 0x44]) + address.to_bytes(4, "big") + size.to_bytes(4, "big")


def test_erase_answers_response_pending_until_done(make_core: MakeCore) -> None:
    t = make_core("engine", erase_time=2.0, response_pending_interval=0.5)
    t.unlock()
    first = t.send(_erase_request(ENGINE_APP, 0x8000))
    assert [r.data for r in first] == [bytes.fromhex("7f3178")]
    assert t.poll(0.3) == []
    pending = 0
    while True:
        responses = t.poll(0.25)
        if responses and not responses[0].is_pending:
            break
        pending += len(responses)
    assert responses[0].data == ERASE_OK
    assert pending == 3  # at 0.5, 1.0, 1.5 s; the answer at 2.0 s
    assert t.core.next_deadline() is not None  # S3 of the programming session


def test_requests_during_erase_get_busy_but_tester_present_is_served(make_core: MakeCore) -> None:
    t = make_core("engine", erase_time=2.0)
    t.unlock()
    t.send(_erase_request(ENGINE_APP, 0x1000))
    assert t.nrc("22f189") == 0x21  # busyRepeatRequest
    assert t.one("3e00") == b"\x7e\x00"
    assert t.send("3e80", functional=True) == []
    t.clock.advance(2.0)
    assert [r.data for r in t.core.poll(t.clock())] == [ERASE_OK]


def test_erase_preconditions(make_core: MakeCore) -> None:
    t = make_core("engine")
    t.one("1003")
    assert t.nrc(_erase_request(ENGINE_APP, 0x100)) == 0x31  # not in the extended session
    t.one("1002")
    assert t.nrc(_erase_request(ENGINE_APP, 0x100)) == 0x33  # security
    t.one("1001")
    t.unlock()
    assert t.nrc(_erase_request(ENGINE_APP + 0x7F00, 0x200)) == 0x31  # leaves the region
    assert t.nrc(_erase_request(0x0, 0x10)) == 0x31
    assert t.nrc("3101ff0044000100") == 0x13  # truncated record
    assert t.nrc("3101ff00000001000000000100") == 0x31  # bad addressAndLengthFormatIdentifier
    assert t.nrc("3101abcd") == 0x31  # unknown routine
    assert t.nrc("3103ff00") == 0x12  # only startRoutine


def test_check_preconditions_routine_in_extended_session(make_core: MakeCore) -> None:
    t = make_core("engine")
    assert t.nrc("31010203") == 0x7F
    t.one("1003")
    assert t.one("31010203") == bytes.fromhex("7101020300")


def test_full_single_bank_flash_changes_the_version_after_reset(make_core: MakeCore) -> None:
    t = make_core("engine")
    image = build_image("1.1.0", "ENG-4711", 3000)
    t.flash(image, ENGINE_APP, erase_size=0x8000)
    assert t.version() == "1.0.0"  # still the running image until the reset
    assert t.one("1101") == b"\x51\x01"
    assert t.version() == "1.1.0"
    assert t.core.programming.banks[0].read(ENGINE_APP, len(image)) == image


def test_request_download_answers_max_block_length(make_core: MakeCore) -> None:
    t = make_core("engine", max_block_length=0x802)
    t.unlock()
    t.erase(ENGINE_APP, 0x1000)
    # lengthFormatIdentifier 0x20: two bytes of maxNumberOfBlockLength = 0x0802
    assert t.request_download(ENGINE_APP, 0x1000) == bytes.fromhex("74200802")


def test_request_download_refusals(make_core: MakeCore) -> None:
    t = make_core("engine")
    assert t.nrc("3400440001000000000100") == 0x70  # default session
    t.one("1003")
    t.one("1002")
    assert t.nrc("3400440001000000000100") == 0x33  # security
    t.one("1001")
    t.unlock()
    assert t.nrc("3400440001000000000100") == 0x70  # the initial image is there: not erased
    t.erase(ENGINE_APP, 0x8000)
    assert t.nrc("3400440000000000000100") == 0x70  # outside every region
    assert t.nrc("3400440001000000008001") == 0x70  # one byte past the region
    assert t.nrc("3400440001000000000000") == 0x70  # nothing to download
    assert t.nrc("3411440001000000000100") == 0x31  # compression not supported
    assert t.nrc("340044000100000000") == 0x13  # truncated
    assert t.request_download(ENGINE_APP, 0x100)[0] == 0x74
    assert t.nrc("3400440001010000000100") == 0x70  # a download is already active


def test_block_counter_wraps_across_more_than_256_blocks(make_core: MakeCore) -> None:
    # 16 data bytes a block: 300 blocks, counters 01..FF, 00, 01..2C
    t = make_core("engine", max_block_length=18)
    image = build_image("1.2.0", "ENG-4711", 16 * 300)
    t.unlock()
    t.erase(ENGINE_APP, 0x8000)
    t.request_download(ENGINE_APP, len(image))
    counters = []
    for n in range(300):
        counter = (n + 1) & 0xFF
        counters.append(counter)
        assert t.one(bytes([0x36, counter]) + image[16 * n:16 * (n + 1)]) == bytes([0x76, counter])
    assert counters[254:257] == [0xFF, 0x00, 0x01]
    assert t.one("37") == b"\x77"
    assert t.check_memory(zlib.crc32(image)) == bytes.fromhex("7101020200")
    assert t.core.programming.banks[0].read(ENGINE_APP, len(image)) == image


def test_repeated_last_block_is_acknowledged_and_not_written_twice(make_core: MakeCore) -> None:
    t = make_core("engine", max_block_length=0x102)
    image = bytes(range(256)) * 3
    t.unlock()
    t.erase(ENGINE_APP, 0x1000)
    t.request_download(ENGINE_APP, len(image))
    assert t.one(b"\x36\x01" + image[:256]) == b"\x76\x01"
    # the tester did not see the answer and repeats the block, even with other bytes
    assert t.one(b"\x36\x01" + b"\xaa" * 256) == b"\x76\x01"
    assert t.one(b"\x36\x02" + image[256:512]) == b"\x76\x02"
    assert t.one(b"\x36\x03" + image[512:]) == b"\x76\x03"
    assert t.one("37") == b"\x77"
    assert t.core.programming.banks[0].read(ENGINE_APP, len(image)) == image
    assert t.check_memory(zlib.crc32(image)) == bytes.fromhex("7101020200")


def test_wrong_block_counter_is_0x73(make_core: MakeCore) -> None:
    t = make_core("engine")
    t.unlock()
    t.erase(ENGINE_APP, 0x1000)
    t.request_download(ENGINE_APP, 0x200)
    assert t.nrc(b"\x36\x02" + bytes(0x100)) == 0x73  # the first block is 1
    assert t.one(b"\x36\x01" + bytes(0x100)) == b"\x76\x01"
    assert t.nrc(b"\x36\x03" + bytes(0x100)) == 0x73
    assert t.nrc(b"\x36\x00" + bytes(0x100)) == 0x73
    assert t.one(b"\x36\x02" + bytes(0x100)) == b"\x76\x02"  # the transfer goes on


def test_transfer_data_limits(make_core: MakeCore) -> None:
    t = make_core("engine", max_block_length=0x102)
    t.unlock()
    assert t.nrc(b"\x36\x01" + bytes(16)) == 0x24  # no download active
    t.erase(ENGINE_APP, 0x1000)
    t.request_download(ENGINE_APP, 0x180)
    assert t.nrc(b"\x36\x01" + bytes(0x101)) == 0x13  # longer than maxNumberOfBlockLength
    assert t.nrc(b"\x36\x01") == 0x13
    assert t.one(b"\x36\x01" + bytes(0x100)) == b"\x76\x01"
    assert t.nrc(b"\x36\x02" + bytes(0x100)) == 0x71  # more than requested: transfer suspended
    assert t.nrc(b"\x36\x02" + bytes(0x80)) == 0x24  # ... and over
    assert t.nrc("37") == 0x24


def test_transfer_exit_with_bytes_missing(make_core: MakeCore) -> None:
    t = make_core("engine")
    t.unlock()
    t.erase(ENGINE_APP, 0x1000)
    t.request_download(ENGINE_APP, 0x200)
    t.one(b"\x36\x01" + bytes(0x100))
    assert t.nrc("37") == 0x24
    t.one(b"\x36\x02" + bytes(0x100))
    assert t.one("37") == b"\x77"
    assert t.nrc("37") == 0x24


def test_check_memory_covers_every_segment_in_address_order(make_core: MakeCore) -> None:
    t = make_core("engine")
    app = build_image("1.3.0", "ENG-4711", 0x300)
    cal = bytes(range(256)) * 2
    t.unlock()
    t.erase(ENGINE_CAL, 0x1000)
    t.erase(ENGINE_APP, 0x8000)
    for address, data in ((ENGINE_CAL, cal), (ENGINE_APP, app)):  # sent out of address order
        t.request_download(address, len(data))
        t.transfer(data)
        t.one("37")
    assert t.check_memory(zlib.crc32(cal, zlib.crc32(app))) == bytes.fromhex("7101020200")
    assert t.check_memory(zlib.crc32(app + cal) ^ 1) == bytes.fromhex("7101020201")
    assert t.nrc("3101020201020304ff") == 0x13


def test_check_programming_dependencies(make_core: MakeCore) -> None:
    t = make_core("engine")
    t.unlock()
    t.erase(ENGINE_APP, 0x8000)
    assert t.one("3101ff01") == bytes.fromhex("7101ff0101")  # erased: no application header
    image = build_image("1.4.0", "ENG-4711", 0x400)
    t.request_download(ENGINE_APP, 0x300)
    t.transfer(image[:0x300])  # header but not the whole image: CRC in the header fails
    t.one("37")
    assert t.one("3101ff01") == bytes.fromhex("7101ff0101")


def test_programming_a_cell_twice_is_refused(make_core: MakeCore) -> None:
    t = make_core("engine")
    t.unlock()
    t.erase(ENGINE_APP, 0x1000)
    t.request_download(ENGINE_APP, 0x100)
    t.transfer(bytes(0x100))
    t.one("37")
    assert t.nrc("3400440001000000000100") == 0x70  # programmed: must be erased again
    assert t.nrc("3400440001008000000100") == 0x70  # overlaps
    assert t.request_download(ENGINE_APP + 0x100, 0x100)[0] == 0x74  # the rest is still erased


def test_session_change_abandons_the_transfer(make_core: MakeCore) -> None:
    t = make_core("engine")
    t.unlock()
    t.erase(ENGINE_APP, 0x1000)
    t.request_download(ENGINE_APP, 0x200)
    t.one(b"\x36\x01" + bytes(0x100))
    t.one("1003")
    t.one("1002")
    assert t.nrc(b"\x36\x02" + bytes(0x100)) == 0x24
