"""Import cost: `import modelyard` stays light (heavy libraries load when first used)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = {"sqlalchemy", "alembic", "pandas", "pyarrow", "sklearn", "numpy", "docker", "rich"}


def _modules_after(statement: str) -> set[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return {m.split(".")[0] for m in json.loads(out.stdout)}


def test_import_modelyard_is_light() -> None:
    loaded = _modules_after("import modelyard")
    assert not (loaded & HEAVY), sorted(loaded & HEAVY)


def test_exported_members_exist() -> None:
    import modelyard

    for name in modelyard.__all__:
        assert getattr(modelyard, name) is not None, name


def test_testing_doubles_are_exported() -> None:
    import modelyard.testing
    from modelyard.deploy.kubernetes.apply import KubeApi

    for name in modelyard.testing.__all__:
        assert getattr(modelyard.testing, name) is not None
    fake = modelyard.testing.FakeKubeApi()
    protocol_methods = {n for n in vars(KubeApi) if not n.startswith("_")}
    assert protocol_methods
    assert all(callable(getattr(fake, n)) for n in protocol_methods)
