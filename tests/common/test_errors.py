"""Exception chains: causes and contexts, cycles, the innermost of given types."""

from __future__ import annotations

import pytest

from cseg_monai.common.errors import exception_chain, innermost_exception


def _raise_chain():
    try:
        try:
            raise FileNotFoundError("a.tif is missing")
        except FileNotFoundError as inner:
            raise ValueError("cannot load a.tif") from inner
    except ValueError:
        raise RuntimeError("applying transform LoadImaged")  # noqa: B904 (implicit context on purpose)


def test_chain_and_innermost():
    with pytest.raises(RuntimeError) as info:
        _raise_chain()
    chain = exception_chain(info.value)
    assert [type(e) for e in chain] == [RuntimeError, ValueError, FileNotFoundError]
    assert isinstance(innermost_exception(info.value, (ValueError,)), ValueError)
    assert isinstance(innermost_exception(info.value, (OSError,)), FileNotFoundError)
    assert innermost_exception(info.value, (KeyError,)) is None


def test_cycle_is_followed_once():
    a, b = ValueError("a"), ValueError("b")
    a.__cause__, b.__cause__ = b, a
    assert exception_chain(a) == [a, b]
    with pytest.raises(TypeError, match="must be an exception"):
        exception_chain("not an error")
