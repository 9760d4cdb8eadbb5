"""The public surface and the cost of importing it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import guardrail


def test_public_api_is_small_sorted_and_resolves() -> None:
    assert guardrail.__all__ == sorted(guardrail.__all__)
    assert set(guardrail.__all__) == {
        "Action", "Blocked", "CheckTimeout", "ClassifierError", "Decision", "Finding", "Guard", "GuardrailError",
        "InvalidMessages", "InvalidScores", "Overloaded", "Policy", "PolicyError", "guarded", "load_policy", "protect",
        "wrap",
    }  # fmt: skip
    for name in guardrail.__all__:
        assert getattr(guardrail, name) is not None


def test_errors_form_one_tree() -> None:
    # every error the README names is importable from the package (``except guardrail.Overloaded``)
    for name in ("PolicyError", "ClassifierError", "Blocked", "InvalidMessages"):
        assert issubclass(getattr(guardrail, name), guardrail.GuardrailError)
    for name in ("CheckTimeout", "Overloaded", "InvalidScores"):
        assert issubclass(getattr(guardrail, name), guardrail.ClassifierError)


def test_import_guardrail_imports_no_heavy_module() -> None:
    code = textwrap.dedent(
        """
        import sys, guardrail
        from guardrail import Guard, Decision, load_policy  # resolving the API must stay light too
        heavy = [m for m in ("litellm", "transformers", "torch", "onnxruntime", "openai") if m in sys.modules]
        print(",".join(heavy))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_bare_import_reads_no_model_and_configures_no_logging() -> None:
    code = "import sys, guardrail; print(sorted(m for m in sys.modules if m.startswith('guardrail')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['guardrail']"


def test_litellm_requirement_excludes_the_compromised_releases() -> None:
    """litellm 1.82.7 and 1.82.8 were published with malicious code: every requirement on litellm
    (the dependency and every extra) must exclude them, so no resolver can pick them."""
    from pathlib import Path

    import tomllib
    from packaging.requirements import Requirement

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    litellm = [r for r in reqs if r.name == "litellm"]
    assert litellm, "litellm is required somewhere"
    for req in litellm:
        for bad in ("1.82.7", "1.82.8"):
            assert not req.specifier.contains(bad, prereleases=True), f"{req} allows {bad}"
        assert req.specifier.contains("1.106.2")
