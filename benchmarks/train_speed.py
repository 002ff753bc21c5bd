"""Training examples/s, peak memory and input-wait share of the DuML train step.

Prints one JSON object. The step is the library's: `objectives.make_loss_fn`
(pair-wise or sequence-wise by form) under `parallel.make_train_step`
(shard_map over the devices, SGD update, NaN guard). Batches come from the
real data iterator (`data.pipeline.make_train_iterator`, grain, in-process
reader threads) on a small synthetic dataset generated into a temporary
directory (the paper preset's model runs on the same synthetic crops: crop
sizes do not depend on the dataset). Timed per step: waiting for `next(it)`
and the step itself (outputs waited for); input_wait_frac = wait / total.
Peak memory: process max RSS on CPU, `memory_stats()` where the backend has
it. Compile time (first step) is reported separately.

  python benchmarks/train_speed.py --config tiny --steps 3
  python benchmarks/train_speed.py --config paper --batch 2 --steps 2
"""
import argparse
import contextlib
import os
import sys
import tempfile
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from configs import duml as duml_configs  # noqa: E402
from duml_jax.data import pipeline as data_pipeline  # noqa: E402
from duml_jax.models import duml as duml_lib  # noqa: E402
from duml_jax.training import objectives  # noqa: E402
from duml_jax.training import parallel  # noqa: E402
from duml_jax.training import trainer  # noqa: E402


def make_config(name, batch, workdir, videos):
  cfg = duml_configs.get_config(name)
  tiny = duml_configs.get_config("tiny")
  cfg.unlock()
  if batch:
    cfg.batch_size = batch
  cfg.data = tiny.data
  cfg.data.data_root = os.path.join(workdir, "data")
  cfg.data.tfds_dir = os.path.join(workdir, "tfds")
  cfg.data.synthetic.num_videos = videos
  cfg.data.synthetic.num_frames = 30
  cfg.optim.backbone_freeze_epochs = 0
  cfg.lock()
  return cfg


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--config", default="tiny", help="tiny | paper | any get_config arg")
  p.add_argument("--batch", type=int, default=0, help="global batch (0: the config's)")
  p.add_argument("--steps", type=int, default=3, help="timed steps after the first")
  p.add_argument("--videos", type=int, default=8, help="synthetic videos generated")
  p.add_argument("--online-filter", default="conv",
                 help="conv (library) | taps (proposed fix, patched in this process)")
  args = p.parse_args(argv)
  common.use_online_filter(args.online_filter)

  with tempfile.TemporaryDirectory() as workdir:
    cfg = make_config(args.config, args.batch, workdir, args.videos)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):   # TFDS progress: keep stdout one JSON object
      it = data_pipeline.make_train_iterator(
          trainer.data_config(cfg), process_index=0, process_count=1,
          global_batch_size=cfg.batch_size, seed=0)
    data_prep = time.perf_counter() - t0
    mesh = parallel.make_mesh()
    model = duml_lib.build_model(cfg.model, axis_name=parallel.DATA_AXIS)
    state = parallel.replicate(trainer.create_train_state(cfg, model, jax.random.PRNGKey(0)),
                               mesh)
    step_fn = parallel.make_train_step(objectives.make_loss_fn(model, cfg), mesh,
                                       donate=jax.default_backend() != "cpu")
    flags = {"train": True, "backbone_train": True}
    result = common.header("train_speed", args.config)
    result["online_filter"] = args.online_filter
    result.update(batch_size=cfg.batch_size, mode=objectives.training_mode(cfg.model),
                  form=f"{cfg.model.offline}+{cfg.model.online}", backbone=cfg.model.backbone,
                  data_prepare_s=round(data_prep, 1))
    t0 = time.perf_counter()
    batch = next(it)
    first_wait = time.perf_counter() - t0
    t0 = time.perf_counter()
    state, metrics = step_fn(state, parallel.shard_batch(batch, mesh), flags)
    jax.block_until_ready(metrics)
    result["first_step_s"] = round(time.perf_counter() - t0, 2)
    result["first_batch_wait_s"] = round(first_wait, 2)
    waits, steps = [], []
    for _ in range(args.steps):
      t0 = time.perf_counter()
      batch = next(it)
      t1 = time.perf_counter()
      state, metrics = step_fn(state, parallel.shard_batch(batch, mesh), flags)
      jax.block_until_ready(metrics)
      waits.append(t1 - t0)
      steps.append(time.perf_counter() - t1)
    it.close()
    total = sum(waits) + sum(steps)
    n = jax.device_count()
    result.update(
        steps_timed=args.steps, step=common.summary(steps), input_wait=common.summary(waits),
        input_wait_frac=round(sum(waits) / total, 4),
        examples_per_s=round(cfg.batch_size * args.steps / total, 3),
        examples_per_s_per_device=round(cfg.batch_size * args.steps / total / n, 3),
        examples_per_s_compute_only=round(cfg.batch_size * args.steps / sum(steps), 3),
        loss=float(metrics["loss"]), device_memory=common.device_memory())
  common.finish(result)


if __name__ == "__main__":
  main()
