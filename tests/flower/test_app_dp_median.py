"""Acceptance app 4 of issue 13: FedMedian under server-side fixed-clipping DP, from Flower.

``apps/dpmedian`` is a Flower 1.42 app wrapping ``FedMedian`` in
``DifferentialPrivacyServerSideFixedClipping`` (clipping norm 0.5, noise
multiplier 0 so that the figures are comparable; the noise path is tested in
``tests/aggregation/test_strategies_dp.py``). The model after every round must
be Flower's: each update clipped relative to the model sent, the median taken
over exactly the clipped updates. Flower's figures: the same app under Flower
1.42.0 (``tests/flower_numerics/flower_apps_inprocess_script.txt apps/dpmedian 3``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .test_app_strategy_subclass import assert_figures_match, run_flower_app

pytestmark = pytest.mark.timeout(240)

FLOWER_FIGURES: dict[str, Any] = {
    "models": [
        {"round": 0, "w": [0.0, 0.0, 0.0], "b": [0.0]},
        {
            "round": 1,
            "w": [0.1532922089099884, -0.4352738559246063, 0.15932847559452057],
            "b": [-0.03787372261285782],
        },
        {
            "round": 2,
            "w": [0.33224770426750183, -0.8716604709625244, 0.31847110390663147],
            "b": [-0.053721897304058075],
        },
        {
            "round": 3,
            "w": [0.5091872215270996, -1.280818223953247, 0.47115442156791687],
            "b": [-0.03939215838909149],
        },
    ],
    "train": {
        "1": {"loss": 1.736292513211568},
        "2": {"loss": 1.108137059211731},
        "3": {"loss": 0.6150107105573018},
    },
    "evaluate": {
        "1": {"mse": 3.287746620178223},
        "2": {"mse": 1.7286375363667805},
        "3": {"mse": 0.7444652835528056},
    },
}


def test_dp_wrapped_fedmedian_reaches_flowers_figures(tmp_path: Path) -> None:
    assert_figures_match(run_flower_app("dpmedian", tmp_path), FLOWER_FIGURES)
