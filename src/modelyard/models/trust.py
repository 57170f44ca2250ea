"""Code trust: a model whose loading runs its own code (a pickle, or Python source) is loaded,
built into an image or deployed only after an admin trusted it.

The decision is recorded on the version with who made it, when, and the digest of the content
it was given to (``ModelVersion.code_trusted``). It is checked again wherever the model's code
could run — ``serve``, ``load``, image builds and every deploy — so withdrawing it (``modelyard
models trust --revoke``) stops the next one, and a version whose content no longer matches the
trusted digest is refused like one never trusted. On a team server trusting is an ``admin``
act (``models.set_trusted``, or registering with ``trusted_pickle``); a ``write`` token can
register such a model but nobody can run it until an admin says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard.errors import UnsafeModel

if TYPE_CHECKING:
    from modelyard.store.models_entities import ModelVersion


def check_code_trust(version: ModelVersion) -> None:
    """Raise :class:`UnsafeModel` unless ``version`` runs no code of its own on load, or an
    admin trusted exactly the content it holds."""
    from modelyard.flavors import runs_code

    if not runs_code(version.flavor) or version.code_trusted:
        return
    what = "unpickling it" if version.flavor != "python" else "importing its Python code"
    if version.trusted_pickle:
        raise UnsafeModel(
            f"{version.ref} was trusted for content {version.trusted_digest}, but it holds "
            f"{version.digest}; an admin must trust it again "
            f"('modelyard models trust {version.ref}')"
        )
    raise UnsafeModel(
        f"{version.ref} is a {version.flavor} model: loading it runs its own code "
        f"({what}), and no admin has trusted it. An admin can, after reviewing it: "
        f"'modelyard models trust {version.ref}'"
    )
