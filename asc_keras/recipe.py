"""The paper's recipe as stages in one run directory:

teachers (trained here and/or logit files) -> fusion (eq. 4) -> distilled student (eq. 5)
[-> the same student without a teacher, for comparison] -> float evaluation per device.

Every stage writes its outputs atomically and is skipped when they exist, so rerunning a
finished run only prints its summary, and `resume=True` continues an interrupted stage. The run
folder is locked for the run's life and keeps the config it was started with
(`asc_keras.run_folder`).
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from asc_keras import device_models
from asc_keras.audio import feature_shape
from asc_keras.config import ConfigError, load_config, save_config, with_resolved_paths
from asc_keras.data.augment import impulse_response_paths
from asc_keras.data.pipeline import (
    Splits,
    describe_impulse_responses,
    impulse_response_folder,
    make_dataset,
    steps_per_epoch,
    with_data_root,
)
from asc_keras.data.tau22 import CLASSES, DatasetError, read_split, resolve_data_root
from asc_keras.distill import (
    Distiller,
    LabelWeightSchedule,
    LogitFileError,
    TeacherLogits,
    load_logits,
)
from asc_keras.distill.folds import FoldError, fold_assignment, out_of_fold
from asc_keras.distill.fusion import fusion_report, report_title, sharpening_warning
from asc_keras.distribution import (
    Distribution,
    setup_distribution,
    synchronize_batch_norm,
    unsynchronized_batch_norm,
)
from asc_keras.evaluation import device_report, format_reports
from asc_keras.evaluation.run_page import DEVICE_INT8_TABLE, INT8_TABLE, RunPage
from asc_keras.models import build_model
from asc_keras.run_folder import (
    check_config,
    device_stage,
    locked_run_folder,
    quantized_folder,
)
from asc_keras.training import TrainingError, enable_determinism, fit_stage
from asc_keras.utils import atomic_write_text


def predict_logits(model, cache, config):
    dataset = make_dataset(cache, config, batch_size=config.training.batch_size)
    return model.predict(dataset, verbose=0)


def evaluate_model(model, splits, config, split="evaluate"):
    logits = predict_logits(model, getattr(splits, split), config)
    return device_report(splits.labels(split), logits, splits.devices(split))


def train_classifier(
    config,
    stage_dir,
    splits,
    *,
    resume=False,
    teacher=None,
    verbose=1,
    distribution=None,
    initial=None,
):
    """Trains config.model on the training split (distilled from `teacher` logits if given),
    from the weights of the `.keras` model `initial` if given (else from scratch); returns
    the trained Keras model (the student), as a plain single-device model."""
    import keras

    distribution = distribution or Distribution()
    stage_dir = Path(stage_dir)
    if (stage_dir / "last.keras").is_file():
        return keras.saving.load_model(stage_dir / "last.keras")
    if config.training.deterministic:
        enable_determinism()
    keras.utils.set_random_seed(config.training.seed)  # the initial weights
    callbacks = []
    with distribution.scope():
        model = trainee = build_model(config.model, feature_shape(config))
        if initial is not None:
            model.set_weights(keras.saving.load_model(initial).get_weights())
        if distribution.sync_batch_norm:
            synchronize_batch_norm(model)
        if teacher is not None:
            kd = config.distillation
            trainee = Distiller(model, temperature=kd.temperature, label_weight=kd.label_weight)
            callbacks.append(
                LabelWeightSchedule(
                    config.training.epochs,
                    kd.label_weight_schedule,
                    kd.label_weight,
                    kd.label_weight_end,
                )
            )
    steps = steps_per_epoch(splits.train, config.training.batch_size)
    if verbose:
        print(describe_impulse_responses(config, splits.train))
    # In memory, the waveforms become a tf.Variable here, outside any strategy scope: every
    # input pipeline reads the same host copy instead of one mirrored per replica.
    reader = splits.train.reader(config.data.memory_budget_gb)
    if verbose:
        print(f"training split: {reader.how}")

    def train_dataset(first_epoch):
        return distribution.training_dataset(
            lambda batch_size, shard: make_dataset(
                splits.train,
                config,
                teacher_logits=teacher,
                training=True,
                batch_size=batch_size,
                first_epoch=first_epoch,
                epochs=config.training.epochs,
                shard=shard,
            ),
            config.training.batch_size,
        )

    validation = make_dataset(splits.evaluate, config)
    fit_stage(
        trainee,
        train_dataset,
        steps=steps,
        config=config,
        stage_dir=stage_dir,
        validation=validation,
        resume=resume,
        export=lambda m: getattr(m, "student", m),
        verbose=verbose,
        extra_callbacks=callbacks,
        distribution=distribution,
    )
    if not distribution.distributed:
        return model
    # Predictions and exports run on one device, outside the strategy.
    with unsynchronized_batch_norm(model):
        single = keras.models.clone_model(model)
    single.set_weights(model.get_weights())
    return single


def teacher_config_of(config, config_path=None):
    """(config, path) the run's teachers train with, or (None, None) when it trains none.

    Their own file (teachers.config, relative to the run's config file) with the run's data
    and distribution sections; a teacher config that names no impulse-response folder takes
    the run's, which belongs to the dataset like its root."""
    teachers = config.teachers
    if not (config.distillation.enabled and teachers.train_count > 0):
        return None, None
    if not teachers.config:
        raise ConfigError(f"{config_path}: teachers.train_count > 0 needs teachers.config")
    path = Path(teachers.config)
    if not path.is_absolute() and config_path is not None:
        path = Path(config_path).parent / path
    if not path.is_file():
        raise ConfigError(f"{config_path}: teachers.config: {str(path)!r} does not exist")
    teacher = load_config(path)
    dir_config = teacher.augment.dir
    if dir_config.folder is None:
        dir_config = dataclasses.replace(dir_config, folder=config.augment.dir.folder)
    augment = dataclasses.replace(teacher.augment, dir=dir_config)
    teacher = dataclasses.replace(
        teacher, data=config.data, distribution=config.distribution, augment=augment
    )
    return teacher, path


def check_paths(config, config_path=None):
    """Every file and folder the run will read, checked before its first stage: the
    impulse responses of the student and of the teachers, the teacher config and the
    listed teacher-logit files. Errors name the config file and key."""
    teacher_config, teacher_path = teacher_config_of(config, config_path)
    for checked, source in ((config, config_path or "config"), (teacher_config, teacher_path)):
        folder = impulse_response_folder(checked) if checked is not None else None
        if folder is not None:
            try:
                impulse_response_paths(folder)
            except DatasetError as error:
                raise DatasetError(f"{source}: augment.dir.folder: {error}") from None
    for logit_file in config.teachers.logit_files if config.distillation.enabled else ():
        if not Path(logit_file).is_file():
            raise LogitFileError(
                f"{config_path or 'config'}: teachers.logit_files: {logit_file!r} does not exist"
            )
        load_logits(logit_file, root=config.data.root)  # a damaged file, before any work
    device_models.check_device_clips(config, config_path or "config")
    if teacher_config is not None and config.teachers.folds > 1:
        records = read_split(resolve_data_root(config), config.data.train_split)
        try:
            fold_assignment(records, config.teachers.folds, config.training.seed)
        except FoldError as error:
            raise ConfigError(f"{config_path or 'config'}: {error}") from None
    return teacher_config


def teacher_stage(
    config, teacher_config, teachers_dir, splits, *, resume=False, verbose=1, distribution=None
):
    """Trains config.teachers.train_count teachers with `teacher_config` in `teachers_dir`
    (each out of fold when config.teachers.folds > 1); returns their logit files. Teachers
    train under the student config's distribution."""
    files = []
    teachers = config.teachers
    if teacher_config is None:
        return files
    # The teachers' own config is part of the run: a changed teacher file is refused too.
    teachers_dir = Path(teachers_dir)
    if not check_config(teacher_config, teachers_dir / "config.yaml"):
        save_config(teacher_config, teachers_dir / "config.yaml")
    # The same folds for every teacher (the run's seed): the fusion sees each clip labelled
    # by models that never trained on it.
    if teachers.folds > 1:
        assignment = fold_assignment(splits.train.records, teachers.folds, config.training.seed)
    for index in range(teachers.train_count):
        stage_dir = teachers_dir / f"teacher-{index}"
        logits_path = stage_dir / "logits.npz"
        files.append(logits_path)
        if logits_path.is_file():
            continue
        seeded = dataclasses.replace(
            teacher_config,
            training=dataclasses.replace(
                teacher_config.training, seed=config.training.seed + index
            ),
        )
        folds = f", {teachers.folds} folds" if teachers.folds > 1 else ""
        print(
            f"== teacher {index + 1}/{teachers.train_count} ({seeded.model.architecture}, "
            f"seed {seeded.training.seed}{folds})"
        )
        stage = dict(resume=resume, verbose=verbose, distribution=distribution)
        if teachers.folds > 1:
            train_teacher_out_of_fold(seeded, stage_dir, splits, assignment, **stage)
        else:
            train_teacher(seeded, stage_dir, splits, **stage)
    return files


def _write_teacher_logits(path, train, evaluate, train_logits, evaluate_logits):
    """Writes the logits of the clips of `train` and `evaluate` (caches) to `path`."""
    filenames = train.filenames + evaluate.filenames
    logits = np.concatenate([train_logits, evaluate_logits])
    TeacherLogits(filenames, logits, CLASSES, source=str(path)).save(path)
    return path


def _teacher_logits(model, config, train, evaluate, path):
    """Writes `model`'s logits for the clips of `train` and `evaluate` (caches) to `path`."""
    return _write_teacher_logits(
        path,
        train,
        evaluate,
        predict_logits(model, train, config),
        predict_logits(model, evaluate, config),
    )


def train_teacher(config, stage_dir, splits, *, resume=False, verbose=1, distribution=None):
    """Trains one teacher and writes `logits.npz` for every clip of both splits."""
    model = train_classifier(
        config, stage_dir, splits, resume=resume, verbose=verbose, distribution=distribution
    )
    return _teacher_logits(model, config, splits.train, splits.evaluate, stage_dir / "logits.npz")


def train_teacher_out_of_fold(
    config, stage_dir, splits, assignment, *, resume=False, verbose=1, distribution=None
):
    """One teacher trained once per fold of `assignment` (a fold per training clip), each
    model in `stage_dir`/fold-F/ (a resumable stage) without fold F, labelling fold F and
    the evaluation split (fold-F/logits.npz). Writes `stage_dir`/logits.npz: every training
    clip's logits from the model that did not train on it, the evaluation split's the mean
    of the fold models; and folds.tsv, the fold of each training clip."""
    stage_dir = Path(stage_dir)
    folds = int(assignment.max()) + 1
    rows = ["filename\tfold", *(f"{f}\t{k}" for f, k in zip(splits.train.filenames, assignment))]
    atomic_write_text(stage_dir / "folds.tsv", "\n".join(rows) + "\n")
    held_out_logits, evaluate_logits = [], []
    for fold in range(folds):
        held_out = splits.train.subset(np.flatnonzero(assignment == fold))
        path = stage_dir / f"fold-{fold}" / "logits.npz"
        if not path.is_file():
            trained_on = splits.train.subset(np.flatnonzero(assignment != fold))
            print(
                f"-- fold {fold + 1}/{folds}: trains on {len(trained_on)} clips, labels the "
                f"{len(held_out)} it does not see"
            )
            model = train_classifier(
                config,
                path.parent,
                Splits(trained_on, splits.evaluate),
                resume=resume,
                verbose=verbose,
                distribution=distribution,
            )
            _teacher_logits(model, config, held_out, splits.evaluate, path)
        logits = load_logits(path)
        held_out_logits.append(logits.aligned_to(held_out.filenames))
        evaluate_logits.append(logits.aligned_to(splits.evaluate.filenames))
    return _write_teacher_logits(
        stage_dir / "logits.npz",
        splits.train,
        splits.evaluate,
        out_of_fold(held_out_logits, assignment),
        np.mean(evaluate_logits, axis=0),
    )


def fusion_stage(config, run_dir, splits, logit_files):
    """Fuses (or averages) the teacher logits into teachers/<method>.npz and prints how each
    teacher and each fusion does per device."""
    method, data = config.teachers.fusion, config.data
    path = Path(run_dir) / "teachers" / f"{method}.npz"
    root = data.root
    fused, reports = fusion_report([load_logits(f, root=root) for f in logit_files], splits)
    print(format_reports(reports, title=report_title(data.train_split, data.eval_split)))
    weights = ", ".join(f"{w:.3f}" for w in fused["fused"].extra["fusion_weights"])
    print(f"fused teacher weights: {weights}")
    warning = sharpening_warning(reports, data.eval_split)
    if warning and method == "fused":
        print(warning)
    if not path.is_file():
        fused[method].save(path)
    return load_logits(path), reports


def run_training(config, run_dir, config_path=None, data_root=None, resume=False, verbose=1):
    """Runs every stage the config asks for; returns the summary dict (also summary.json).

    Under distribution multi_worker every worker runs this with the same arguments; the
    chief writes `run_dir`, the others write a scratch folder that is removed at the end
    (docs/training.md, "Scaling out")."""
    distribution = setup_distribution(config, source=str(config_path or "config"))
    run_dir = Path(run_dir)
    if not distribution.is_chief:
        distribution.shared_run_dir = run_dir
        run_dir = distribution.worker_run_dir()
    source = config_path or "config"
    config = with_resolved_paths(with_data_root(config, data_root), config_path)
    # Before the lock: a run that cannot start leaves nothing in its folder.
    check_config(config, run_dir / "config.yaml")
    teacher_config = check_paths(config, source)
    with locked_run_folder(config, run_dir) as lock:
        page = RunPage(run_dir, config_path, data_root) if distribution.is_chief else None
        stages = dict(resume=resume, verbose=verbose, distribution=distribution)
        return _run_stages(
            config,
            run_dir,
            teacher_config=teacher_config,
            source=source,
            stages=stages,
            lock=lock,
            page=page,
        )


def _run_stages(config, run_dir, *, teacher_config, source, stages, lock, page):
    """The stages in order; `stages` holds the keyword arguments every training stage takes
    (resume, verbose, distribution)."""
    distribution, verbose = stages["distribution"], stages["verbose"]
    splits = Splits.open(config)
    summary = {"run_dir": str(run_dir), "reports": {}}
    show = page.table if page else lambda title, reports: None

    def warn(text):  # in the output, summary.json and on the run page
        print(f"warning: {text}")
        summary.setdefault("warnings", []).append(text)
        if page:
            page.note("warning", f"Warning: {text}")

    warning = missing_classes_warning(config, splits)
    if warning:
        warn(warning)

    teacher, teacher_reports = None, {}
    if config.distillation.enabled:
        logit_files = [Path(f) for f in config.teachers.logit_files]
        logit_files += teacher_stage(config, teacher_config, run_dir / "teachers", splits, **stages)
        if not logit_files:
            raise ConfigError(
                f"{source}: distillation.enabled needs teachers.logit_files "
                f"or teachers.train_count > 0"
            )
        teacher, teacher_reports = fusion_stage(config, run_dir, splits, logit_files)
        summary["teachers"] = {
            k: {"accuracy": v["accuracy"], "devices": v["devices"]}
            for k, v in teacher_reports.items()
        }
        show(report_title(config.data.train_split, config.data.eval_split), teacher_reports)

    title = f"Float student on {config.data.eval_split}: accuracy (%) per device"
    source = f"distilled from {config.teachers.fusion} logits" if teacher else "labels only"
    print(f"== student {config.model.variant} ({source})")
    student = run_dir / "student"
    reports = {"student": student_report(config, student, splits, teacher=teacher, **stages)}
    show(title, reports)
    if teacher is not None and config.distillation.compare_without_teacher:
        print(f"== student {config.model.variant} without a teacher (comparison)")
        alone = run_dir / "student-no-teacher"
        reports["student, no teacher"] = student_report(config, alone, splits, **stages)
        show(title, reports)
    summary["reports"] = reports
    print(format_reports(reports, title=title))
    if teacher is not None:
        summary["distillation"] = distillation_verdict(config, reports, teacher_reports)
        print(summary["distillation"]["verdict"])
        if page:
            page.note("distillation", summary["distillation"]["verdict"])
        if "warning" in summary["distillation"]:
            warn(summary["distillation"]["warning"])
    if not distribution.is_chief:
        shutil.rmtree(run_dir, ignore_errors=True)
        return summary
    general, why = quantized_student(config, reports)
    if config.quantization.enabled:
        summary["quantized_student"] = {"stage": general, "why": why}
        print(f"== int8: quantizing {general}/ ({why})")
        page.note("int8", f"int8 model made from {general}/ ({why}).")
        quantized = quantization_stage(run_dir, verbose, lock, general)
        show(INT8_TABLE.format(split=config.data.eval_split), quantized.pop("reports"))
        quantized.pop("qat_history")
        summary["quantized"] = quantized
    if config.device_models.devices:
        summary["device_models"] = device_models_stage(
            config,
            run_dir,
            splits,
            general=general,
            teacher=teacher,
            stages=stages,
            lock=lock,
            show=show,
        )
        show(
            device_models.table_title(config.data.eval_split),
            summary["device_models"].pop("reports"),
        )
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    page.finish()
    print(f"run page: {run_dir / 'report.html'}")
    return summary


def device_models_stage(config, run_dir, splits, *, general, teacher, stages, lock, show):
    """The device models of config.device_models (asc_keras.device_models), fine-tuned from
    the `general` stage; returns their part of summary.json with the system's reports under
    "reports" (printed here). `show(title, reports)` puts each device's int8 table on the
    run page."""
    verbose = stages["verbose"]

    def quantize(device, distilled):
        print(f"== int8: quantizing {device_stage(device)}/")
        quantization_stage(run_dir, verbose, lock, device=device, distilled=distilled)

    reports = device_models.train_device_models(
        config, run_dir, splits, general=general, teacher=teacher, stages=stages, quantize=quantize
    )
    for device in config.device_models.devices:  # also when a finished run is rerun
        done = quantized_folder(run_dir, device) / "summary.json"
        if done.is_file():
            title = DEVICE_INT8_TABLE.format(device=device, split=config.data.eval_split)
            show(title, json.loads(done.read_text())["reports"])
    print(format_reports(reports, title=device_models.table_title(config.data.eval_split)))
    distilled = teacher is not None and config.device_models.distilled
    return {**device_models.summary_of(config, reports, general, distilled), "reports": reports}


def student_report(config, stage_dir, splits, **stage):
    """The student stage `stage_dir` trained (train_classifier, `stage` its arguments) and
    its report on the evaluation split, kept in `stage_dir`/report.json: a finished stage
    is read back, not loaded and evaluated again."""
    path = Path(stage_dir) / "report.json"
    if path.is_file() and (Path(stage_dir) / "last.keras").is_file():
        return json.loads(path.read_text())
    model = train_classifier(config, stage_dir, splits, **stage)
    report = evaluate_model(model, splits, config)
    atomic_write_text(path, json.dumps(report, indent=2))
    return report


def missing_classes_warning(config, splits):
    """A sentence naming the classes without a single training clip (None when every class
    has one): the model can never learn to predict them."""
    counts = np.bincount(splits.labels("train"), minlength=len(CLASSES))
    missing = [name for name, count in zip(CLASSES, counts) if count == 0]
    if not missing:
        return None
    return (
        f"the training split {config.data.train_split!r} has no clip of class(es) "
        f"{', '.join(missing)}: the model cannot learn them"
    )


def distillation_verdict(config, reports, teacher_reports):
    """Did distillation help? The distilled student against the same student without a
    teacher (when the run trained it) and against its teachers, on the evaluate split."""
    split = config.data.eval_split
    distilled = reports["student"]["accuracy"]
    verdict = {"distilled": distilled}
    teachers = teacher_reports.get(f"{config.teachers.fusion} (evaluate)")  # fusion_report's
    alone = reports.get("student, no teacher")
    if alone is not None:
        points = 100 * (distilled - alone["accuracy"])
        verdict |= {"without_teacher": alone["accuracy"], "points": points, "helped": points > 0}
        than = f"without a teacher ({100 * alone['accuracy']:.2f} %)"
        if points > 0:
            comparison = f"{points:.2f} points more than {than}"
        elif points < 0:
            comparison = f"{-points:.2f} points less than {than}"
        else:
            comparison = f"as much as {than}"
        text = (
            f"distillation {'helped' if points > 0 else 'did not help'}: the distilled student "
            f"scores {100 * distilled:.2f} % on {split}, {comparison}"
        )
    else:
        text = (
            f"distilled student: {100 * distilled:.2f} % on {split} (set "
            f"distillation.compare_without_teacher to see whether distillation helped)"
        )
    if teachers is not None:
        verdict["teachers"] = teachers["accuracy"]
        text += f"; the {config.teachers.fusion} teachers score {100 * teachers['accuracy']:.2f} %"
        on_train = teacher_reports.get(f"{config.teachers.fusion} (train)")
        if on_train is not None:
            verdict["teachers_train"] = on_train["accuracy"]
            text += f" ({100 * on_train['accuracy']:.2f} % on the training clips they label)"
        weak = teachers["accuracy"] <= max(distilled, verdict.get("without_teacher", 0))
        if weak and not verdict.get("helped", True):
            text += ", no better than the student: it needs stronger teachers"
    verdict["verdict"] = text[0].upper() + text[1:] + "."
    warning = repeated_labels_warning(config, verdict)
    if warning:
        verdict["warning"] = warning
    return verdict


# Teachers that score this many points more on the training clips they label than on the
# evaluation split have mostly learnt those clips: their logits there repeat the labels.
LABEL_REPEAT_GAP = 15.0


def repeated_labels_warning(config, verdict):
    """A line when the teachers' accuracy on the training clips they label is far above
    their evaluation accuracy (LABEL_REPEAT_GAP points), else None."""
    if "teachers_train" not in verdict:
        return None
    gap = 100 * (verdict["teachers_train"] - verdict["teachers"])
    if gap < LABEL_REPEAT_GAP:
        return None
    if config.teachers.folds > 1:
        why = (
            "the training clips' logits are out of fold: the teachers' models never saw "
            "the clips they label, so their training set is easier than the evaluation one"
        )
    else:
        why = (
            "they label the clips they trained on, and those logits mostly repeat the labels; "
            "teachers.folds: 5 gives out-of-fold logits (docs/distillation.md)"
        )
    return (
        f"the teachers score {gap:.1f} points more on the training clips than on "
        f"{config.data.eval_split}: {why}"
    )


def quantized_student(config, reports):
    """(stage folder, why) of the float student that becomes int8 (quantization.student)."""
    if "student, no teacher" not in reports:
        return "student", "the run's only student"
    choice = config.quantization.student
    if choice != "best":
        stage = "student" if choice == "distilled" else "student-no-teacher"
        return stage, f"quantization.student: {choice}"
    distilled, alone = (reports[k]["accuracy"] for k in ("student", "student, no teacher"))
    split = config.data.eval_split
    if alone > distilled:
        return "student-no-teacher", (
            f"best on {split}: without a teacher {100 * alone:.2f} % > distilled "
            f"{100 * distilled:.2f} %"
        )
    return "student", (
        f"best on {split}: distilled {100 * distilled:.2f} % >= without a teacher "
        f"{100 * alone:.2f} %"
    )


def quantization_stage(run_dir, verbose, lock, student="student", device=None, distilled=True):
    """QAT, int8 export and evaluation in a subprocess: tfmot switches its process to legacy
    Keras, which must not leak into this one. The child holds the run folder's `lock` with
    this process and dies with it (`die_with_parent`). A finished stage (its summary.json
    written last) starts no process. With `device`, the stage of that device's model instead
    of `student`; `distilled` false fine-tunes it on labels alone."""
    summary = quantized_folder(run_dir, device) / "summary.json"
    if summary.is_file():
        return json.loads(summary.read_text())
    env = {**os.environ, **lock.env}  # with the console settings (asc_keras.console)
    which = ["--student", student] if device is None else ["--device", device]
    command = [sys.executable, "-m", "asc_keras.quantize.stage", str(run_dir), *which]
    command += ["--progress", str(verbose)] + ([] if distilled else ["--labels-only"])
    if subprocess.run(command, env=env, pass_fds=lock.pass_fds).returncode != 0:
        raise TrainingError(
            f"the quantization stage of {run_dir} failed (see above); fix the "
            f"cause and rerun with --resume"
        )
    return json.loads(summary.read_text())
