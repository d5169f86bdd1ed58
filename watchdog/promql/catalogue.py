"""What the subset knows: value types, functions with their signatures, operators.

One table shared by the parser (to reject or type-check) and the evaluator (to
dispatch), so the two can never disagree about what is supported.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ValueType(Enum):
    SCALAR = "scalar"
    VECTOR = "instant vector"
    MATRIX = "range vector"
    STRING = "string"


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    arg_types: tuple[ValueType, ...]
    return_type: ValueType


_S, _V, _M = ValueType.SCALAR, ValueType.VECTOR, ValueType.MATRIX

RANGE_FUNCTION_NAMES = (
    "rate",
    "increase",
    "avg_over_time",
    "max_over_time",
    "min_over_time",
    "sum_over_time",
    "count_over_time",
)

FUNCTIONS: dict[str, FunctionSpec] = {
    spec.name: spec
    for spec in [
        *(FunctionSpec(name, (_M,), _V) for name in RANGE_FUNCTION_NAMES),
        FunctionSpec("histogram_quantile", (_S, _V), _V),
        FunctionSpec("abs", (_V,), _V),
        FunctionSpec("clamp_min", (_V, _S), _V),
        FunctionSpec("clamp_max", (_V, _S), _V),
        FunctionSpec("vector", (_S,), _V),
        FunctionSpec("scalar", (_V,), _S),
    ]
}

# Everything else Prometheus knows, so that a typo ("unknown") can be told
# apart from a real function we chose not to implement ("unsupported").
PROMETHEUS_ONLY_FUNCTIONS = frozenset(
    """absent absent_over_time acos acosh asin asinh atan atanh ceil changes clamp cos cosh
    days_in_month day_of_month day_of_week day_of_year deg delta deriv exp first_over_time floor
    histogram_avg histogram_count histogram_fraction histogram_quantiles histogram_sum
    histogram_stddev histogram_stdvar double_exponential_smoothing holt_winters hour idelta info
    irate label_replace label_join ln log10 log2 last_over_time mad_over_time minute month pi
    predict_linear present_over_time quantile_over_time rad resets round sgn sin sinh sort
    sort_desc sort_by_label sort_by_label_desc sqrt stddev_over_time stdvar_over_time tan tanh
    time timestamp ts_of_first_over_time ts_of_last_over_time ts_of_max_over_time
    ts_of_min_over_time year""".split()
)

AGGREGATIONS = ("sum", "avg", "min", "max", "count")
PROMETHEUS_ONLY_AGGREGATIONS = frozenset(
    "topk bottomk quantile count_values stddev stdvar group limitk limit_ratio".split()
)

ARITHMETIC_OPS = frozenset({"+", "-", "*", "/", "%", "^"})
COMPARISON_OPS = frozenset({"==", "!=", ">", "<", ">=", "<="})
SET_OPS = frozenset({"and", "or", "unless"})

RANGE_ONLY_IN = (
    "range vector selector is only allowed as argument of " + ", ".join(RANGE_FUNCTION_NAMES)
)


def supported_functions_text() -> str:
    return ", ".join(FUNCTIONS)
