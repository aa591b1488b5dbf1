import numpy as np
import pytest

from asc_keras.data.tau22 import CLASSES
from asc_keras.distill import LogitFileError, TeacherLogits, fuse_teachers, load_logits
from asc_keras.distill.fusion import cross_entropy, fit_fusion, sharpening_warning


def noisy_teachers(labels, scales, seed=0):
    """Teachers whose logits carry the label with different reliability."""
    rng = np.random.default_rng(seed)
    onehot = np.eye(10)[labels]
    return [scale * onehot + rng.normal(0, 1.0, onehot.shape) for scale in scales]


def test_fused_is_at_least_as_good_as_averaged_on_the_training_split():
    labels = np.random.default_rng(1).integers(0, 10, 600)
    names = [f"audio/f{i}.wav" for i in range(600)]
    teachers = [
        TeacherLogits(names, z, source=f"t{i}")
        for i, z in enumerate(noisy_teachers(labels, [3.0, 0.3, 1.0]))
    ]
    averaged = fuse_teachers(teachers, "averaged")
    fused = fuse_teachers(teachers, "fused", names, labels)
    assert cross_entropy(fused.logits, labels) < cross_entropy(averaged.logits, labels)
    accuracy = {
        k: np.mean(v.logits.argmax(1) == labels)
        for k, v in {"averaged": averaged, "fused": fused}.items()
    }
    assert accuracy["fused"] >= accuracy["averaged"]
    weights = fused.extra["fusion_weights"]
    assert weights[0] > weights[2] > weights[1]  # the reliable teacher weighs most
    np.testing.assert_allclose(averaged.extra["fusion_weights"], [1 / 3] * 3)


@pytest.mark.parametrize("memorised", [False, True])
def test_fused_logits_sharper_than_they_are_good_are_reported(memorised, tmp_path, capsys):
    """Teachers that learned their training clips (a clear label there, a faint one on clips
    they did not see) get fusion weights that sharpen every logit: on the evaluation split
    the fused log loss exceeds the averaged one, and the recipe's fusion stage prints a
    warning. Teachers as reliable on both splits give no warning. The config names its
    splits "development" and "test": the warning and the distillation verdict find the
    teachers' evaluation reports under any split names."""
    from asc_keras.config import config_from_dict
    from asc_keras.data.cache import WaveformCache
    from asc_keras.data.pipeline import Splits
    from asc_keras.data.tau22 import Record
    from asc_keras.recipe import distillation_verdict, fusion_stage

    rng = np.random.default_rng(4)
    labels = {split: rng.integers(0, 10, 400) for split in ("train", "evaluate")}
    scales = {"train": [4.0, 3.0] if memorised else [1.0, 0.6], "evaluate": [1.0, 0.6]}
    names = {s: [f"audio/{s}-{i}.wav" for i in range(400)] for s in labels}
    logits = {s: noisy_teachers(labels[s], scales[s], seed=len(s)) for s in labels}
    files = []
    for i, (train, evaluate) in enumerate(zip(logits["train"], logits["evaluate"])):
        files.append(tmp_path / f"teacher-{i}.npz")
        TeacherLogits(names["train"] + names["evaluate"], np.concatenate([train, evaluate])).save(
            files[-1]
        )
    caches = {
        split: WaveformCache.from_arrays(
            [Record(n, int(y), "a", "lyon", "lyon-1") for n, y in zip(names[split], labels[split])],
            np.zeros((400, 8)),
        )
        for split in labels
    }
    config = config_from_dict({"data": {"train_split": "development", "eval_split": "test"}})
    fused, reports = fusion_stage(
        config, tmp_path / "run", Splits(caches["train"], caches["evaluate"]), files
    )
    printed = capsys.readouterr().out
    assert "(train: split 'development', evaluate: split 'test')" in printed
    warning = sharpening_warning(reports, "test")
    if memorised:
        assert sum(fused.extra["fusion_weights"]) > 1.5  # sharper than the average
        loss = {m: reports[f"{m} (evaluate)"]["log_loss"] for m in ("fused", "averaged")}
        assert loss["fused"] > loss["averaged"]
        assert "have a higher log loss on test than the averaged ones" in warning
        assert f"({loss['fused']:.3f} > {loss['averaged']:.3f})" in warning
        assert "teachers.fusion: averaged" in warning and warning in printed
    else:
        assert warning is None and "warning" not in printed
    verdict = distillation_verdict(config, {"student": {"accuracy": 0.5}}, reports)
    assert verdict["teachers"] == reports["fused (evaluate)"]["accuracy"]
    teachers = 100 * verdict["teachers"]
    assert "50.00 % on test (set" in verdict["verdict"]
    assert f"the fused teachers score {teachers:.2f} %" in verdict["verdict"]
    assert sharpening_warning({}, "test") is None  # no evaluation logits: nothing to say


def test_fit_fusion_gradient_matches_finite_differences():
    labels = np.random.default_rng(2).integers(0, 10, 50)
    stack = np.stack(noisy_teachers(labels, [1.0, 2.0], seed=3))
    weights, bias = fit_fusion(stack, labels)
    base = cross_entropy(np.tensordot(weights, stack, 1) + bias, labels)
    for delta in (np.array([1e-3, 0]), np.array([0, -1e-3])):
        moved = cross_entropy(np.tensordot(weights + delta, stack, 1) + bias, labels)
        assert moved >= base - 1e-6  # a minimum: no direction improves


def test_logit_files_round_trip_in_npz_and_csv(tmp_path):
    names = ["audio/a.wav", "audio/b.wav"]
    logits = np.arange(20, dtype=np.float32).reshape(2, 10)
    TeacherLogits(names, logits).save(tmp_path / "t.npz")
    np.testing.assert_array_equal(
        load_logits(tmp_path / "t.npz").aligned_to(names[::-1]), logits[::-1]
    )
    rows = ["filename\t" + "\t".join(CLASSES)]
    rows += [n + "\t" + "\t".join(str(v) for v in row) for n, row in zip(names, logits)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    np.testing.assert_array_equal(load_logits(tmp_path / "t.csv").logits, logits)


def test_logit_file_errors_name_the_problem(tmp_path):
    names = [f"audio/f{i}.wav" for i in range(10)]
    teacher = TeacherLogits(names[:7], np.zeros((7, 10)), source="teacher.npz")
    with pytest.raises(LogitFileError, match=r"teacher.npz: no logits for 3 of 10 files.*f7.wav"):
        teacher.aligned_to(names)
    TeacherLogits(names, np.zeros((10, 9)), CLASSES[:9]).save(tmp_path / "nine.npz")
    with pytest.raises(LogitFileError, match="nine.npz: 9 classes, the dataset has 10"):
        load_logits(tmp_path / "nine.npz")
    TeacherLogits(names, np.zeros((10, 10)), CLASSES[::-1]).save(tmp_path / "reversed.npz")
    with pytest.raises(LogitFileError, match="reversed.npz: class order"):
        load_logits(tmp_path / "reversed.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(LogitFileError, match="bad.npz"):
        load_logits(tmp_path / "bad.npz")


def test_damaged_and_ambiguous_logit_files_name_the_file_and_line(tmp_path):
    names = [f"audio/f{i}.wav" for i in range(4)]
    TeacherLogits(names, np.zeros((4, 10))).save(tmp_path / "whole.npz")
    data = (tmp_path / "whole.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(LogitFileError, match="cut.npz: not a readable .npz logit file"):
        load_logits(tmp_path / "cut.npz")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(LogitFileError, match="empty.csv: empty; expected a header line"):
        load_logits(tmp_path / "empty.csv")
    header = "filename\t" + "\t".join(CLASSES)
    row = "\t".join(["0.5"] * 10)
    (tmp_path / "twice.csv").write_text(
        f"{header}\naudio/f0.wav\t{row}\naudio/f1.wav\t{row}\naudio/f0.wav\t{row}\n"
    )
    with pytest.raises(LogitFileError, match=r"twice.csv: 1 file name\(s\) .* \['audio/f0.wav'\]"):
        load_logits(tmp_path / "twice.csv")
    with pytest.raises(LogitFileError, match="appear more than once"):
        TeacherLogits(["a", "b", "a"], np.zeros((3, 10)))
    (tmp_path / "short.csv").write_text(f"{header}\naudio/f0.wav\t{row}\naudio/f1.wav\t0.5\t0.5\n")
    with pytest.raises(LogitFileError, match=r"short.csv, line 3: 3 fields, the header has 11"):
        load_logits(tmp_path / "short.csv")
    bad_row = "\t".join(["0.5"] * 9 + ["x"])
    (tmp_path / "text.csv").write_text(f"{header}\naudio/f0.wav\t{bad_row}\n")
    with pytest.raises(LogitFileError, match=r"text.csv, line 2: non-numeric logit"):
        load_logits(tmp_path / "text.csv")


def test_published_pt_logits_are_rows_of_meta_csv(synthetic_root, tmp_path):
    torch = pytest.importorskip("torch")  # a test dependency; users pass --extra backends
    with open(synthetic_root / "meta.csv") as f:
        names = [line.split("\t")[0] for line in f.read().splitlines()[1:]]
    logits = np.random.default_rng(0).normal(size=(len(names), 10)).astype(np.float32)
    torch.save(torch.from_numpy(logits), tmp_path / "ensemble_logits.pt")
    teacher = load_logits(tmp_path / "ensemble_logits.pt", root=synthetic_root)
    np.testing.assert_array_equal(teacher.aligned_to(names[::-1]), logits[::-1])

    with pytest.raises(LogitFileError, match="indexed by the lines of the dataset's meta.csv"):
        load_logits(tmp_path / "ensemble_logits.pt")
    torch.save(torch.from_numpy(logits[:-1]), tmp_path / "short.pt")
    with pytest.raises(LogitFileError, match=rf"shape \({len(names) - 1}, 10\); expected"):
        load_logits(tmp_path / "short.pt", root=synthetic_root)
    nan = logits.copy()
    nan[3, 2] = np.nan
    torch.save(torch.from_numpy(nan), tmp_path / "nan.pt")
    with pytest.raises(LogitFileError, match="nan.pt: logits contain NaN"):
        load_logits(tmp_path / "nan.pt", root=synthetic_root)
    torch.save({"logits": torch.from_numpy(logits)}, tmp_path / "dict.pt")
    with pytest.raises(LogitFileError, match="expected one tensor"):
        load_logits(tmp_path / "dict.pt", root=synthetic_root)
    (tmp_path / "damaged.pt").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(LogitFileError, match="damaged.pt: not a readable PyTorch tensor file"):
        load_logits(tmp_path / "damaged.pt", root=synthetic_root)


def test_the_fusion_tool_warns_about_sharpened_logits(synthetic_root, tmp_path, capsys):
    """tools/fuse_teachers.py prints the same warning, with its own remedy."""
    from asc_keras.commands import fuse_teachers as tool
    from asc_keras.config import config_from_dict
    from asc_keras.data.pipeline import Splits

    splits = Splits.open(config_from_dict({"data": {"root": str(synthetic_root)}}))
    rng = np.random.default_rng(5)
    files = []
    for index, scale in enumerate([4.0, 3.0]):  # a clear label on the training clips only
        logits = {}
        for split, strength in (("train", scale), ("evaluate", 0.5)):
            labels = np.asarray(splits.labels(split))
            z = strength * np.eye(10)[labels] + rng.normal(0, 1.0, (len(labels), 10))
            logits.update(zip(getattr(splits, split).filenames, z))
        path = tmp_path / f"t{index}.npz"
        TeacherLogits(list(logits), np.stack(list(logits.values()))).save(path)
        files.append(path)
    out = tmp_path / "fused.npz"
    assert tool.main([*map(str, files), "-o", str(out), "--data-root", str(synthetic_root)]) == 0
    printed = capsys.readouterr().out
    assert "warning: the fused teacher logits have a higher log loss on evaluate" in printed
    assert "--method averaged may distil better" in printed
    assert out.is_file()
