"""`train(config, workdir)`: the training loop (train.py runs it through
`duml_jax.experiments.train_eval.train_and_evaluate`).

Data-parallel over every device of every host (`parallel.make_train_step`,
`jax.shard_map` over a ('data',) mesh), orbax checkpoints with exact resume
(params, optimiser state, step, rng; the data stream is a pure function of
(seed, step), so the step is its whole position), metrics to stdout,
`metrics.jsonl` and TensorBoard events, and a NaN/Inf stop naming the step.
Evaluation is not imported here (docs/architecture.md): `eval_variables`
hands the trained variables to whoever evaluates them.
"""
import os
import time

from absl import logging
import jax
import ml_collections

from duml_jax import checkpoint as ckpt_lib
from duml_jax import config_lib
from duml_jax.data import pipeline as data_pipeline
from duml_jax.models import duml as duml_lib
from duml_jax.training import metric_writer
from duml_jax.training import objectives
from duml_jax.training import optim
from duml_jax.training import parallel
from duml_jax.training import train_state as train_state_lib


# What the console line of each log step shows (metrics.jsonl and TensorBoard get every scalar).
STDOUT_KEYS = ("loss", "loss_offline", "loss_online", "learning_rate")


def data_config(config):
  """`config.data` with the sampling mode the form needs (derived, never stored in the config)."""
  d = ml_collections.ConfigDict(config.data.to_dict())
  # A config restored from a checkpoint's JSON holds its datasets as plain dicts.
  d.datasets = [ml_collections.ConfigDict(dict(e)) for e in d.datasets]
  d.mode = objectives.training_mode(config.model)
  d.template_size = config.model.exemplar_size
  d.search_size = config.model.search_size
  return d


def init_model_variables(config, model, rng):
  """Initial {'params', 'batch_stats'}, with the converted ImageNet backbone when configured."""
  variables = duml_lib.init_variables(model, rng, config.model.exemplar_size,
                                      config.model.search_size)
  if config.model.pretrained:
    from duml_jax.convert import torch_resnet  # pylint: disable=g-import-not-at-top
    backbone = torch_resnet.load_params(config.model.pretrained)
    variables = torch_resnet.merge_backbone(variables, backbone)
    logging.info("backbone initialised from %s", config.model.pretrained)
  return variables


def create_train_state(config, model, rng):
  """Step-0 `TrainState` (params, BN statistics, optimiser state, rng)."""
  init_rng, state_rng = jax.random.split(rng)
  variables = init_model_variables(config, model, init_rng)
  tx = optim.make_optimizer(config.optim, variables["params"], config.steps_per_epoch)
  return train_state_lib.create_train_state(
      variables["params"], tx, state_rng, batch_stats=variables.get("batch_stats", {}),
      apply_fn=model.apply)


def eval_variables(state):
  """{'params', 'batch_stats'} of a (replicated) train state, as host arrays."""
  return jax.device_get({"params": state.params, "batch_stats": state.batch_stats})


def _fetch(metrics):
  return {k: float(v) for k, v in jax.device_get(metrics).items()}


def train(config, workdir):
  """Trains (resuming from `workdir` if it holds checkpoints); returns the final state."""
  config_lib.validate(config, training=True)
  workdir = os.path.abspath(os.path.expanduser(workdir))
  os.makedirs(workdir, exist_ok=True)
  mesh = parallel.make_mesh()
  model = duml_lib.build_model(config.model, axis_name=parallel.DATA_AXIS)
  total = int(config.num_train_steps)
  spe = int(config.steps_per_epoch)

  rng = jax.random.PRNGKey(config.seed)
  make_state = lambda: create_train_state(config, model, rng)
  abstract = jax.eval_shape(lambda: parallel.replicate(make_state(), mesh))
  ckpt = ckpt_lib.CheckpointManager(workdir, max_to_keep=config.keep_checkpoints,
                                    save_interval_steps=config.checkpoint_every_steps)
  restored = ckpt.restore_latest(abstract, mesh)
  if restored is None:
    state = parallel.replicate(make_state(), mesh)
    if jax.process_index() == 0:
      ckpt_lib.save_config(workdir, config)
    start = 0
  else:
    state, data_state = restored
    start = int(data_state.get("step", int(jax.device_get(state.step))))
    logging.info("resumed from %s at step %d", ckpt.directory, start)
  if start >= total:
    logging.info("step %d >= num_train_steps %d: nothing to train", start, total)
    ckpt.close()
    return state

  it = data_pipeline.make_train_iterator(
      data_config(config), process_index=jax.process_index(),
      process_count=jax.process_count(), global_batch_size=config.batch_size,
      seed=config.seed, start_step=start)
  step_fn = parallel.make_train_step(objectives.make_loss_fn(model, config), mesh)
  lr = optim.make_schedule(config.optim, spe)
  writer = metric_writer.MetricWriter(workdir, total_steps=total, stdout_keys=STDOUT_KEYS)
  bar = metric_writer.progress_bar(total, start)
  pending = None     # (step, metrics) of the previous step: checked one step late
  t_wait = 0.
  try:
    for step in range(start, total):
      t0 = time.perf_counter()
      batch = next(it)
      t_wait += time.perf_counter() - t0
      flags = {"train": True,
               "backbone_train": bool(optim.backbone_trainable(step, config.optim, spe))}
      state, metrics = step_fn(state, parallel.shard_batch(batch, mesh), flags)
      bar.update(1)
      if pending is not None:
        _check(pending, ckpt)
      pending = (step + 1, metrics)
      done = step + 1
      # Step 1's metrics are the losses of the initial parameters: the terms' balance at init.
      if done % config.log_every_steps == 0 or done == total or step == 0:
        _check(pending, ckpt)
        scalars = _fetch(metrics)
        scalars.pop("is_finite", None)
        scalars["learning_rate"] = float(lr(step))
        scalars["input_wait_frac"] = t_wait / max(time.perf_counter() - t0 + t_wait, 1e-9)
        for k, v in it.metrics.items():
          if k != "examples":
            scalars[f"skipped_{k}"] = v
        writer.write_scalars(done, scalars)
        t_wait = 0.
      if done % config.checkpoint_every_steps == 0:
        _check(pending, ckpt)          # never save the state of a non-finite step
        ckpt.save(done, state, data_state=it.get_state(), config=config)
    _check(pending, ckpt)
    if ckpt.latest_step() != total:
      ckpt.save(total, state, data_state=it.get_state(), config=config, force=True)
  finally:
    bar.close()
    it.close()
    writer.close()
    ckpt.close()
  return state


def _check(pending, ckpt):
  step, metrics = pending
  if not bool(jax.device_get(metrics["is_finite"])):
    ckpt.wait_until_finished()
    parallel.raise_if_not_finite(jax.device_get(metrics), step)
