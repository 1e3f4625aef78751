"""The update agent of a Linux ECU that downloads its own packages (issue 8, independent download).

It runs ON the Linux ECU next to the ECU's own ``ota-dmclient``: the gateway's engine orders
the download over SOME/IP (:mod:`.service`, :mod:`.client`), the ECU verifies the Director's
targets metadata against its own Director root (:mod:`.partial`), downloads straight from the
backend into its own cache, and installs into an A/B directory slot (:mod:`.slots`). The
daemon is :mod:`.daemon` (``ota-ecu-agent``).
"""
