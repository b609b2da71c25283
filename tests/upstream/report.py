"""What a child process that runs an upstream suite writes for the test
that started it: every test's id and outcome, as JSON.

Outcomes: ``passed``, ``failed``, ``error``, ``skipped``, ``xfail``,
``xpass``.  A test with a failing subtest is ``failed``."""

from __future__ import annotations

import json
import sys
import traceback
import unittest
from typing import Any


def write(path: str, outcomes: dict[str, dict[str, str]], **extra: Any) -> None:
    with open(path, "w") as f:
        json.dump({"python": sys.version, "tests": outcomes, **extra}, f, indent=1, sort_keys=True)


class UnittestRecorder(unittest.TextTestResult):
    """A unittest result that keeps each test's outcome (and prints as the
    text runner does, for the child's own output)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes: dict[str, dict[str, str]] = {}

    def _set(self, test: Any, outcome: str, detail: str = "") -> None:
        entry = self.outcomes.setdefault(test.id(), {"outcome": outcome, "detail": ""})
        if outcome != "passed":  # a failed subtest is not undone by the end of its test
            entry["outcome"] = outcome
        if detail:
            entry["detail"] += detail

    def _text(self, err: Any) -> str:
        return "".join(traceback.format_exception(*err))

    def addSuccess(self, test: Any) -> None:
        super().addSuccess(test)
        self._set(test, "passed")

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, err)
        self._set(test, "failed", self._text(err))

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        self._set(test, "error", self._text(err))

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)
        self._set(test, "skipped", reason)

    def addExpectedFailure(self, test: Any, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self._set(test, "xfail", self._text(err))

    def addUnexpectedSuccess(self, test: Any) -> None:
        super().addUnexpectedSuccess(test)
        self._set(test, "xpass")

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self._set(test, "failed" if failed else "error",
                      f"{subtest.id()}:\n{self._text(err)}")


def unittest_ids(suite: unittest.TestSuite) -> list[str]:
    """The ids of every test in a (nested) suite."""
    out: list[str] = []
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            out.extend(unittest_ids(item))
        else:
            out.append(item.id())
    return out


def only(suite: unittest.TestSuite, keep: Any) -> unittest.TestSuite:
    """The tests of ``suite`` for which ``keep(test)`` is true, nesting kept
    (so class and module fixtures still run)."""
    out = unittest.TestSuite()
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            sub = only(item, keep)
            if sub.countTestCases():
                out.addTest(sub)
        elif keep(item):
            out.addTest(item)
    return out


class PytestRecorder:
    """A pytest plugin that keeps each test's outcome, by node id."""

    def __init__(self) -> None:
        self.outcomes: dict[str, dict[str, str]] = {}
        self.collected: list[str] = []

    def pytest_collection_modifyitems(self, items: list[Any]) -> None:
        self.collected = [item.nodeid for item in items]

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.outcomes[f"collect:{report.nodeid}"] = {
                "outcome": "error", "detail": str(report.longrepr)}

    def pytest_runtest_logreport(self, report: Any) -> None:
        entry = self.outcomes.setdefault(report.nodeid, {"outcome": "passed", "detail": ""})
        if report.when == "call" and hasattr(report, "wasxfail"):
            entry["outcome"] = "xfail" if report.skipped else "xpass"
        elif report.skipped:
            entry["outcome"] = "skipped"
            entry["detail"] += str(report.longrepr)
        elif report.failed:
            entry["outcome"] = "failed" if report.when == "call" else "error"
            entry["detail"] += f"[{report.when}] {report.longrepr}\n"
