"""Hypothesis strategies for fedzero's data model."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedzero.core import (
    BFLOAT16,
    SUPPORTED_DTYPES,
    ArrayRecord,
    ConfigRecord,
    MetricRecord,
    RecordDict,
)

names = st.text(min_size=0, max_size=12)


@st.composite
def arrays(draw: st.DrawFn, max_side: int = 6) -> np.ndarray[Any, Any]:
    dtype = draw(st.sampled_from(SUPPORTED_DTYPES))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=max_side))
    if dtype == BFLOAT16:  # hypothesis has no bfloat16: draw its raw bits
        bits = draw(hnp.arrays(np.uint16, shape))
        return bits.view(BFLOAT16)
    return draw(hnp.arrays(dtype, shape))


array_records = st.dictionaries(names, arrays(), max_size=5).map(ArrayRecord)
int64 = st.integers(-(2**63), 2**63 - 1)
floats = st.floats(allow_nan=False)
metric_records = st.dictionaries(
    names,
    st.one_of(int64, floats, st.lists(int64, max_size=4), st.lists(floats, max_size=4)),
    max_size=4,
).map(MetricRecord)
config_scalars = st.one_of(int64, floats, st.booleans(), st.text(max_size=8), st.binary(max_size=8))
config_records = st.dictionaries(
    names,
    st.one_of(
        config_scalars,
        st.lists(int64, max_size=3),
        st.lists(st.text(max_size=4), max_size=3),
        st.lists(st.binary(max_size=4), max_size=3),
        st.lists(st.booleans(), max_size=3),
    ),
    max_size=4,
).map(ConfigRecord)
record_dicts = st.dictionaries(
    names, st.one_of(array_records, metric_records, config_records), max_size=4
).map(RecordDict)
