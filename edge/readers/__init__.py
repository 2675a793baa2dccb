"""Reader and door-counter protocols: pure codecs (one module per protocol), transports, drivers.

Build a driver from (protocol, port-or-topic, options)::

    from edge.readers import PROTOCOLS, build_driver

    drv = build_driver("impinj-r2000", "R1", port="/dev/ttyUSB0", antennas=[1, 2], cycle_s=0.2)
    drv = build_driver("zebra-iot", "R7", topic="zebra/fx9600/data",
                       broker={"host": "127.0.0.1", "port": 1883})
    drv.start(sink)           # sink(list[TagRead | DoorCount]) is called from the driver's thread
    drv.health()              # last_frame_us, frames_per_s, checksum_errors, reconnects, connected, ...
    drv.stop()

The agent uses the config entry directly: ``PROTOCOLS[device.protocol](device, config)`` with an
``edge.config.ReaderConfig``/``DoorConfig`` (serial port/baud, or mqtt topic on ``device.mqtt.broker``
or ``config.source_broker``; ``device.options`` are the protocol options below).

| protocol | kind | transport | options |
| --- | --- | --- | --- |
| impinj-r2000 | reader | serial 115200 | variant (4port, 8port), antennas, repeat, address, cycle_s, round_timeout_s |
| chafon-288m | reader | serial 57600 | variant (288m, 288m-8port), antennas, scan_time_100ms, q_value, address, cycle_s |
| impinj-iot | reader | mqtt | qos |
| zebra-iot | reader | mqtt | qos |
| irisys | door | mqtt | in_registers, out_registers, qos |
| milesight | door | mqtt | line, qos |
| terabee-evo | door | serial 115200 | variant (evo-people-counter, evo-swipe-plus), swap |

Serial protocols have no reader clock (``TagRead.ts_us`` is None: use the receive time); MQTT ones
carry the device's timestamp. Parsers alone: ``build_parser(protocol, device_id, **options)``.
"""

from edge.readers.base import DoorCount, Driver, Parser, ParserStats, Record, Sink, TagRead
from edge.readers.registry import PROTOCOLS, ProtocolSpec, build_driver, build_parser

__all__ = ["PROTOCOLS", "ProtocolSpec", "build_driver", "build_parser", "TagRead", "DoorCount", "Record",
           "ParserStats", "Parser", "Driver", "Sink"]
