"""Parameter search and walk-forward analysis of Lua strategies, in parallel (local processes or Ray).

``tradesim.optimize.optimize(...)`` is the Python API; ``tradesim optimize`` the command.
See docs/optimize.md.
"""

from tradesim.optimize.search import METHODS, OptimizeResult, Trial, load_data, optimize
from tradesim.optimize.space import (
    OBJECTIVES,
    Constraint,
    Objective,
    OptimizeInputError,
    ParamSpec,
    SearchSpace,
    parse_param_spec,
)
from tradesim.optimize.walkforward import (
    Fold,
    WalkForwardSpec,
    bootstrap_trades,
    make_folds,
    parameter_stability,
    parse_walk_forward,
    stitch_equity,
)

__all__ = ["optimize", "OptimizeResult", "Trial", "load_data", "METHODS", "OBJECTIVES", "Constraint", "Objective",
           "OptimizeInputError", "ParamSpec", "SearchSpace", "parse_param_spec", "Fold", "WalkForwardSpec",
           "bootstrap_trades", "make_folds", "parameter_stability", "parse_walk_forward", "stitch_equity"]
