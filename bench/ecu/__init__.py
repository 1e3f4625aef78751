"""The bench ECU bootloader simulator: a real UDS server on can-isotp over python-can.

One process hosts the simulated ECUs of a vehicle config on their buses
(``otactl bench ecus --config FILE``). The layers, from the bytes inward:

* :mod:`bench.ecu.cli` is ``otactl bench ecus`` / ``otactl bench bus``: the
  ready line, SIGTERM / SIGINT, exit codes.
* :mod:`bench.ecu.host` opens the buses (and the bench hub) and starts one
  :class:`~bench.ecu.runner.BusRunner` per bus.
* :mod:`bench.ecu.runner` is the loop of one bus: reads its frames, pumps
  the ECUs' ports, drives each pure core with requests and a monotonic clock,
  sends what it answers, wakes for its timers.
* :mod:`bench.ecu.transport` is the can-isotp adapter: an ECU's physical
  ISO-TP channel (the mirror of the tester's ids) and its functional listener.
* :mod:`bench.ecu.bootloader` is the pure UDS server core:
  ``Bootloader.handle(request, now) -> list[Response]``; no I/O but the ECU's
  state directory. Its parts: :mod:`~bench.ecu.session` (session, S3,
  communication control, DTC setting), :mod:`~bench.ecu.security` (seed/key,
  attempts, lock-out), :mod:`~bench.ecu.dids` (0x22 / 0x2E),
  :mod:`~bench.ecu.programming` (erase, download, check routines, banks),
  :mod:`~bench.ecu.flash` (flash memory semantics), :mod:`~bench.ecu.store`
  (persistence), :mod:`~bench.ecu.faults` (fault injection),
  :mod:`~bench.ecu.codec` (response bytes and request field parsing).
* :mod:`bench.ecu.simconfig` parses and validates each ECU's ``sim:`` section.
"""
