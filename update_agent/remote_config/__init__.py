"""Remote configuration: feature switches written to ECUs without flashing (FAW paper, 3.4).

=====================================================  ===============================================
:mod:`update_agent.remote_config.codec`                a value's text <-> bytes (pure)
:mod:`update_agent.remote_config.items`                the configuration items file (YAML), validated
:mod:`update_agent.remote_config.broadcast`            the DBC frame of a broadcast item (cantools)
:mod:`update_agent.remote_config.change`               a change: version gate, previous values, write,
                                                       read-back, rollback (pure, ECU access injected)
:mod:`update_agent.remote_config.access`               that access over UDS sessions and the CAN links
=====================================================  ===============================================

Two ways to write an item. *Diagnostic*: UDS WriteDataByIdentifier of the item's
DID, in the session and security level the ECU requires, one ECU addressed at a
time. *Broadcast*: one CAN message of the vehicle DBC that every ECU concerned
applies at once. Either way every ECU concerned is read back over UDS
(ReadDataByIdentifier) to confirm, and a change that any ECU fails to confirm
puts every ECU back on the value it had before.
"""
