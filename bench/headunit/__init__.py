"""The bench head unit: the driver's display in the car, speaking the HMI agent's SOME/IP service.

:mod:`bench.headunit.client` is the library (also behind ``otactl hmi --someip``);
``python -m bench.headunit`` the process (:mod:`bench.headunit.__main__`).
"""
