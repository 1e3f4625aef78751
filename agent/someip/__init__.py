"""SOME/IP and SOME/IP-SD (AUTOSAR PRS_SOMEIP / PRS_SOMEIPSD) for Ethernet ECUs and the head unit.

Pure codecs: :mod:`message` (header), :mod:`serialization` (payload types), :mod:`sd_message`
(SD entries and options); pure logic: :mod:`sd_timing` (initial wait / repetition / main),
:mod:`sd_session` (session counters, reboot detection), :mod:`sd_registry` (TTL tables);
asyncio sessions at the edge: :mod:`transport`, :mod:`discovery`, :mod:`provider`, :mod:`consumer`.
"""
