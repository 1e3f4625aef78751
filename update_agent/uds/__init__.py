"""The UDS session layer: udsoncan over can-isotp (python stack or the Linux kernel socket).

``api`` is the seam the flash sequencer and the version reader program
against; ``client`` implements it over a udsoncan Client; ``transport``
builds the ISO-TP connection from the vehicle config; ``tester_present``
keeps sessions alive with functional TesterPresent; ``nrc`` names codes.
"""
