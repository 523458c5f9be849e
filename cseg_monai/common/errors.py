"""Walking an exception's cause chain.

MONAI wraps errors raised inside transforms and config parsing in ``RuntimeError`` s; the
message that names the file and the problem is further down the chain. These helpers find it.

Example:
    >>> try:
    ...     try:
    ...         raise ValueError("a.tif: has NaN")
    ...     except ValueError as inner:
    ...         raise RuntimeError("applying transform") from inner
    ... except RuntimeError as err:
    ...     [str(e) for e in exception_chain(err)], str(innermost_exception(err, (ValueError,)))
    (['applying transform', 'a.tif: has NaN'], 'a.tif: has NaN')
"""

from __future__ import annotations

__all__ = ["exception_chain", "innermost_exception"]


def exception_chain(err: BaseException) -> list[BaseException]:
    """``err`` and its causes (``__cause__``, else ``__context__``), outermost first, each once.

    Args:
        err: the exception caught.

    Returns:
        The chain; a cycle in it is followed only once.
    """
    if not isinstance(err, BaseException):
        raise TypeError(f"err must be an exception, got {type(err).__name__}")
    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def innermost_exception(
    err: BaseException, types: tuple[type[BaseException], ...] = (BaseException,)
) -> BaseException | None:
    """The innermost exception of ``err`` 's chain that is an instance of ``types``.

    Args:
        err: the exception caught.
        types: the exception classes to look for; default any.

    Returns:
        The innermost match, or ``None`` when no exception of the chain matches.
    """
    found = None
    for item in exception_chain(err):
        if isinstance(item, types):
            found = item
    return found
