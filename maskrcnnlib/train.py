"""The training pipeline i.ann.maskrcnn.train calls: datasets in, checkpoints out.

Checkpoints: after each epoch logs/mask_rcnn_<name>_<epoch:04d>.h5 (matterport
layout) and its model card .json beside it, both written atomically. A CSV log
(mask_rcnn_<name>.csv) and TensorBoard logs go in logs too. Progress and messages
go to callables given by the caller (the GRASS module passes gs.percent and
gs.message), so this module never imports GRASS.
"""
import math
import os
import shutil
import time
from dataclasses import dataclass, field

import keras
import tensorflow as tf

from maskrcnnlib.dataset.augment import augmented_iterator
from maskrcnnlib.dataset.pipeline import training_dataset
from maskrcnnlib.errors import TrainingError
from maskrcnnlib.model.training import LOSS_KEYS, build_trainer, compile_trainer, \
    set_trainable_stage
from maskrcnnlib.modelcard import card_path, read_card, write_card
from maskrcnnlib.model.weights import (HEAD_LAYERS, inspect_h5, load_weights_h5,
                                 save_weights_h5)

@dataclass
class TrainingPlan:
    """What to train: stages as (layer stage, last epoch, learning rate)."""

    stages: list
    initial_epoch: int = 0


@dataclass
class TrainingResult:
    checkpoints: list = field(default_factory=list)
    history: list = field(default_factory=list)  # one dict of losses per epoch


def checkpoint_path(logs, name, epoch):
    """The checkpoint of an epoch (a number), or of the best epoch (epoch "best")."""
    if epoch == "best":
        return os.path.join(logs, "mask_rcnn_{}_best.h5".format(name))
    return os.path.join(logs, "mask_rcnn_{}_{:04d}.h5".format(name, epoch))


def replace_file(source, target):
    """target becomes a copy of source (a hard link where the file system allows),
    atomically: a reader sees the old or the new file, never half of one."""
    partial = "{}.{}.tmp".format(target, os.getpid())
    try:
        try:
            os.link(source, partial)
        except OSError:
            shutil.copyfile(source, partial)
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def plan_stages(epochs, learning_rate, from_weights, initial_epoch=0):
    """The 2018 addon's schedule.

    From initial weights: heads until epochs/7, ResNet stage 4 and up until
    3*(epochs/7), then all layers at a tenth of the rate until epochs (fewer than 7
    epochs: all layers at a tenth). From scratch: all layers at the given rate (the
    2018 addon divided it by 10 there too, with no option to set it). A resumed run
    skips finished epochs.
    """
    if from_weights and epochs >= 7:
        first = epochs // 7
        stages = [("heads", first, learning_rate), ("4+", first * 3, learning_rate),
                  ("all", epochs, learning_rate / 10)]
    elif from_weights:
        stages = [("all", epochs, learning_rate / 10)]
    else:
        stages = [("all", epochs, learning_rate)]
    stages = [s for s in stages if s[1] > initial_epoch]
    return TrainingPlan(stages=stages, initial_epoch=initial_epoch)


def seconds_left(stage_epochs, epochs_left):
    """Estimated seconds for epochs_left more epochs, from the durations (seconds) of
    the epochs of the current training stage so far.

    A stage's first epoch also traced and compiled the training step: where later
    epochs were measured, only they count.
    """
    if epochs_left <= 0 or not stage_epochs:
        return 0.0
    measured = stage_epochs[1:] or stage_epochs
    return epochs_left * sum(measured) / len(measured)


def format_duration(seconds):
    """A duration as a user reads it: '48 s', '12 min', '2.5 h'."""
    if seconds < 90:
        return "{:.0f} s".format(seconds)
    if seconds < 90 * 60:
        return "{:.0f} min".format(seconds / 60)
    return "{:.1f} h".format(seconds / 3600)


class _EpochReport(keras.callbacks.Callback):
    """Checkpoint + card per epoch, validation AP, NaN guard, progress and messages.

    With validation data, the epoch's weights detect in the first
    validation_steps * batch size validation images (at most), and COCO mask
    AP50, AP75 and mAP against their masks (maskrcnnlib.evaluate, the same
    evaluator as detect's reference=) join the epoch's logs as val_AP50,
    val_AP75, val_mAP: in the CSV log, the model card's history and the message.

    Progress: percent(done, total, 1) over the batches of all epochs and stages of
    this run, called only when the whole percent grows (percent is costly: GRASS's
    gs.percent runs g.message). After each epoch the message tells its duration and
    the time left (seconds_left).
    """

    def __init__(self, trainer, config, logs, name, result, card_extra, message, percent,
                 steps_per_epoch, total_epochs, validation_data=None, writes=True, keep=0,
                 patience=0):
        super().__init__()
        self.keep, self.patience = keep, patience
        # the best validation mask mAP so far, and its epoch (a resumed run's history too)
        scored = [(entry["val_mAP"], entry["epoch"]) for entry in
                  (result.history if result is not None else []) if "val_mAP" in entry]
        self.best = max(scored, key=lambda item: (item[0], -item[1])) if scored else None
        self.stopped_early = None
        self.writes = writes  # False on the workers other than the chief
        self.trainer, self.config, self.logs, self.name = trainer, config, logs, name
        self.result, self.card_extra = result, card_extra
        self.message, self.percent = message, percent
        self.steps_per_epoch, self.total_epochs = steps_per_epoch, total_epochs
        self.validation_data, self.detector = validation_data, None
        self.failure = None
        self.first_epoch, self.shown_percent = None, -1  # the epoch this run started at
        self.stage_epochs = []  # durations (s) of the current stage's epochs

    def validation_ap(self):
        """{val_AP50, val_AP75, val_mAP} of the current weights, or {} without data."""
        if self.validation_data is None or not len(self.validation_data):
            return {}
        from maskrcnnlib.evaluate import ImageInstances, evaluate
        from maskrcnnlib.model.inference import Detector

        if self.detector is None:
            self.detector = Detector(self.config)
        self.detector.copy_weights_from(self.trainer)
        count = min(len(self.validation_data),
                    max(1, self.config.validation_steps) * self.config.batch_size)
        predictions, references = [], []
        for index in range(count):
            image, masks, class_ids = self.validation_data.load(index)
            found = self.detector.detect([image])[0]
            predictions.append(ImageInstances(found["masks"], found["class_ids"],
                                              found["scores"]))
            references.append(ImageInstances(masks, class_ids))
        figures = evaluate(predictions, references,
                           class_ids=list(range(1, self.config.num_classes)))
        return {"val_" + key: figures[key] for key in ("AP50", "AP75", "mAP")}

    def on_train_begin(self, logs=None):
        self.stage_epochs = []  # one fit per stage, each traces and compiles anew

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.monotonic()
        self.epoch_number = epoch + 1
        if self.first_epoch is None:
            self.first_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.failure = "the loss became {} at step {} of epoch {}".format(
                loss, batch + 1, self.epoch_number)
            self.trainer.stop_training = True
        self._progress(batch + 1)

    def _progress(self, batches):
        """percent() over this run's batches, once per whole percent."""
        per_epoch = self.steps_per_epoch * self.config.accumulation_steps
        done = (self.epoch_number - 1 - self.first_epoch) * per_epoch + batches
        total = (self.total_epochs - self.first_epoch) * per_epoch
        shown = 100 * done // total
        if shown > self.shown_percent:
            self.shown_percent = shown
            self.percent(done, total, 1)

    def on_epoch_end(self, epoch, logs=None):
        if self.failure:
            return
        number = epoch + 1
        if logs is not None and self.writes:  # the same dict goes on to the CSV logger
            logs.update(self.validation_ap())
        logs = {key: float(value) for key, value in (logs or {}).items()}
        seconds = (time.monotonic() - self.started) / self.steps_per_epoch
        if self.writes:  # the chief; other workers only tell their progress
            entry = dict(logs, epoch=number, seconds_per_step=seconds)
            self.result.history.append(entry)
            path = checkpoint_path(self.logs, self.name, number)
            save_weights_h5(self.trainer, path)
            write_card(path, self.config, dict(self.card_extra, epoch=number,
                                               history=self.result.history))
            self.result.checkpoints.append(path)
            self._keep_best(path, logs, number)
            self._remove_old_checkpoints(number)
        self._stop_when_stalled(logs, number)
        losses = ", ".join("{} {:.4f}".format(k, logs[k]) for k in ("loss",) + LOSS_KEYS
                           if k in logs)
        validation = " validation loss {:.4f},".format(logs["val_loss"]) \
            if "val_loss" in logs else ""
        if "val_AP50" in logs:
            validation += " validation mask AP50 {:.3f} mAP {:.3f},".format(
                logs["val_AP50"], logs["val_mAP"])
        duration = time.monotonic() - self.started
        self.stage_epochs.append(duration)
        left = self.total_epochs - number
        timing = "{:.2f} s per step, {}".format(seconds, format_duration(duration))
        if left:
            timing += "; about {} left".format(
                format_duration(seconds_left(self.stage_epochs, left)))
        self.message("Epoch {}/{}: {},{} {}".format(number, self.total_epochs, losses,
                                                    validation, timing))


    def _keep_best(self, path, logs, number):
        """With validation: the epoch with the best mask mAP so far is also
        mask_rcnn_<name>_best.h5, with its card (ties keep the earlier epoch)."""
        if "val_mAP" not in logs:
            return
        if self.best is not None and logs["val_mAP"] <= self.best[0]:
            return
        self.best = (logs["val_mAP"], number)
        best = checkpoint_path(self.logs, self.name, "best")
        replace_file(path, best)
        replace_file(card_path(path), card_path(best))

    def _remove_old_checkpoints(self, number):
        """Keep the last `keep` epoch checkpoints (0: all) and their cards."""
        if self.keep <= 0:
            return
        for epoch in range(1, number - self.keep + 1):
            old = checkpoint_path(self.logs, self.name, epoch)
            for path in (old, card_path(old)):
                if os.path.exists(path):
                    os.remove(path)
                    if path in self.result.checkpoints:
                        self.result.checkpoints.remove(path)

    def _stop_when_stalled(self, logs, number):
        """patience epochs after the best validation mask mAP without a better one: stop."""
        if not self.patience or "val_mAP" not in logs or self.best is None:
            return
        if number - self.best[1] >= self.patience:
            self.stopped_early = "validation mask mAP has not improved for {} epochs since " \
                "epoch {} ({:.3f})".format(number - self.best[1], self.best[1], self.best[0])
            self.trainer.stop_training = True


def _build_trainer(config, seed, placement):
    """The training model, in config.precision resolved for the placement
    (model.training.compute_precision: "mixed" and "auto" keep float32 weights;
    "mixed" on GPUs computes in float16 with loss scaling)."""
    on_gpu = any("gpu" in device.lower() for device in placement.devices)
    return build_trainer(config, seed=seed, on_gpu=on_gpu)


def replica_datasets(strategy, data, config, seed, augment, shuffle=True):
    """The input of each replica: images_per_gpu images a step. Each worker's
    pipeline draws its own order (its seed is offset by its pipeline id)."""

    def make(context):
        own_seed = None if seed is None else int(seed) + 1009 * context.input_pipeline_id
        samples = augmented_iterator(data, config, seed=own_seed, augment=augment,
                                     shuffle=shuffle)
        return training_dataset(samples, config, batch_size=config.images_per_gpu,
                                seed=own_seed)

    return strategy.distribute_datasets_from_function(make)


def train(config, train_data, logs, name, placement, validation_data=None,
          initial_weights=None, exclude_heads=False, seed=None, augment=False, card_extra=None,
          message=print, percent=lambda *args: None, keep=0, patience=0):
    """Train and write checkpoints; returns a TrainingResult.

    config: a validated Config (epochs, steps_per_epoch, validation_steps, ...).
    train_data / validation_data: datasets with len() and load(i) -> sample.
    logs: a writable directory (maskrcnnlib.train_job prepares it).
    placement: the maskrcnnlib.distribute.Placement to train with (the job makes
    it from config.gpu_count and TF_CONFIG). Only its chief writes into logs.
    initial_weights: .h5 to start from; one of our checkpoints resumes at its epoch.
    keep: how many of the last epoch checkpoints stay (0: all); with validation data,
    the best epoch by mask mAP is also mask_rcnn_<name>_best.h5.
    patience: with validation data, stop after this many epochs without a better
    mask mAP (0: never).
    Raises TrainingError (NaN loss: the last good checkpoint stays).
    """
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
        # same seed, same losses: also fix the order of floating-point sums in
        # multi-threaded kernels (slower; only asked for with a seed)
        tf.config.experimental.enable_op_determinism()
    strategy = placement.strategy
    with strategy.scope():
        trainer = _build_trainer(config, seed, placement)
    compute_dtype = keras.mixed_precision.DTypePolicy(trainer.precision_policy).compute_dtype
    message("Computing in {} ({})".format(compute_dtype, trainer.precision_reason))
    initial_epoch, from_weights, card = 0, bool(initial_weights), {}
    if initial_weights:
        card = read_card(initial_weights) or {}
        # with new heads (-e), one of our checkpoints starts a new run, not a resumed one
        initial_epoch = 0 if exclude_heads else int(card.get("epoch", 0))
        # A resumed run keeps the schedule it started with.
        from_weights = bool(card.get("started_from_weights", True)) if initial_epoch \
            else True
        # a backbone alone (model=imagenet): the FPN, RPN and heads keep their start values
        backbone_only = inspect_h5(initial_weights)["pyramid_size"] is None
        with strategy.scope():
            report = load_weights_h5(
                trainer, initial_weights, strict=not backbone_only,
                exclude=HEAD_LAYERS if exclude_heads and not initial_epoch else ())
        if backbone_only:
            message("Backbone weights from {} ({} layers); the feature pyramid, RPN and "
                    "heads start from random weights".format(initial_weights,
                                                             len(report.loaded)))
    card_extra = dict(card_extra or {}, started_from_weights=from_weights,
                      compute_dtype=compute_dtype)
    plan = plan_stages(config.epochs, config.learning_rate, from_weights, initial_epoch)
    if not plan.stages:
        message("Nothing to train: {} already reached epoch {}".format(
            initial_weights, initial_epoch))
        return TrainingResult()
    dataset = replica_datasets(strategy, train_data, config, seed, augment)
    validation = None
    if validation_data is not None and len(validation_data) and config.validation_steps:
        validation = replica_datasets(strategy, validation_data, config, seed, False,
                                      shuffle=False)
    result = TrainingResult(history=list(card.get("history", [])) if initial_epoch else [])
    report = _EpochReport(trainer, config, logs, name, result, card_extra, message,
                          percent, config.steps_per_epoch, config.epochs,
                          validation_data=validation_data if validation else None,
                          writes=placement.is_chief, keep=keep,
                          patience=patience if placement.worker_count == 1 else 0)
    if patience and placement.worker_count > 1:
        # only the chief validates: the other workers could not tell when to stop
        message("patience is not applied when training on several machines")
    callbacks = [report]
    if placement.is_chief:  # the other workers write nothing in logs
        callbacks += [
            keras.callbacks.CSVLogger(os.path.join(logs, "mask_rcnn_{}.csv".format(name)),
                                      append=True),
            keras.callbacks.TensorBoard(os.path.join(logs, "tensorboard"),
                                        write_graph=False, profile_batch=0)]
    steps = config.steps_per_epoch * config.accumulation_steps
    epoch = plan.initial_epoch
    for stage, last_epoch, learning_rate in plan.stages:
        message("Training {} layers, epochs {} to {}, learning rate {:g}".format(
            stage, epoch + 1, last_epoch, learning_rate))
        set_trainable_stage(trainer, stage)
        with strategy.scope():
            compile_trainer(trainer, learning_rate)
        try:
            trainer.fit(dataset, epochs=last_epoch, initial_epoch=epoch,
                        steps_per_epoch=steps, validation_data=validation,
                        validation_steps=config.validation_steps if validation else None,
                        callbacks=callbacks, verbose=0, shuffle=False)
        except tf.errors.InvalidArgumentError as error:
            if "not finite" not in str(error):
                raise
            # diverged weights give NaN/inf boxes before the loss shows it
            report.failure = "the network diverged (boxes became NaN or infinite) in " \
                "epoch {}".format(report.epoch_number)
        if report.failure:
            last = result.checkpoints[-1] if result.checkpoints else (initial_weights or "none")
            raise TrainingError("Training stopped: {}. The last good checkpoint is {}. "
                                "Try a lower learning_rate.".format(report.failure, last))
        if report.stopped_early:
            message("Stopped early at epoch {}: {}".format(report.epoch_number,
                                                         report.stopped_early))
            break
        epoch = last_epoch
    return result
