"""The ready "predict" step: batch scoring as the last step of a pipeline.

    from modelyard.batch import predict_step

    score = predict_step(model="maintenance@production", output="maintenance-scores",
                         input="features")           # an upstream step's output …
    score = predict_step(model="churn@production", output="churn-scores",
                         dataset="customers@latest")   # … or a dataset version
    pipeline = Pipeline("maintenance", [collect, ..., features, score])

The step is an ordinary step: its parameters ``model_ref``, ``output_dataset``, ``columns``,
``batch_rows``, ``monitor`` and ``if_no_model`` can be overridden with ``-p`` (named so that
they do not collide with other steps' outputs, such as a ``model``); it returns the output
dataset version, so lineage runs from the pipeline run through the step's run to the scores.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from modelyard.batch.job import DEFAULT_BATCH_ROWS
from modelyard.errors import InvalidParameter, NotFound

FAIL = "fail"
SKIP = "skip"


def predict_step(
    *,
    model: str,
    output: str,
    input: str | None = None,
    dataset: str | None = None,
    columns: Sequence[str] = (),
    batch_rows: int = DEFAULT_BATCH_ROWS,
    monitor: bool = True,
    if_no_model: str = FAIL,
    name: str = "predict",
    outputs: str = "predictions",
) -> Callable[..., Any]:
    """A pipeline step scoring ``input`` (the name of an upstream step output holding a dataset
    version or reference) or ``dataset`` (a dataset reference) with ``model`` into ``output``.

    ``if_no_model="skip"`` makes the step return None, instead of failing, while ``model`` does
    not resolve yet (a pipeline whose first run trains the first model).
    """
    from modelyard.pipeline.step import dataset as dataset_input
    from modelyard.pipeline.step import models as models_read
    from modelyard.pipeline.step import step

    if (input is None) == (dataset is None):
        raise InvalidParameter("predict_step needs exactly one of input= or dataset=")
    if if_no_model not in (FAIL, SKIP):
        raise InvalidParameter(f"if_no_model must be {FAIL!r} or {SKIP!r}")
    arg = input if input is not None else "data"
    if not arg.isidentifier():
        raise InvalidParameter(f"input {arg!r} is not a step output name")

    def run_predict(**kwargs: Any) -> Any:
        from modelyard.batch.job import predict
        from modelyard.models import resolve

        if kwargs["if_no_model"] == SKIP:
            try:
                resolve(kwargs["model_ref"])
            except NotFound as exc:
                print(f"predict skipped: {exc.message}")
                return None
        source = kwargs[arg]
        ref = getattr(source, "ref", None) or str(source)
        result = predict(
            kwargs["model_ref"],
            ref,
            output=kwargs["output_dataset"],
            columns=[c for c in str(kwargs["columns"]).split(",") if c],
            batch_rows=int(kwargs["batch_rows"]),
            monitor=bool(kwargs["monitor"]),
        )
        return result.output

    param = inspect.Parameter
    kind = param.POSITIONAL_OR_KEYWORD
    default = dataset_input(dataset) if dataset is not None else param.empty
    run_predict.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            param(arg, kind, default=default, annotation=Any),
            param("model_ref", kind, default=model, annotation=str),
            param("output_dataset", kind, default=output, annotation=str),
            param("columns", kind, default=",".join(columns), annotation=str),
            param("batch_rows", kind, default=batch_rows, annotation=int),
            param("monitor", kind, default=monitor, annotation=bool),
            param("if_no_model", kind, default=if_no_model, annotation=str),
        ]
    )
    run_predict.__name__ = run_predict.__qualname__ = name
    # Cached on the state of the model reference (an alias moving re-runs it) and on its input;
    # with monitor=True every run also feeds the deployment's monitor, so it always runs.
    reads = models_read("{model_ref}")
    return step(name=name, cache=not monitor, outputs=outputs, reads=reads)(run_predict)
