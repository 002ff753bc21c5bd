"""Scalar metrics to stdout, `metrics.jsonl` and TensorBoard event files, without TensorFlow.

clu's metric writers import TensorFlow, and neither `tensorboard` nor `tensorboardX` is a
dependency here, so the event file is written directly. Its format (TFRecord framing of
`tensorflow.Event` protobufs) is small and stable:

  record  = uint64 length (LE) | uint32 masked_crc32c(length bytes)
            | data | uint32 masked_crc32c(data)
  masked  = ((crc >> 15) | (crc << 17)) + 0xa282ead8  (mod 2^32), crc32c = Castagnoli polynomial
  Event   = 1: double wall_time, 2: int64 step, 3: string file_version, 5: Summary summary
  Summary = 1: repeated Value value;  Value = 1: string tag, 2: float simple_value

The first record of a file is Event{wall_time, file_version="brain.Event:2"}, as TensorBoard
expects. Only process 0 writes anything.
"""
import json
import math
import os
import socket
import struct
import time
from typing import Any, Callable, Mapping

import jax
import numpy as np
from absl import logging

METRICS_FILE = "metrics.jsonl"
_CRC32C_POLY = 0x82F63B78  # reflected Castagnoli polynomial


def _crc32c_table() -> tuple[int, ...]:
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ _CRC32C_POLY if crc & 1 else crc >> 1
    table.append(crc)
  return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  """CRC-32C (Castagnoli) of `data`; crc32c(b'123456789') == 0xE3069283."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
  """One TFRecord: length, masked CRC of the length, data, masked CRC of the data."""
  length = struct.pack("<Q", len(data))
  return (length + struct.pack("<I", masked_crc32c(length)) + data
          + struct.pack("<I", masked_crc32c(data)))


def _varint(value: int) -> bytes:
  value &= 0xFFFFFFFFFFFFFFFF  # int64 two's complement, as protobuf encodes negative ints
  out = bytearray()
  while True:
    bits = value & 0x7F
    value >>= 7
    if value:
      out.append(bits | 0x80)
    else:
      out.append(bits)
      return bytes(out)


def _len_delimited(field: int, payload: bytes) -> bytes:
  return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def encode_event(wall_time: float, step: int | None = None, file_version: str | None = None,
                 scalars: Mapping[str, float] | None = None) -> bytes:
  """Serialised `tensorflow.Event` protobuf (wire format written by hand)."""
  out = bytearray(_varint(1 << 3 | 1) + struct.pack("<d", wall_time))
  if step is not None:
    out += _varint(2 << 3 | 0) + _varint(int(step))
  if file_version is not None:
    out += _len_delimited(3, file_version.encode())
  if scalars:
    summary = b"".join(
        _len_delimited(1, _len_delimited(1, tag.encode()) + _varint(2 << 3 | 5)
                       + struct.pack("<f", float(value)))
        for tag, value in scalars.items())
    out += _len_delimited(5, summary)
  return bytes(out)


class EventFileWriter:
  """Appends scalar summaries to `logdir/events.out.tfevents.<time>.<host>`."""

  def __init__(self, logdir: str, clock: Callable[[], float] = time.time):
    os.makedirs(logdir, exist_ok=True)
    self._clock = clock
    self.path = os.path.join(
        logdir, f"events.out.tfevents.{int(clock())}.{socket.gethostname()}.{os.getpid()}")
    self._file = open(self.path, "ab")
    self._file.write(tfrecord(encode_event(clock(), file_version="brain.Event:2")))
    self._file.flush()

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    self._file.write(tfrecord(encode_event(self._clock(), step=step, scalars=scalars)))

  def flush(self) -> None:
    self._file.flush()

  def close(self) -> None:
    self._file.close()


def format_duration(seconds: float) -> str:
  """'H:MM:SS' ('Nd H:MM:SS' beyond a day); '?' when unknown."""
  if seconds is None or not math.isfinite(seconds):
    return "?"
  seconds = int(round(max(seconds, 0.0)))
  days, seconds = divmod(seconds, 86400)
  hours, seconds = divmod(seconds, 3600)
  minutes, seconds = divmod(seconds, 60)
  text = f"{hours}:{minutes:02d}:{seconds:02d}"
  return f"{days}d {text}" if days else text


def eta(step: int, total_steps: int, steps_per_sec: float) -> float:
  """Seconds left to reach `total_steps` at `steps_per_sec` (inf if the rate is unknown)."""
  if not steps_per_sec or not math.isfinite(steps_per_sec) or steps_per_sec <= 0:
    return math.inf
  return max(total_steps - step, 0) / steps_per_sec


class ProgressLogger:
  """Steps/s between successive `update` calls and the ETA to `total_steps`.

  The first call only records the reference point (it would otherwise count compilation time).
  """

  def __init__(self, total_steps: int, clock: Callable[[], float] = time.monotonic):
    self.total_steps = int(total_steps)
    self._clock = clock
    self._last = None  # (step, time)

  def update(self, step: int) -> dict[str, float]:
    """{'steps_per_sec': rate or nan, 'eta_s': seconds or inf} at `step`."""
    now = self._clock()
    rate = math.nan
    if self._last is not None and now > self._last[1] and step > self._last[0]:
      rate = (step - self._last[0]) / (now - self._last[1])
    self._last = (step, now)
    return {"steps_per_sec": rate, "eta_s": eta(step, self.total_steps, rate)}


def _to_float(value: Any) -> float:
  return float(np.asarray(jax.device_get(value)))


class MetricWriter:
  """Writes scalars to stdout (absl logging), `workdir/metrics.jsonl` and TensorBoard events.

  With `total_steps`, every `write_scalars` call adds 'steps_per_sec' (all sinks) and the ETA
  (stdout). Only process 0 writes; other processes' calls do nothing. `clock` stamps records
  (wall time), `progress_clock` times steps/s.
  """

  def __init__(self, workdir: str | os.PathLike, total_steps: int | None = None,
               tensorboard: bool = True, log_to_stdout: bool = True,
               clock: Callable[[], float] = time.time,
               progress_clock: Callable[[], float] = time.monotonic):
    self.workdir = os.path.abspath(os.fspath(workdir))
    self.enabled = jax.process_index() == 0
    self._clock = clock
    self._log = log_to_stdout
    self._total = total_steps
    self._progress = (ProgressLogger(total_steps, clock=progress_clock)
                      if total_steps else None)
    self._jsonl = self._events = None
    if self.enabled:
      os.makedirs(self.workdir, exist_ok=True)
      self._jsonl = open(os.path.join(self.workdir, METRICS_FILE), "a")
      if tensorboard:
        self._events = EventFileWriter(self.workdir, clock=clock)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    if not self.enabled:
      return
    step = int(step)
    values = {k: _to_float(v) for k, v in scalars.items()}
    eta_s = None
    if self._progress is not None:
      progress = self._progress.update(step)
      eta_s = progress["eta_s"]
      if math.isfinite(progress["steps_per_sec"]):
        values["steps_per_sec"] = progress["steps_per_sec"]
    record = {"step": step, "time": self._clock(), **values}
    self._jsonl.write(json.dumps(record, allow_nan=True) + "\n")
    if self._events is not None:
      self._events.write_scalars(step, values)
    if self._log:
      total = f"/{self._total}" if self._total else ""
      terms = " | ".join(f"{k} {v:.5g}" for k, v in values.items())
      tail = f" | ETA {format_duration(eta_s)}" if eta_s is not None else ""
      logging.info("step %d%s | %s%s", step, total, terms, tail)

  def flush(self) -> None:
    if self.enabled:
      self._jsonl.flush()
      if self._events is not None:
        self._events.flush()

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      if self._events is not None:
        self._events.close()
      self.enabled = False

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
