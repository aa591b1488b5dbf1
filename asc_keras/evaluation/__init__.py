from asc_keras.evaluation.metrics import GROUPS, device_report, format_reports

__all__ = ["GROUPS", "device_report", "format_reports"]
