"""OpenIPMI's BMC simulator (`ipmi_sim`) as the tests and benchmarks run it: its lanplus
configuration on loopback, its BMC with one fan sensor and a SEL, and a free UDP port."""

from __future__ import annotations

import socket

# ipmi_sim's own configuration language (ipmi_lan(5)): one lanplus channel on loopback, one
# admin user whose password ipmitool reads from a file.
LAN_CONF = """\
name "sentinel-sim"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 {port}
    priv_limit admin
    allowed_auths_callback md5
    allowed_auths_user md5
    allowed_auths_operator md5
    allowed_auths_admin md5
    guid a123456789abcdefa123456789abcdef
  endlan
  user 2 true "sentinel" "{password}" admin 10 md5
"""
# ipmi_sim_cmd(5): a BMC with a SEL, which already holds a fan warning (history, not news),
# and one fan sensor, FAN2 (number 30h, 100 RPM a count), its lower thresholds at 500 (nc),
# 300 (cr) and 100 RPM (nr), spinning at 6400 RPM; its SDR is a Full Sensor Record (IPMI 2.0
# table 43-1) that names it, so that ipmitool prints `FAN2 | 30h | ok | 29.1 | 6400 RPM`.
EMU = """\
mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02
sel_enable 0x20 1000 0x0a
sensor_add 0x20 0 0x30 0x04 0x01
sensor_set_threshold 0x20 0 0x30 settable 000111 0 0 0 0x01 0x03 0x05
sensor_set_event_support 0x20 0 0x30 enable scanning per-state \\
  000000000111111 000000000111111 000000000111111 000000000111111
sensor_set_value 0x20 0 0x30 0x40 0
main_sdr_add 0x20 0x00 0x00 0x51 0x01 0x2f \\
  0x20 0x00 0x30 0x1d 0x01 0x7f 0x68 0x04 0x01 0x3f 0x00 0x3f 0x00 0x3f 0x3f \\
  0x00 0x12 0x00 0x00 0x64 0x00 0x00 0x00 0x00 0x00 0x07 0x40 0x60 0x20 0xff 0x00 \\
  0x00 0x00 0x00 0x01 0x03 0x05 0x00 0x00 0x00 0x00 0x00 0xc4 0x46 0x41 0x4e 0x32
mc_enable 0x20
{history}
"""


def sel_add(sensor_type: int, sensor: int, reading_type: int, data1: int) -> str:
    """`sel_add` of a system event record (IPMI 2.0 table 32-1): the BMC stamps the time;
    generator 0x20 (the BMC), event message rev 4, the sensor, its event type and data."""
    data = [0, 0, 0, 0, 0x20, 0x00, 0x04, sensor_type, sensor, reading_type, data1, 0xFF, 0xFF]
    return "sel_add 0x20 0x02 " + " ".join(f"0x{b:02x}" for b in data)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
