"""The bench CAN bus: a lossless, cross-process CAN transport without kernel CAN.

``hub`` relays frames between processes over Unix stream sockets (one socket
per channel) in one total order, like a bus; ``interface`` is the python-can
``BusABC`` (interface name ``benchhub``) that processes open with
``can.Bus(interface="benchhub", channel=...)``. On a board the same vehicle
config uses ``interface: socketcan`` and ``channel: can0``.

``faults`` injects bus faults per channel (drop, delay, a detected error with
retransmission, an undetected corruption), seeded; ``control`` is the hub's
control socket to set them at run time (``otactl bench bus-faults``, ``cli``).
"""
