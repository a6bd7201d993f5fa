"""The report: figures, report.json and report.html, the evaluation of a labelled set, leaks."""
