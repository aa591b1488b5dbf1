"""RUN/report.html (`asc_keras.evaluation.run_page`): self-contained, rewritten as stages end,
holding every table the run printed."""

import json

import numpy as np

from asc_keras.data.tau22 import CLASSES
from asc_keras.evaluation import device_report
from asc_keras.evaluation.metrics import report_table
from asc_keras.evaluation.run_page import RunPage
from tests.helpers import parse_page


def fake_report(seed, clips=60):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), clips)
    devices = rng.choice(["a", "b", "s1", "s4"], clips)
    return device_report(labels, rng.normal(size=(clips, len(CLASSES))), devices)


def test_the_page_grows_with_the_stages_and_needs_nothing_outside(tmp_path):
    run = tmp_path / "run"
    (run / "student").mkdir(parents=True)
    (run / "config.yaml").write_text("model:\n  variant: sm2\n")
    (run / "student" / "history.csv").write_text(
        "epoch,accuracy,loss,val_accuracy,val_loss\n1,0.1,2.3,0.1,2.3\n2,0.4,1.9,0.3,2.0\n"
    )
    page = RunPage(run, config_path="configs/sm2.yaml", data_root="data/tau22")
    assert not (run / "report.html").exists()

    reports = {"student": fake_report(0)}
    page.table("Float student on evaluate: accuracy (%) per device", reports)
    first = (run / "report.html").read_text()
    assert "Run in progress" in first and "Run finished" not in first
    parsed = parse_page(run / "report.html")
    assert parsed.outside == []
    assert parsed.images == ["training curves of student"] + ["confusion matrix of student"]
    headers, rows = report_table(reports)
    assert parsed.tables[0]["caption"] == "Float student on evaluate: accuracy (%) per device"
    assert parsed.tables[0]["rows"] == [headers, *rows]

    (run / "quantized").mkdir()
    int8 = {"float Keras": reports["student"], "int8 QAT": fake_report(1)}
    (run / "quantized" / "summary.json").write_text(
        json.dumps(
            {
                "student": "student",
                "qat_drop_points": 0.5,
                "ptq_drop_points": 1.25,
                "int8_ops": ["CONV_2D", "MEAN"],
                "twin_max_difference": 1e-6,
                "micro": {
                    "inputs": 20,
                    "mismatched_outputs": 0,
                    "max_int8_difference": 0,
                    "arena_bytes": 135360,
                    "model_bytes": 84808,
                    "micro_same_class_as_reported": 19,
                },
                "kernels": {"accuracy": "LiteRT's builtin kernels"},
                "cortex_m4": {
                    "measured": True,
                    "inputs": 20,
                    "instructions": 49.66e6,
                    "arena_bytes": 131072,
                    "flash_bytes": 209100,
                    "identical_outputs": 20,
                    "same_class_as_reported": 19,
                },
                "qat_history": {"loss": [1.0, 0.9], "accuracy": [0.5, 0.6]},
                "reports": int8,
            }
        )
    )
    page.table("Float vs int8 on evaluate: accuracy (%)", int8)
    page.note("distillation", "Distillation helped: +2.00 points.")
    page.finish()
    text = (run / "report.html").read_text()
    assert "Run finished" in text and "Distillation helped: +2.00 points." in text
    assert "arena 135,360 bytes" in text and "CONV_2D, MEAN" in text
    assert "The int8 accuracy is from LiteRT&#x27;s builtin kernels." in text
    assert "class equal to the reported model&#x27;s on 19 of 20" in text
    assert "Cortex-M4 (CMSIS-NN, emulated): 49.7 M instructions per inference" in text
    assert "python tools/train.py configs/sm2.yaml --data-root data/tau22 --out" in text
    assert "variant: sm2" in text  # the config
    parsed = parse_page(run / "report.html")
    assert [t["caption"] for t in parsed.tables] == [
        "Float student on evaluate: accuracy (%) per device",
        "Float vs int8 on evaluate: accuracy (%)",
    ]
    assert parsed.tables[1]["rows"][1:] == report_table(int8)[1]
    assert "training curves of QAT (int8)" in parsed.images
    assert "confusion matrix of int8 QAT" in parsed.images
    assert [p.name for p in run.iterdir() if "tmp" in p.name] == []  # written atomically


def test_a_rewrite_draws_only_the_figures_whose_data_changed(tmp_path, monkeypatch):
    from asc_keras.evaluation import run_page

    drawn = []

    def counting(draw):
        def counted(name, data):
            drawn.append(name)
            return draw(name, data)

        counted.__name__ = draw.__name__  # the first part of the figure cache's key
        return counted

    for name in ("_curve_png", "_confusion_png"):
        monkeypatch.setattr(run_page, name, counting(getattr(run_page, name)))
    run = tmp_path / "run"
    (run / "student").mkdir(parents=True)
    history = run / "student" / "history.csv"
    history.write_text("epoch,accuracy,loss\n1,0.1,2.3\n")
    page = RunPage(run)
    page.table("Float student on evaluate: accuracy (%) per device", {"s": fake_report(0)})
    assert drawn == ["student", "s"]
    page.note("distillation", "Distillation helped.")
    assert drawn == ["student", "s"]  # nothing new to draw: the page is the same but its note
    history.write_text("epoch,accuracy,loss\n1,0.1,2.3\n2,0.2,2.1\n")
    page.table("Float student on evaluate: accuracy (%) per device", {"s": fake_report(1)})
    assert drawn == ["student", "s", "student", "s"]
    again = (run / "report.html").read_text()
    fresh = RunPage(run)
    fresh.tables, fresh.notes = page.tables, page.notes
    fresh.write()  # a new page draws everything, and draws it the same
    assert (run / "report.html").read_text().split("</p>", 1)[1] == again.split("</p>", 1)[1]
