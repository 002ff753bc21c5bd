"""Metric writer: JSON lines, TensorBoard events (tensorboardX) read back independently, progress/ETA."""
import glob
import io
import json
import math
import os
import struct

import jax
import jax.numpy as jnp
import pytest

from duml_jax.training import metric_writer as mw


def _event_class():
  """`Event` built from tensorboard's field numbers with protobuf's descriptor API (a decoder
  independent of the writer's own generated classes)."""
  from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
  f = descriptor_pb2.FieldDescriptorProto
  proto = descriptor_pb2.FileDescriptorProto(name="duml_test_event.proto", package="dumltest")
  value = descriptor_pb2.DescriptorProto(name="Value")
  value.field.add(name="tag", number=1, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
  value.field.add(name="simple_value", number=2, type=f.TYPE_FLOAT, label=f.LABEL_OPTIONAL)
  summary = proto.message_type.add(name="Summary")
  summary.nested_type.add().CopyFrom(value)
  summary.field.add(name="value", number=1, type=f.TYPE_MESSAGE, label=f.LABEL_REPEATED,
                    type_name=".dumltest.Summary.Value")
  event = proto.message_type.add(name="Event")
  event.field.add(name="wall_time", number=1, type=f.TYPE_DOUBLE, label=f.LABEL_OPTIONAL)
  event.field.add(name="step", number=2, type=f.TYPE_INT64, label=f.LABEL_OPTIONAL)
  event.field.add(name="file_version", number=3, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
  event.field.add(name="summary", number=5, type=f.TYPE_MESSAGE, label=f.LABEL_OPTIONAL,
                  type_name=".dumltest.Summary")
  pool = descriptor_pool.DescriptorPool()
  pool.Add(proto)
  return message_factory.GetMessageClass(pool.FindMessageTypeByName("dumltest.Event"))


def _crc32c(data):
  """CRC-32C (Castagnoli), bit by bit: slow and independent of the writer."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc ^= byte
    for _ in range(8):
      crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
  return crc ^ 0xFFFFFFFF


def _masked_crc32c(data):
  """TFRecord's masked CRC-32C."""
  crc = _crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _read_records(path):
  """TFRecord reader (what TensorBoard reads) checking both masked CRCs."""
  with open(path, "rb") as f:
    data = f.read()
  records, pos = [], 0
  while pos < len(data):
    header = data[pos:pos + 8]
    (length,) = struct.unpack("<Q", header)
    (len_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
    assert len_crc == _masked_crc32c(header)
    body = data[pos + 12:pos + 12 + length]
    (body_crc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
    assert body_crc == _masked_crc32c(body)
    records.append(body)
    pos += 16 + length
  return records


def test_crc32c_reference_values():
  assert _crc32c(b"123456789") == 0xE3069283   # the CRC-32C check value
  assert _crc32c(bytes(32)) == 0x8A9136AA      # RFC 3720 B.4 test vector (32 zero bytes)


def test_writes_jsonl_and_tensorboard_events(tmp_path):
  clock = iter(float(t) for t in range(1000, 2000, 10)).__next__
  with mw.MetricWriter(tmp_path / "w", total_steps=100, clock=clock) as writer:
    writer.write_scalars(10, {"loss": jnp.float32(1.5), "lr": 5e-3})
    writer.write_scalars(20, {"loss": 0.75, "lr": 5e-3, "cls": jnp.array(0.25)})
  with open(tmp_path / "w" / "metrics.jsonl") as f:
    lines = [json.loads(line) for line in f]
  assert [r["step"] for r in lines] == [10, 20]
  assert lines[0]["loss"] == 1.5 and lines[1]["cls"] == 0.25 and lines[1]["lr"] == 5e-3
  assert "steps_per_sec" in lines[1]

  (path,) = glob.glob(str(tmp_path / "w" / "events.out.tfevents.*"))
  event_cls = _event_class()
  events = [event_cls.FromString(r) for r in _read_records(path)]
  assert events[0].file_version == "brain.Event:2"
  scalars = {(e.step, v.tag): (v.simple_value, e.wall_time)
             for e in events[1:] for v in e.summary.value}
  assert {s for s, _ in scalars} == {10, 20}
  assert scalars[(20, "loss")][0] == 0.75 and scalars[(20, "cls")][0] == 0.25
  assert scalars[(10, "lr")][0] == pytest.approx(5e-3)
  # Stamped with the writer's clock, as metrics.jsonl.
  assert scalars[(10, "loss")][1] == lines[0]["time"] and scalars[(20, "loss")][1] == lines[1]["time"]
  assert "steps_per_sec" in {t for _, t in scalars}


def test_stdout_line_has_step_terms_rate_and_eta(tmp_path, capsys):
  clock = iter([0.0, 10.0]).__next__
  writer = mw.MetricWriter(tmp_path, total_steps=100, tensorboard=False, progress_clock=clock,
                           stdout_keys=("loss",))
  writer.write_scalars(0, {"loss": 2.0, "grad_norm": 3.0})
  writer.write_scalars(50, {"loss": 1.0, "grad_norm": 3.0})
  writer.close()
  lines = capsys.readouterr().out.splitlines()
  assert len(lines) == 2      # one line per call
  assert lines[-1] == "step 50/100 | loss 1 | steps_per_sec 5 | ETA 0:00:10"
  # The files keep every scalar; stdout only the chosen ones.
  with open(tmp_path / "metrics.jsonl") as f:
    assert json.loads(f.readlines()[-1])["grad_norm"] == 3.0
  assert not glob.glob(str(tmp_path / "events.*"))


def test_progress_and_eta():
  times = iter([100.0, 110.0, 130.0])
  progress = mw.ProgressLogger(1000, clock=lambda: next(times))
  first = progress.update(0)
  assert math.isnan(first["steps_per_sec"]) and first["eta_s"] == math.inf
  assert progress.update(100) == {"steps_per_sec": 10.0, "eta_s": 90.0}
  assert progress.update(200) == {"steps_per_sec": 5.0, "eta_s": 160.0}
  assert mw.eta(10, 110, 2.0) == 50.0
  assert mw.format_duration(3725) == "1:02:05"
  assert mw.format_duration(90000) == "1d 1:00:00"
  assert mw.format_duration(math.inf) == "?"


def test_only_process_zero_writes(tmp_path, monkeypatch):
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  writer = mw.MetricWriter(tmp_path / "other")
  writer.write_scalars(1, {"loss": 1.0})
  writer.close()
  assert not os.path.exists(tmp_path / "other")


class _Terminal(io.StringIO):
  def isatty(self):
    return True


def test_progress_bar_only_on_a_terminal():
  log = io.StringIO()
  with mw.progress_bar(4, 1, file=log) as bar:
    bar.update(1)
  assert bar.disable and log.getvalue() == ""
  term = _Terminal()
  with mw.progress_bar(4, 1, file=term) as bar:
    bar.update(1)
    bar.refresh()
    assert "2/4" in term.getvalue()
